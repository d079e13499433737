//! Staff accounts and their sessions: login, refresh-token rotation, logout.

use serde::Deserialize;

use super::sessions::{self, LoginInput, RefreshInput, TokenPair};
use crate::auth::password;
use crate::auth::tokens::{Audience, TokenKeys};
use crate::domain::email::Email;
use crate::domain::rbac::Role;
use crate::domain::validation::{FieldErrors, required_text};
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crate::store::audit::Actor;
use crate::store::staff::{NewStaff, StaffMember};

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
    sessions::start(store, keys, Audience::Staff, member.id, Some(member.role.as_str())).await
}

pub async fn refresh(store: &Store, keys: &TokenKeys, input: RefreshInput) -> ApiResult<TokenPair> {
    let (subject, successor) = sessions::rotate(store, keys, Audience::Staff, &input.refresh_token).await?;
    let member = store.staff_by_id(subject).await?.filter(|m| m.active).ok_or(ApiError::Unauthorized("invalid_refresh_token"))?;
    sessions::finish_refresh(keys, Audience::Staff, member.id, Some(member.role.as_str()), successor)
}

pub async fn logout(store: &Store, input: RefreshInput) -> ApiResult<()> {
    sessions::end(store, Audience::Staff, &input.refresh_token).await
}
