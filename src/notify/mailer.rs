//! Delivery. A `Mailer` takes a finished MIME message and either hands it to an
//! SMTP server or writes it to the outbox folder. Failures are sorted into
//! permanent (the server refused the message or the address for good: retrying
//! cannot help) and transient (anything that may work later: 4xx answers,
//! connection refused, timeouts, TLS trouble).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::templates::RenderedEmail;

/// How long one SMTP conversation may take before it counts as a transient failure.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Will fail again: a 5xx refusal, an address that cannot be a mailbox.
    #[error("permanent: {0}")]
    Permanent(String),
    /// May work later: a 4xx answer, no connection, a timeout.
    #[error("transient: {0}")]
    Transient(String),
}

impl SendError {
    pub fn kind(&self) -> &'static str {
        match self {
            SendError::Permanent(_) => "permanent",
            SendError::Transient(_) => "transient",
        }
    }
}

/// One message to deliver. `id` names it stably (derived from its dedupe key):
/// it is the local part of the `Message-ID` and the outbox file's name.
pub struct OutgoingEmail {
    pub id: String,
    pub message: Message,
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

pub trait Mailer: Send + Sync {
    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> SendFuture<'a>;
}

/// Builds the multipart (text + HTML) message. Bad addresses are permanent errors.
pub fn build_message(from: &Mailbox, to: &str, id: &str, rendered: &RenderedEmail) -> Result<OutgoingEmail, SendError> {
    let to: Mailbox = to.parse().map_err(|e| SendError::Permanent(format!("recipient address: {e}")))?;
    let domain = from.email.domain().to_owned();
    let message = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(rendered.subject.clone())
        .message_id(Some(format!("<{id}@{domain}>")))
        .multipart(MultiPart::alternative_plain_html(rendered.text.clone(), rendered.html.clone()))
        .map_err(|e| SendError::Permanent(format!("building the message: {e}")))?;
    Ok(OutgoingEmail { id: id.to_owned(), message })
}

/// Hands messages to an SMTP server (`SMTP_URL`).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpMailer {
    /// `smtp://host:port` (plain), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), `smtps://user:pass@host` (TLS from the start).
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        // The URL may hold a password: the error names neither.
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| {
            anyhow::anyhow!("SMTP_URL is not a usable smtp:// or smtps:// URL ({})", e.to_string().replace(url, "…"))
        })?;
        Ok(Self { transport: builder.timeout(Some(SMTP_TIMEOUT)).build() })
    }
}

impl Mailer for SmtpMailer {
    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> SendFuture<'a> {
        Box::pin(async move {
            match self.transport.send(email.message.clone()).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                Err(e) => Err(SendError::Transient(e.to_string())),
            }
        })
    }
}

/// Writes each message to `<dir>/<id>.eml`: the embedded mode's "mail server",
/// readable with any mail client. A resend of the same message replaces its file.
pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

impl Mailer for OutboxMailer {
    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> SendFuture<'a> {
        Box::pin(async move {
            let io = |e: std::io::Error| SendError::Transient(format!("writing to the outbox: {e}"));
            tokio::fs::create_dir_all(&self.dir).await.map_err(io)?;
            // Written aside and renamed, so a reader never sees half a message.
            let tmp = self.dir.join(format!(".{}.eml.tmp", email.id));
            tokio::fs::write(&tmp, email.message.formatted()).await.map_err(io)?;
            tokio::fs::rename(&tmp, self.dir.join(format!("{}.eml", email.id))).await.map_err(io)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> RenderedEmail {
        RenderedEmail { subject: "Hello".into(), text: "plain body".into(), html: "<p>html body</p>".into() }
    }

    #[test]
    fn messages_are_multipart_with_a_stable_message_id() {
        let from: Mailbox = "Mercato <shop@localhost>".parse().unwrap();
        let email = build_message(&from, "ann@example.com", "abc123", &rendered()).unwrap();
        let raw = String::from_utf8(email.message.formatted()).unwrap();
        assert!(raw.contains("Message-ID: <abc123@localhost>"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("plain body") && raw.contains("<p>html body</p>"), "{raw}");
    }

    #[test]
    fn an_impossible_address_is_permanent() {
        let from: Mailbox = "Mercato <shop@localhost>".parse().unwrap();
        let err = build_message(&from, "not an address", "x", &rendered()).err().unwrap();
        assert_eq!(err.kind(), "permanent");
    }

    #[tokio::test]
    async fn no_server_listening_is_a_transient_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mailer = SmtpMailer::from_url(&format!("smtp://127.0.0.1:{port}")).unwrap();
        let from: Mailbox = "Mercato <shop@localhost>".parse().unwrap();
        let email = build_message(&from, "ann@example.com", "x", &rendered()).unwrap();
        let err = mailer.send(&email).await.unwrap_err();
        assert_eq!(err.kind(), "transient", "{err}");
    }

    #[tokio::test]
    async fn the_outbox_holds_one_file_per_message_id() {
        let dir = std::env::temp_dir().join(format!("mercato-outbox-{}", uuid::Uuid::now_v7().simple()));
        let mailer = OutboxMailer::new(dir.clone());
        let from: Mailbox = "Mercato <shop@localhost>".parse().unwrap();
        let email = build_message(&from, "ann@example.com", "abc", &rendered()).unwrap();
        mailer.send(&email).await.unwrap();
        // A resend replaces the file rather than adding one.
        mailer.send(&email).await.unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("abc.eml")]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    // The transport's connection pool starts a task, hence the runtime.
    #[tokio::test]
    async fn smtp_urls_are_checked_without_echoing_them() {
        assert!(SmtpMailer::from_url("smtp://127.0.0.1:2525").is_ok());
        assert!(SmtpMailer::from_url("smtp://u:p@127.0.0.1:587?tls=required").is_ok());
        let err = SmtpMailer::from_url("ftp://user:hunter2@host").err().unwrap().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
