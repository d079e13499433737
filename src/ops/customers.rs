//! Customer accounts: registration, sessions (the staff machinery with the
//! storefront audience), the address book, and merging a guest cart at login.

use serde::Deserialize;
use uuid::Uuid;

use super::sessions::{self, LoginInput, RefreshInput, TokenPair};
use crate::auth::password;
use crate::auth::tokens::{Audience, TokenKeys};
use crate::domain::address::Address;
use crate::domain::email::Email;
use crate::domain::validation::FieldErrors;
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crate::store::customers::{Customer, SavedAddress};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    pub email: String,
    /// At least 12 characters.
    pub password: String,
    #[serde(default)]
    pub name: String,
}

pub async fn register(store: &Store, keys: &TokenKeys, input: RegisterInput) -> ApiResult<(Customer, TokenPair)> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(&input.email));
    errors.check("password", password::check_policy(&input.password));
    let name = errors.check("name", crate::domain::catalog::optional_text(&input.name, 200));
    let (Some(email), Some(name)) = (email, name) else { return Err(ApiError::Validation(errors.into_vec())) };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors.into_vec()));
    }
    let hash = password::hash(input.password).await?;
    let customer = store.create_customer(&email, &name, &hash).await?;
    let pair = sessions::start(store, keys, Audience::Customer, customer.id, None).await?;
    Ok((customer, pair))
}

/// Checks the credentials; the same answer whether the e-mail is unknown or the
/// password wrong, after the same amount of work.
pub async fn login(store: &Store, keys: &TokenKeys, input: &LoginInput) -> ApiResult<(Customer, TokenPair)> {
    let creds = match Email::parse(&input.email) {
        Ok(email) => store.customer_by_email(&email).await?,
        Err(_) => None,
    };
    let (customer, hash) = match creds {
        Some(c) => (Some(c.customer), Some(c.password_hash)),
        None => (None, None),
    };
    if !password::verify(input.password.clone(), hash).await? {
        return Err(ApiError::Unauthorized("invalid_credentials"));
    }
    let customer = customer.ok_or(ApiError::Unauthorized("invalid_credentials"))?;
    let pair = sessions::start(store, keys, Audience::Customer, customer.id, None).await?;
    Ok((customer, pair))
}

pub async fn refresh(store: &Store, keys: &TokenKeys, input: RefreshInput) -> ApiResult<TokenPair> {
    let (subject, successor) = sessions::rotate(store, keys, Audience::Customer, &input.refresh_token).await?;
    store.customer_by_id(subject).await?.ok_or(ApiError::Unauthorized("invalid_refresh_token"))?;
    sessions::finish_refresh(keys, Audience::Customer, subject, None, successor)
}

pub async fn logout(store: &Store, input: RefreshInput) -> ApiResult<()> {
    sessions::end(store, Audience::Customer, &input.refresh_token).await
}

pub async fn add_address(store: &Store, customer_id: Uuid, input: &Address) -> ApiResult<SavedAddress> {
    let address = input.parse("").map_err(ApiError::Validation)?;
    store.add_address(customer_id, &address).await?.ok_or_else(|| {
        ApiError::conflict(
            "address_book_full",
            None,
            format!("at most {} addresses can be saved", crate::store::customers::MAX_ADDRESSES),
        )
    })
}
