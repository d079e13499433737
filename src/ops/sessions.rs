//! Sessions for any kind of user: an access token for one audience plus a
//! single-use refresh token whose successor is stored in the same transaction
//! that spends it. Staff and customers share this; only the audience differs.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::tokens::{Audience, TokenKeys, hash_refresh_token, random_token};
use crate::error::{ApiError, ApiResult};
use crate::store::staff::RefreshOutcome;
use crate::store::{Store, format_time};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshInput {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// Short-lived JWT for the `Authorization: Bearer` header.
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque, single-use; exchange it at the refresh endpoint for a new pair.
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

fn refresh_expiry(keys: &TokenKeys) -> String {
    format_time(time::OffsetDateTime::now_utc() + time::Duration::seconds(keys.refresh_ttl_secs))
}

fn pair(keys: &TokenKeys, audience: Audience, subject: Uuid, role: Option<&str>, refresh_token: String) -> ApiResult<TokenPair> {
    Ok(TokenPair {
        access_token: keys.issue(audience, subject, role)?,
        token_type: "Bearer",
        expires_in: keys.access_ttl_secs,
        refresh_token,
        refresh_expires_in: keys.refresh_ttl_secs,
    })
}

/// Starts a new session (a new refresh-token family) for an authenticated user.
pub async fn start(
    store: &Store,
    keys: &TokenKeys,
    audience: Audience,
    subject: Uuid,
    role: Option<&str>,
) -> ApiResult<TokenPair> {
    let refresh_token = random_token();
    store
        .insert_refresh_token(
            audience.as_str(),
            subject,
            Uuid::now_v7(),
            &hash_refresh_token(&refresh_token),
            &refresh_expiry(keys),
        )
        .await?;
    pair(keys, audience, subject, role, refresh_token)
}

/// Spends a refresh token. Returns the subject and the successor token; the caller
/// checks the subject is still allowed in and issues the pair with [`finish_refresh`].
pub async fn rotate(store: &Store, keys: &TokenKeys, audience: Audience, presented: &str) -> ApiResult<(Uuid, String)> {
    // The successor is generated first so that it is stored in the same transaction.
    let successor = random_token();
    let outcome = store
        .rotate_refresh_token(
            audience.as_str(),
            &hash_refresh_token(presented),
            &hash_refresh_token(&successor),
            &refresh_expiry(keys),
        )
        .await?;
    match outcome {
        RefreshOutcome::Rotated { subject_id } => Ok((subject_id, successor)),
        RefreshOutcome::Invalid => Err(ApiError::Unauthorized("invalid_refresh_token")),
        RefreshOutcome::Reused => Err(ApiError::Unauthorized("refresh_token_reused")),
    }
}

pub fn finish_refresh(
    keys: &TokenKeys,
    audience: Audience,
    subject: Uuid,
    role: Option<&str>,
    successor: String,
) -> ApiResult<TokenPair> {
    pair(keys, audience, subject, role, successor)
}

/// Ends the session the refresh token belongs to.
pub async fn end(store: &Store, audience: Audience, presented: &str) -> ApiResult<()> {
    store.revoke_refresh_family(audience.as_str(), &hash_refresh_token(presented)).await?;
    Ok(())
}
