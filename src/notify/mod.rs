//! Notifications: an event and its data in, the right e-mail out, at most once
//! per dedupe key. Callers enqueue an `email.send` job with [`enqueue_email`] in
//! the transaction of the change the message is about; a worker renders it
//! ([`templates`]), hands it to the configured [`mailer::Mailer`] and records
//! it ([`send_email`]).

pub mod mailer;
pub mod send_email;
pub mod templates;

use std::sync::Arc;

use lettre::message::Mailbox;

use crate::config::Settings;
pub use send_email::{EMAIL_SEND, EmailJob, SendEmail, email_job, enqueue_email};
pub use templates::{RenderedEmail, Template, render};

/// The mailer the settings ask for: SMTP when `SMTP_URL` is set, otherwise
/// `.eml` files in `<data_dir>/outbox`.
pub fn mailer_from_settings(settings: &Settings) -> anyhow::Result<Arc<dyn mailer::Mailer>> {
    Ok(match settings.smtp_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) => Arc::new(mailer::SmtpMailer::from_url(url)?),
        None => Arc::new(mailer::OutboxMailer::new(settings.data_dir.join("outbox"))),
    })
}

/// The sender every message carries (`MERCATO_MAIL_FROM`).
pub fn sender(settings: &Settings) -> anyhow::Result<Mailbox> {
    settings.mail_from.parse().map_err(|e| anyhow::anyhow!("MERCATO_MAIL_FROM `{}` is not a mailbox: {e}", settings.mail_from))
}

/// The `email.send` handler as the settings configure it. `public_url` is where
/// this shop is reachable; reset links point at `password_reset_url`, or at
/// `<public_url>/reset-password` when that is unset.
pub fn email_handler(settings: &Settings, public_url: &str) -> anyhow::Result<SendEmail> {
    let reset_page =
        settings.password_reset_url.clone().unwrap_or_else(|| format!("{}/reset-password", public_url.trim_end_matches('/')));
    Ok(SendEmail::new(
        mailer_from_settings(settings)?,
        sender(settings)?,
        reset_page,
        crate::auth::reset::reset_key(&settings.resolve_jwt_secret()?),
    ))
}
