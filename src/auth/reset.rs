//! Password reset tokens. A token is derived from the reset's id with a server
//! key (HMAC-SHA256) rather than drawn at random and carried around: the e-mail
//! job then holds only the id, so neither the job queue (visible to staff) nor a
//! copy of the database holds a usable token, and a resend of the same e-mail
//! carries the same link. The database keeps the token's SHA-256 to find it.

use uuid::Uuid;

use crate::domain::signature::keyed_hash;

/// How long a reset link works.
pub const RESET_TTL_SECS: i64 = 3600;
/// Resets one customer may request per `RESET_TTL_SECS`.
pub const MAX_RECENT_RESETS: i64 = 5;

/// The key for reset tokens, derived from the signing secret so that it is not
/// itself a token-signing key.
pub fn reset_key(secret: &str) -> Vec<u8> {
    keyed_hash(secret.as_bytes(), b"password-reset").into_bytes()
}

/// The token mailed for reset `reset_id` (64 hex characters, 256 bits).
pub fn reset_token(key: &[u8], reset_id: Uuid) -> String {
    keyed_hash(key, reset_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_the_key_and_the_reset() {
        let key = reset_key("a-secret-of-enough-length-0123456789");
        let id = Uuid::now_v7();
        assert_eq!(reset_token(&key, id), reset_token(&key, id));
        assert_ne!(reset_token(&key, id), reset_token(&key, Uuid::now_v7()));
        assert_ne!(reset_token(&key, id), reset_token(&reset_key("another-secret-of-enough-length-01234"), id));
        assert_eq!(reset_token(&key, id).len(), 64);
    }
}
