//! Password reset tokens: stored as SHA-256 hashes, valid once and for a short
//! time. Spending one sets the new password, kills every other outstanding
//! reset link of the customer and ends all their sessions, in one transaction.

use uuid::Uuid;

use super::rows::{id, int, opt_text, text};
use super::{Store, StoreResult, now};

pub struct NewPasswordReset<'a> {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub token_hash: &'a str,
    pub expires_at: &'a str,
    /// Resets already requested for this customer since this time count
    /// against `max_recent`.
    pub recent_since: &'a str,
    pub max_recent: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetOutcome {
    Done { customer_id: Uuid },
    Unknown,
    Expired,
    Used,
}

impl Store {
    /// Stores a reset token and, in the same transaction, the job (`kind`,
    /// `payload`) that mails the link. `false`, with nothing written, when the
    /// customer already asked for `max_recent` resets lately: a flood of requests
    /// for one address must not become a flood of mail to its owner.
    pub async fn create_password_reset(&self, reset: &NewPasswordReset<'_>, job: (&str, serde_json::Value)) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM password_reset_tokens WHERE customer_id = $1 AND created_at > $2")
            .bind(reset.customer_id.to_string())
            .bind(reset.recent_since)
            .fetch_one(&mut *tx)
            .await?;
        if int(&row, "n")? >= reset.max_recent {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO password_reset_tokens (id, customer_id, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(reset.id.to_string())
        .bind(reset.customer_id.to_string())
        .bind(reset.token_hash)
        .bind(reset.expires_at)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        super::jobs::enqueue(&mut tx, job.0, job.1).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Spends the token with this hash and sets the customer's new password.
    pub async fn reset_password(&self, token_hash: &str, password_hash: &str, audience: &str) -> StoreResult<ResetOutcome> {
        let ts = now();
        let mut tx = self.begin().await?;
        let spent = sqlx::query(
            "UPDATE password_reset_tokens SET used_at = $1
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING customer_id",
        )
        .bind(ts.as_str())
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(spent) = spent else {
            let row = sqlx::query("SELECT used_at, expires_at FROM password_reset_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await?;
            return Ok(match row {
                None => ResetOutcome::Unknown,
                Some(r) if opt_text(&r, "used_at")?.is_some() => ResetOutcome::Used,
                Some(r) if text(&r, "expires_at")? <= ts => ResetOutcome::Expired,
                // Spent by a concurrent request between the two statements.
                Some(_) => ResetOutcome::Used,
            });
        };
        let customer_id = id(&spent, "customer_id")?;
        sqlx::query("UPDATE customers SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(ts.as_str())
            .bind(customer_id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE password_reset_tokens SET used_at = $1 WHERE customer_id = $2 AND used_at IS NULL")
            .bind(ts.as_str())
            .bind(customer_id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE audience = $2 AND subject_id = $3 AND revoked_at IS NULL")
            .bind(ts.as_str())
            .bind(audience)
            .bind(customer_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ResetOutcome::Done { customer_id })
    }
}
