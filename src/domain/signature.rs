//! Webhook signatures in the scheme Stripe uses: `t=<unix seconds>,v1=<hex
//! HMAC-SHA256 of "<t>.<body>">`. Verification checks the timestamp against a
//! tolerance (replays of old deliveries fail) and compares in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing or malformed")]
    Malformed,
    #[error("the signature timestamp is outside the tolerance")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The header value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex(&tag))
}

/// Checks a header against the body; any `v1` entry may match (secret rotation).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    for candidate in candidates {
        let Some(bytes) = unhex(candidate) else { continue };
        if mac(secret, timestamp, body).verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// A keyed hash (HMAC-SHA256, hex) of `data`: a value only the key holder can make.
pub fn keyed_hash(secret: &[u8], data: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(data);
    hex(&m.finalize().into_bytes())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"whsec_test";

    #[test]
    fn a_signed_body_verifies_within_the_tolerance() {
        let header = sign(SECRET, 1_000, b"{\"id\":1}");
        assert_eq!(verify(SECRET, &header, b"{\"id\":1}", 1_100, 300), Ok(()));
        assert_eq!(verify(SECRET, &header, b"{\"id\":1}", 1_400, 300), Err(SignatureError::Stale));
        assert_eq!(verify(SECRET, &header, b"{\"id\":2}", 1_100, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other", &header, b"{\"id\":1}", 1_100, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(SECRET, "v1=abc", b"", 0, 300), Err(SignatureError::Malformed));
        assert_eq!(verify(SECRET, "garbage", b"", 0, 300), Err(SignatureError::Malformed));
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let good = sign(SECRET, 10, b"x");
        let v1 = good.split("v1=").nth(1).unwrap();
        assert_eq!(verify(SECRET, &format!("t=10,v1=00ff,v1={v1}"), b"x", 10, 5), Ok(()));
    }

    proptest! {
        #[test]
        fn tampering_with_any_byte_fails(body in proptest::collection::vec(any::<u8>(), 1..200), i in any::<proptest::sample::Index>()) {
            let header = sign(SECRET, 50, &body);
            let mut changed = body.clone();
            let k = i.index(changed.len());
            changed[k] ^= 1;
            prop_assert_eq!(verify(SECRET, &header, &changed, 50, 10), Err(SignatureError::Mismatch));
            prop_assert_eq!(verify(SECRET, &header, &body, 50, 10), Ok(()));
        }
    }
}
