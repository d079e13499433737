//! Staff accounts and their sessions: login, refresh-token rotation, logout.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::password;
use crate::auth::tokens::{Audience, TokenKeys, hash_refresh_token, random_token};
use crate::domain::email::Email;
use crate::domain::rbac::Role;
use crate::domain::validation::{FieldErrors, required_text};
use crate::error::{ApiError, ApiResult};
use crate::store::audit::Actor;
use crate::store::staff::{NewStaff, RefreshOutcome, StaffMember};
use crate::store::{Store, format_time};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStaffInput {
    pub email: String,
    #[serde(default)]
    pub name: String,
    pub role: Role,
    /// At least 12 characters.
    pub password: String,
}

pub async fn create_staff(store: &Store, input: NewStaffInput, actor: &Actor) -> ApiResult<StaffMember> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(&input.email));
    let name =
        if input.name.trim().is_empty() { Some(String::new()) } else { errors.check("name", required_text(&input.name, 100)) };
    errors.check("password", password::check_policy(&input.password));
    let (Some(email), Some(name)) = (email, name) else { return Err(ApiError::Validation(errors.into_vec())) };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors.into_vec()));
    }
    let password_hash = password::hash(input.password).await?;
    Ok(store.create_staff(&NewStaff { email, name, role: input.role, password_hash }, actor).await?)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffPatchInput {
    pub role: Option<Role>,
    /// `false` deactivates the account: its tokens stop working at once.
    pub active: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    pub email: String,
    pub password: String,
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

async fn issue_pair(store: &Store, keys: &TokenKeys, member: &StaffMember, family: Option<Uuid>) -> ApiResult<TokenPair> {
    let access_token = keys.issue(Audience::Staff, member.id, Some(member.role.as_str()))?;
    let refresh_token = random_token();
    if let Some(family) = family {
        store
            .insert_refresh_token(
                Audience::Staff.as_str(),
                member.id,
                family,
                &hash_refresh_token(&refresh_token),
                &refresh_expiry(keys),
            )
            .await?;
    }
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: keys.access_ttl_secs,
        refresh_token,
        refresh_expires_in: keys.refresh_ttl_secs,
    })
}

fn refresh_expiry(keys: &TokenKeys) -> String {
    format_time(time::OffsetDateTime::now_utc() + time::Duration::seconds(keys.refresh_ttl_secs))
}

pub async fn login(store: &Store, keys: &TokenKeys, input: LoginInput) -> ApiResult<TokenPair> {
    let invalid = || ApiError::Unauthorized("invalid_credentials");
    let creds = match Email::parse(&input.email) {
        Ok(email) => store.staff_by_email(&email).await?,
        Err(_) => None,
    };
    let (member, stored_hash) = match creds {
        Some(c) => (Some(c.member), Some(c.password_hash)),
        None => (None, None),
    };
    if !password::verify(input.password, stored_hash).await? {
        return Err(invalid());
    }
    let member = member.filter(|m| m.active).ok_or_else(invalid)?;
    issue_pair(store, keys, &member, Some(Uuid::now_v7())).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshInput {
    pub refresh_token: String,
}

pub async fn refresh(store: &Store, keys: &TokenKeys, input: RefreshInput) -> ApiResult<TokenPair> {
    // The successor is generated first so that it can be stored in the same transaction.
    let pair_token = random_token();
    let outcome = store
        .rotate_refresh_token(
            Audience::Staff.as_str(),
            &hash_refresh_token(&input.refresh_token),
            &hash_refresh_token(&pair_token),
            &refresh_expiry(keys),
        )
        .await?;
    let subject = match outcome {
        RefreshOutcome::Rotated { subject_id } => subject_id,
        RefreshOutcome::Invalid => return Err(ApiError::Unauthorized("invalid_refresh_token")),
        RefreshOutcome::Reused => return Err(ApiError::Unauthorized("refresh_token_reused")),
    };
    let member = store.staff_by_id(subject).await?.filter(|m| m.active).ok_or(ApiError::Unauthorized("invalid_refresh_token"))?;
    let mut pair = issue_pair(store, keys, &member, None).await?;
    pair.refresh_token = pair_token;
    Ok(pair)
}

pub async fn logout(store: &Store, input: RefreshInput) -> ApiResult<()> {
    store.revoke_refresh_family(Audience::Staff.as_str(), &hash_refresh_token(&input.refresh_token)).await?;
    Ok(())
}
