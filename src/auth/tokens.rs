//! Access tokens (JWT, HS256 only, audience fixed per kind of user) and opaque
//! refresh tokens (random, shown once, stored as SHA-256).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const ISSUER: &str = "mercato";

/// Who a token is for. Each audience is validated strictly on its own routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Staff,
    Customer,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Staff => "mercato-admin",
            Audience::Customer => "mercato-storefront",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// Staff role at issue time (re-checked against the database on every request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
}

impl TokenKeys {
    pub fn new(secret: &str, access_ttl_secs: u64, refresh_ttl_secs: u64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            access_ttl_secs: access_ttl_secs as i64,
            refresh_ttl_secs: refresh_ttl_secs as i64,
        }
    }

    pub fn issue(&self, audience: Audience, subject: Uuid, role: Option<&str>) -> anyhow::Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: subject,
            aud: audience.as_str().to_owned(),
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + self.access_ttl_secs,
            role: role.map(str::to_owned),
        };
        Ok(encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    /// Accepts only HS256 tokens for exactly this audience from this issuer.
    pub fn verify(&self, audience: Audience, token: &str) -> Result<Claims, TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[audience.as_str()]);
        v.set_issuer(&[ISSUER]);
        v.leeway = 5;
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        decode::<Claims>(token, &self.decoding, &v).map(|d| d.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })
    }
}

/// 256 random bits, URL-safe.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a refresh token: a leaked table reveals no usable token.
pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&"k".repeat(32), 60, 3600)
    }

    #[test]
    fn a_customer_token_never_opens_the_admin_api() {
        let k = keys();
        let t = k.issue(Audience::Customer, Uuid::now_v7(), None).unwrap();
        assert!(k.verify(Audience::Customer, &t).is_ok());
        assert!(matches!(k.verify(Audience::Staff, &t), Err(TokenError::Invalid)));
    }

    #[test]
    fn tokens_from_another_secret_or_algorithm_are_rejected() {
        let other = TokenKeys::new(&"x".repeat(32), 60, 3600);
        let t = other.issue(Audience::Staff, Uuid::now_v7(), Some("owner")).unwrap();
        assert!(keys().verify(Audience::Staff, &t).is_err());
        // An unsigned token ("alg": "none") must never pass.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&serde_json::json!({"sub": Uuid::now_v7(), "aud": "mercato-admin", "iss": "mercato", "iat": 0, "exp": i64::MAX / 2})).unwrap(),
        );
        assert!(keys().verify(Audience::Staff, &format!("{header}.{body}.")).is_err());
    }

    #[test]
    fn expired_tokens_say_so() {
        let k = TokenKeys { access_ttl_secs: -60, ..keys() };
        let t = k.issue(Audience::Staff, Uuid::now_v7(), None).unwrap();
        assert!(matches!(k.verify(Audience::Staff, &t), Err(TokenError::Expired)));
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = random_token();
        assert_ne!(a, random_token());
        assert_eq!(hash_refresh_token(&a).len(), 64);
        assert_ne!(hash_refresh_token(&a), a);
    }
}
