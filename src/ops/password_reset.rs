//! Customers who forgot their password: a reset link by e-mail, then a new
//! password with the token from it. The request is answered the same way whether
//! or not the address has an account, so it cannot be used to find accounts.

use serde::Deserialize;
use serde_json::json;

use crate::auth::password;
use crate::auth::reset::{MAX_RECENT_RESETS, RESET_TTL_SECS, reset_token};
use crate::auth::tokens::{Audience, hash_refresh_token};
use crate::domain::email::Email;
use crate::error::{ApiError, ApiResult};
use crate::notify::{EmailJob, Template, email_job};
use crate::store::password_resets::{NewPasswordReset, ResetOutcome};
use crate::store::{Store, format_time, new_id};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    pub email: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirm {
    /// The token from the reset e-mail's link.
    pub token: String,
    /// The new password: at least 12 characters.
    pub password: String,
}

/// Stores a reset token for the account of `email`, if there is one, and queues
/// the e-mail with its link in the same transaction.
pub async fn request(store: &Store, reset_key: &[u8], input: &PasswordResetRequest) -> ApiResult<()> {
    let email = Email::parse(&input.email).map_err(|e| ApiError::invalid_field("email", e.code, e.message))?;
    let Some(account) = store.customer_by_email(&email).await? else {
        return Ok(());
    };
    let customer = account.customer;
    let reset_id = new_id();
    let now = time::OffsetDateTime::now_utc();
    let expires = now + time::Duration::seconds(RESET_TTL_SECS);
    let shown_expiry =
        expires.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC")).unwrap_or_default();
    let name = if customer.name.trim().is_empty() { customer.email.clone() } else { customer.name.clone() };
    // The job carries the reset's id, never the token: the worker derives it.
    let job = email_job(&EmailJob {
        template: Template::PasswordReset,
        to: customer.email.clone(),
        context: json!({
            "name": name,
            "reset_id": reset_id,
            "expires_at": shown_expiry,
            "expires_in_minutes": RESET_TTL_SECS / 60,
        }),
        dedupe_key: format!("password_reset:{reset_id}"),
    });
    let token_hash = hash_refresh_token(&reset_token(reset_key, reset_id));
    let reset = NewPasswordReset {
        id: reset_id,
        customer_id: customer.id,
        token_hash: &token_hash,
        expires_at: &format_time(expires),
        recent_since: &format_time(now - time::Duration::seconds(RESET_TTL_SECS)),
        max_recent: MAX_RECENT_RESETS,
    };
    if !store.create_password_reset(&reset, job).await? {
        tracing::info!(customer.id = %customer.id, "password reset requested too often; no e-mail sent");
    }
    Ok(())
}

/// Sets the new password with a reset token, spends the token and ends every
/// session of the customer.
pub async fn confirm(store: &Store, input: PasswordResetConfirm) -> ApiResult<()> {
    password::check_policy(&input.password).map_err(|e| ApiError::invalid_field("password", e.code, e.message))?;
    if input.token.is_empty() || input.token.len() > 256 {
        return Err(invalid_token("this reset token is not valid; request a new reset e-mail"));
    }
    let token_hash = hash_refresh_token(&input.token);
    let password_hash = password::hash(input.password).await?;
    match store.reset_password(&token_hash, &password_hash, Audience::Customer.as_str()).await? {
        ResetOutcome::Done { customer_id } => {
            tracing::info!(customer.id = %customer_id, "password reset; sessions ended");
            Ok(())
        }
        ResetOutcome::Unknown => Err(invalid_token("this reset token is not valid; request a new reset e-mail")),
        ResetOutcome::Expired => Err(invalid_token("this reset token has expired; request a new reset e-mail")),
        ResetOutcome::Used => Err(invalid_token("this reset token was already used; request a new reset e-mail")),
    }
}

fn invalid_token(detail: &str) -> ApiError {
    ApiError::bad_field("invalid_reset_token", "token", detail)
}
