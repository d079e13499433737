//! The record of messages sent, one row per dedupe key. A message is claimed
//! (with a short lease, so two workers never send it at the same time) before it
//! is handed to the mail server, and marked `sent` after: a key already `sent`
//! is never claimed again.

use super::rows::{int, opt_text, text};
use super::{Store, StoreResult, format_time, new_id, now};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationClaim {
    /// This worker may send the message now.
    Send,
    /// The message went out before; nothing to do.
    AlreadySent,
    /// Another worker is sending it right now.
    Busy,
}

/// A notification as stored (for operators and tests).
#[derive(Debug, Clone)]
pub struct Notification {
    pub dedupe_key: String,
    pub template: String,
    pub recipient: String,
    pub message_id: String,
    /// `pending`, `sent` or `failed` (refused for good).
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
}

impl Store {
    /// Claims the message keyed `dedupe_key` for one send attempt, creating its row
    /// on first sight. The row keeps the recipient of the latest attempt.
    pub async fn claim_notification(
        &self,
        dedupe_key: &str,
        template: &str,
        recipient: &str,
        message_id: &str,
        lease: std::time::Duration,
    ) -> StoreResult<NotificationClaim> {
        let ts = now();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO notifications (id, dedupe_key, template, recipient, message_id, status, attempts, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(new_id().to_string())
        .bind(dedupe_key)
        .bind(template)
        .bind(recipient)
        .bind(message_id)
        .bind(ts.as_str())
        .execute(&mut *tx)
        .await?;
        let claimed = sqlx::query(
            "UPDATE notifications SET status = 'pending', attempts = attempts + 1, locked_until = $1, updated_at = $2, recipient = $3
             WHERE dedupe_key = $4 AND status <> 'sent' AND (locked_until IS NULL OR locked_until < $2)",
        )
        .bind(format_time(time::OffsetDateTime::now_utc() + lease))
        .bind(ts.as_str())
        .bind(recipient)
        .bind(dedupe_key)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let claim = if claimed == 1 {
            NotificationClaim::Send
        } else {
            let row = sqlx::query("SELECT status FROM notifications WHERE dedupe_key = $1")
                .bind(dedupe_key)
                .fetch_one(&mut *tx)
                .await?;
            if text(&row, "status")? == "sent" { NotificationClaim::AlreadySent } else { NotificationClaim::Busy }
        };
        tx.commit().await?;
        Ok(claim)
    }

    pub async fn mark_notification_sent(&self, dedupe_key: &str) -> StoreResult<()> {
        let ts = now();
        sqlx::query(
            "UPDATE notifications SET status = 'sent', sent_at = $1, updated_at = $1, locked_until = NULL, last_error = NULL
             WHERE dedupe_key = $2",
        )
        .bind(ts.as_str())
        .bind(dedupe_key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed attempt and releases the claim. A permanent failure marks
    /// the message `failed`; a transient one leaves it `pending` for the next try.
    pub async fn mark_notification_failed(&self, dedupe_key: &str, error: &str, permanent: bool) -> StoreResult<()> {
        let ts = now();
        sqlx::query(
            "UPDATE notifications SET status = CASE WHEN $1 = 1 THEN 'failed' ELSE 'pending' END,
                last_error = $2, locked_until = NULL, updated_at = $3
             WHERE dedupe_key = $4 AND status <> 'sent'",
        )
        .bind(i64::from(permanent))
        .bind(error.chars().take(2000).collect::<String>())
        .bind(ts.as_str())
        .bind(dedupe_key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn notification(&self, dedupe_key: &str) -> StoreResult<Option<Notification>> {
        let row = sqlx::query(
            "SELECT dedupe_key, template, recipient, message_id, status, attempts, last_error, sent_at
             FROM notifications WHERE dedupe_key = $1",
        )
        .bind(dedupe_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Notification {
                dedupe_key: text(&r, "dedupe_key")?,
                template: text(&r, "template")?,
                recipient: text(&r, "recipient")?,
                message_id: text(&r, "message_id")?,
                status: text(&r, "status")?,
                attempts: int(&r, "attempts")?,
                last_error: opt_text(&r, "last_error")?,
                sent_at: opt_text(&r, "sent_at")?,
            })
        })
        .transpose()
    }

    /// When each of these messages was handed over, for those sent.
    pub async fn notification_sent_times(
        &self,
        dedupe_keys: &[String],
    ) -> StoreResult<std::collections::HashMap<String, String>> {
        let mut sent = std::collections::HashMap::new();
        for chunk in dedupe_keys.chunks(500) {
            let mut q =
                super::SqlBuilder::new("SELECT dedupe_key, sent_at FROM notifications WHERE status = 'sent' AND dedupe_key IN (");
            q.bind_list(chunk.iter().map(String::as_str)).push(")");
            for r in q.build().fetch_all(&self.pool).await? {
                if let Some(at) = opt_text(&r, "sent_at")? {
                    sent.insert(text(&r, "dedupe_key")?, at);
                }
            }
        }
        Ok(sent)
    }
}
