//! The `email.send` job: render, deliver, record, at most once per dedupe key.
//!
//! Why a message is (almost) never sent twice: the handler claims the message's
//! row (unique by dedupe key) before it talks to the mail server and marks it
//! `sent` after the server accepted it; a key already `sent` is skipped, whoever
//! enqueued it and however often its job runs. One window is left: a crash (or a
//! lost database) between the server's acceptance and the `sent` mark. The job
//! then runs again and the message goes out a second time. No protocol closes
//! that window from this side: SMTP has no idempotency key. What we can do is
//! make the duplicate recognisable: the `Message-ID` is derived from the dedupe
//! key, so every attempt carries the same one, and mail servers and clients that
//! deduplicate by Message-ID (many do) show the customer one message.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::mailer::{Mailer, SendError, build_message};
use super::templates::{Template, render};
use crate::jobs::{JobError, JobFuture, JobHandler};
use crate::store::jobs::{Job, enqueue};
use crate::store::notifications::NotificationClaim;
use crate::store::{Store, StoreResult, Tx};

pub const EMAIL_SEND: &str = "email.send";

/// How long one worker holds a message while it talks to the mail server; longer
/// than an SMTP conversation may last, so a slow send is not duplicated.
const CLAIM_LEASE: Duration = Duration::from_secs(120);

/// The payload of an `email.send` job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmailJob {
    pub template: Template,
    pub to: String,
    /// The template's variables (see [`Template`] for each one's shape).
    pub context: serde_json::Value,
    /// What the message is about, e.g. `order_confirmed:<order id>`: one message per key, ever.
    pub dedupe_key: String,
}

/// The job for `email`, to enqueue in the transaction of the change it tells about.
pub fn email_job(email: &EmailJob) -> (&'static str, serde_json::Value) {
    (EMAIL_SEND, serde_json::to_value(email).unwrap_or(serde_json::Value::Null))
}

/// Enqueues an e-mail in the caller's transaction: it is sent if and only if the
/// transaction commits.
pub async fn enqueue_email(
    tx: &mut Tx,
    template: Template,
    to: &str,
    context: serde_json::Value,
    dedupe_key: &str,
) -> StoreResult<Uuid> {
    let email = EmailJob { template, to: to.to_owned(), context, dedupe_key: dedupe_key.to_owned() };
    let (kind, payload) = email_job(&email);
    enqueue(tx, kind, payload).await
}

/// The stable id of the message for `dedupe_key`: the local part of its
/// `Message-ID` and its outbox file name.
pub fn message_id(dedupe_key: &str) -> String {
    let digest = Sha256::digest(dedupe_key.as_bytes());
    crate::domain::signature::hex(&digest[..16])
}

pub struct SendEmail {
    mailer: Arc<dyn Mailer>,
    from: Mailbox,
    /// The storefront page that takes a reset token (`?token=` is appended).
    reset_page: String,
    reset_key: Vec<u8>,
}

impl SendEmail {
    pub fn new(mailer: Arc<dyn Mailer>, from: Mailbox, reset_page: String, reset_key: Vec<u8>) -> Self {
        Self { mailer, from, reset_page, reset_key }
    }

    async fn send(&self, store: &Store, job: &Job) -> Result<(), JobError> {
        let email: EmailJob = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::permanent(format!("{EMAIL_SEND} payload is not usable: {e}")))?;
        let template = email.template.as_str();
        let id = message_id(&email.dedupe_key);
        let claim = store
            .claim_notification(&email.dedupe_key, template, &email.to, &id, CLAIM_LEASE)
            .await
            .map_err(|e| JobError::retry(format!("recording the message: {e}")))?;
        match claim {
            NotificationClaim::AlreadySent => {
                metrics::counter!("emails_skipped_total", "template" => template).increment(1);
                tracing::info!(dedupe_key = %email.dedupe_key, template, "message already sent; not sending it again");
                return Ok(());
            }
            NotificationClaim::Busy => return Err(JobError::retry("another worker is sending this message")),
            NotificationClaim::Send => {}
        }
        match self.deliver(&email, &id).await {
            Ok(()) => {
                // If this write is lost the job runs again and the message is resent
                // with the same Message-ID (see the module comment).
                store
                    .mark_notification_sent(&email.dedupe_key)
                    .await
                    .map_err(|e| JobError::retry(format!("recording the sent message: {e}")))?;
                metrics::counter!("emails_sent_total", "template" => template).increment(1);
                tracing::info!(dedupe_key = %email.dedupe_key, template, "message sent");
                Ok(())
            }
            Err(error) => {
                let permanent = matches!(error, SendError::Permanent(_));
                metrics::counter!("emails_failed_total", "template" => template, "kind" => error.kind()).increment(1);
                tracing::warn!(dedupe_key = %email.dedupe_key, template, error = %error, "message not sent");
                store
                    .mark_notification_failed(&email.dedupe_key, &error.to_string(), permanent)
                    .await
                    .map_err(|e| JobError::retry(format!("recording the failed message: {e}")))?;
                Err(JobError { message: error.to_string(), permanent })
            }
        }
    }

    async fn deliver(&self, email: &EmailJob, id: &str) -> Result<(), SendError> {
        let context = self.complete(email.template, &email.context)?;
        let rendered = render(email.template, &context).map_err(|e| SendError::Permanent(e.to_string()))?;
        let message = build_message(&self.from, &email.to, id, &rendered)?;
        self.mailer.send(&message).await
    }

    /// Adds what the job deliberately does not carry: the reset link, made from
    /// the reset's id at send time (see `auth::reset`).
    fn complete(&self, template: Template, context: &serde_json::Value) -> Result<serde_json::Value, SendError> {
        let mut context = context.clone();
        if template == Template::PasswordReset {
            let reset_id = context
                .get("reset_id")
                .and_then(|v| v.as_str())
                .and_then(|v| Uuid::parse_str(v).ok())
                .ok_or_else(|| SendError::Permanent("password_reset needs a reset_id".into()))?;
            let token = crate::auth::reset::reset_token(&self.reset_key, reset_id);
            let glue = if self.reset_page.contains('?') { '&' } else { '?' };
            if let Some(map) = context.as_object_mut() {
                map.insert("reset_url".into(), format!("{}{glue}token={token}", self.reset_page).into());
            }
        }
        Ok(context)
    }
}

impl JobHandler for SendEmail {
    fn run<'a>(&'a self, store: &'a Store, job: &'a Job) -> JobFuture<'a> {
        Box::pin(self.send(store, job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_per_dedupe_key() {
        assert_eq!(message_id("order_confirmed:1"), message_id("order_confirmed:1"));
        assert_ne!(message_id("order_confirmed:1"), message_id("order_shipped:1"));
        assert!(message_id("x").chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn payloads_round_trip_and_unknown_templates_are_refused() {
        let email = EmailJob {
            template: Template::OrderShipped,
            to: "ann@example.com".into(),
            context: serde_json::json!({"a": 1}),
            dedupe_key: "order_shipped:1".into(),
        };
        let (kind, payload) = email_job(&email);
        assert_eq!(kind, EMAIL_SEND);
        assert_eq!(payload["template"], "order_shipped");
        assert_eq!(serde_json::from_value::<EmailJob>(payload).unwrap(), email);
        let bad = serde_json::json!({"template": "nope", "to": "a@b.c", "context": {}, "dedupe_key": "k"});
        assert!(serde_json::from_value::<EmailJob>(bad).is_err());
    }
}
