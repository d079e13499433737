//! Settings: safe defaults in code for the embedded mode, then an optional
//! `mercato.toml`, then environment variables. Whatever would be unsafe in a
//! shared deployment is refused at start with a message saying what to set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Minimum length of an operator-supplied signing secret (256 bits as hex or text).
pub const MIN_JWT_SECRET_LEN: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// Folder for the SQLite file and other local state.
    pub data_dir: PathBuf,
    /// `postgres://...` or `sqlite://...`; the SQLite file under `data_dir` when absent.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    /// `redis://host:port` (`REDIS_URL`): instances share what they know about
    /// sold-out variants through it.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so shops (or tests) can share a server.
    pub redis_prefix: String,
    /// Folder of this instance's search index; `data_dir/search` when absent.
    /// Each instance needs its own.
    pub search_path: Option<PathBuf>,
    /// How often the search index and caches look for catalog changes.
    pub search_poll_ms: u64,
    /// Memory for cached catalog answers in this process.
    pub cache_max_mb: u64,
    /// Longest a cached catalog answer is kept (in process and in Redis): a
    /// safety net, since a catalog change moves the key at once.
    pub cache_ttl_secs: u64,
    /// `Cache-Control: max-age` of catalog answers (for browsers and CDNs).
    pub catalog_max_age_secs: u64,
    /// HMAC secret for access tokens. Generated and kept in `data_dir` in the embedded mode.
    pub jwt_secret: Option<String>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// Comma-separated storefront origins allowed by CORS (`*` for any).
    pub cors_origins: String,
    pub body_limit_bytes: usize,
    /// Storefront and admin reads per client IP per second (burst = 2×).
    pub rate_limit_reads_per_second: u32,
    /// Writes per client IP per second (burst = 2×).
    pub rate_limit_writes_per_second: u32,
    /// Login attempts per client IP per minute.
    pub rate_limit_logins_per_minute: u32,
    /// Coupon codes a client IP may try on carts per minute (guessing codes is an attack).
    pub rate_limit_code_attempts_per_minute: u32,
    /// Take the client IP from `X-Forwarded-For` (only behind a proxy you run).
    pub trust_forwarded_for: bool,
    /// `json` (default) or `pretty`.
    pub log_format: String,
    /// Currency used when a request names none.
    pub default_currency: String,
    /// A request still running after this long is answered 408 and dropped.
    pub request_timeout_secs: u64,
    /// Whether catalog prices include tax (the European way) or have it added.
    pub prices_include_tax: bool,
    /// How long checkout holds stock for an order awaiting payment.
    pub reservation_ttl_secs: u64,
    /// How often expired reservations are released.
    pub expiry_sweep_secs: u64,
    /// Run housekeeping (expiry, sales folding, purges, low-stock alerts) from this process.
    pub housekeeping: bool,
    pub cart_ttl_days: u64,
    pub max_line_quantity: i64,
    /// Longest wait for a payment provider before the checkout fails with 503.
    pub payment_timeout_secs: u64,
    /// Offer the simulated `test` provider (`tok_ok` pays without money). When
    /// absent: on unless a real provider (Stripe) is configured.
    pub test_payments: Option<bool>,
    /// Delay before the `test` provider confirms a `tok_async` payment by webhook.
    pub test_payment_latency_ms: u64,
    /// Signing secret of the `test` provider's webhooks (generated in the embedded mode).
    pub test_payment_webhook_secret: Option<String>,
    /// Base URL at which this shop is reachable (for webhooks it sends itself);
    /// `http://<listen address>` when absent.
    pub public_url: Option<String>,
    /// Longest wait for a database connection before a request fails.
    pub database_acquire_timeout_secs: u64,
    /// Job workers inside `mercato serve` (0: leave the queue to `mercato worker`).
    pub workers: usize,
    /// How long a worker holds a claimed job before others may take it over.
    pub job_lease_secs: u64,
    /// Highest total of refunds (minor units) a `support` staff member may bring one order to.
    pub support_refund_limit: i64,
    /// Quick retries of a payment provider call whose outcome is unknown (same idempotency key).
    pub payment_retries: u32,
    /// Consecutive unavailable answers after which a provider's circuit opens.
    pub payment_circuit_failure_threshold: u32,
    /// How long an open circuit refuses calls before one trial call may go.
    pub payment_circuit_cooldown_secs: u64,
    /// What checkout does when the provider is unavailable: `fail` or `queue`.
    pub payment_unavailable: PaymentUnavailable,
    /// Stripe's secret API key (env `STRIPE_SECRET_KEY`); enables the `stripe` provider.
    pub stripe_secret_key: Option<Secret>,
    /// Signing secret of Stripe's webhooks to this shop (env `STRIPE_WEBHOOK_SECRET`).
    pub stripe_webhook_secret: Option<Secret>,
    /// Where Stripe's API is (a mock in tests).
    pub stripe_api_base: String,
    /// `automatic` (money taken at checkout) or `on_shipment` (held at checkout,
    /// captured by the first shipment, released by a cancel).
    pub stripe_capture: StripeCapture,
    /// `smtp://host:port`, `smtp://user:pass@host:587?tls=required` (STARTTLS) or
    /// `smtps://user:pass@host` (`SMTP_URL`); unset: messages are written as `.eml`
    /// files to `data_dir/outbox`.
    pub smtp_url: Option<String>,
    /// The sender of every message.
    pub mail_from: String,
    /// The storefront page that asks for a new password; reset e-mails link to it
    /// with `?token=`. `<public_url>/reset-password` when absent.
    pub password_reset_url: Option<String>,
}

/// What a checkout does when the payment provider cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentUnavailable {
    /// Answer 503 at once: the order fails and its stock is released.
    #[default]
    Fail,
    /// Answer 202: the order keeps its stock and a job retries the payment.
    Queue,
}

/// When Stripe takes the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StripeCapture {
    #[default]
    Automatic,
    OnShipment,
}

/// A secret setting: its `Debug` form never shows the value, so printing the
/// settings (or an error holding them) cannot leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(\"<redacted>\")")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 16,
            redis_url: None,
            redis_prefix: "mercato:".into(),
            search_path: None,
            search_poll_ms: 250,
            cache_max_mb: 64,
            cache_ttl_secs: 30,
            catalog_max_age_secs: 30,
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            cors_origins: String::new(),
            body_limit_bytes: 1024 * 1024,
            rate_limit_reads_per_second: 200,
            rate_limit_writes_per_second: 50,
            rate_limit_logins_per_minute: 10,
            rate_limit_code_attempts_per_minute: 20,
            trust_forwarded_for: false,
            log_format: "json".into(),
            default_currency: "EUR".into(),
            request_timeout_secs: 30,
            prices_include_tax: true,
            reservation_ttl_secs: 15 * 60,
            expiry_sweep_secs: 30,
            housekeeping: true,
            cart_ttl_days: 30,
            max_line_quantity: 100,
            payment_timeout_secs: 10,
            test_payments: None,
            test_payment_latency_ms: 200,
            test_payment_webhook_secret: None,
            public_url: None,
            database_acquire_timeout_secs: 10,
            workers: 2,
            job_lease_secs: 60,
            support_refund_limit: 10_000,
            payment_retries: 1,
            payment_circuit_failure_threshold: 5,
            payment_circuit_cooldown_secs: 30,
            payment_unavailable: PaymentUnavailable::Fail,
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_api_base: crate::payments::stripe::DEFAULT_API_BASE.into(),
            stripe_capture: StripeCapture::Automatic,
            smtp_url: None,
            mail_from: "Mercato <shop@localhost>".into(),
            password_reset_url: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("unsafe configuration: {0}")]
    Unsafe(String),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then `mercato.toml` (or the file in `MERCATO_CONFIG`), then `MERCATO_*`
    /// variables, `DATABASE_URL`, `REDIS_URL`, `SMTP_URL` and the `STRIPE_*` secrets (named as Stripe's docs name them).
    pub fn load() -> Result<Self, ConfigError> {
        let file = std::env::var("MERCATO_CONFIG").unwrap_or_else(|_| "mercato.toml".into());
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("MERCATO_"))
            .merge(Env::raw().only(&["DATABASE_URL", "REDIS_URL", "SMTP_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"]))
            .extract::<Settings>()
            .map_err(|e| ConfigError::Parse(Box::new(e)))
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("MERCATO_LISTEN `{}` is not an address like 127.0.0.1:8080", self.listen)))
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("mercato.db").display()),
        }
    }

    pub fn search_path(&self) -> PathBuf {
        self.search_path.clone().unwrap_or_else(|| self.data_dir.join("search"))
    }

    pub fn uses_postgres(&self) -> bool {
        let url = self.database_url();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_origins.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    /// Refuses settings that are fine on a laptop but dangerous when the database is shared.
    pub fn check_safety(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.search_poll_ms == 0 || self.cache_ttl_secs == 0 {
            return Err(ConfigError::Invalid("MERCATO_SEARCH_POLL_MS and MERCATO_CACHE_TTL_SECS must be at least 1".into()));
        }
        if crate::domain::money::Currency::parse(&self.default_currency).is_err() {
            return Err(ConfigError::Invalid(format!(
                "MERCATO_DEFAULT_CURRENCY `{}` is not an ISO 4217 code",
                self.default_currency
            )));
        }
        match &self.jwt_secret {
            Some(s) if s.len() < MIN_JWT_SECRET_LEN => {
                return Err(ConfigError::Unsafe(format!(
                    "MERCATO_JWT_SECRET must be at least {MIN_JWT_SECRET_LEN} characters (use `openssl rand -hex 32`)"
                )));
            }
            None if self.uses_postgres() => {
                return Err(ConfigError::Unsafe(
                    "DATABASE_URL points at PostgreSQL, which several instances may share, but MERCATO_JWT_SECRET is not set; \
                     set it to the same random value (at least 32 characters, e.g. `openssl rand -hex 32`) on every instance"
                        .into(),
                ));
            }
            _ => {}
        }
        if self.access_token_ttl_secs == 0 || self.access_token_ttl_secs > 24 * 3600 {
            return Err(ConfigError::Unsafe("MERCATO_ACCESS_TOKEN_TTL_SECS must be between 1 and 86400".into()));
        }
        if self.refresh_token_ttl_secs == 0 || self.refresh_token_ttl_secs > 365 * 24 * 3600 {
            return Err(ConfigError::Unsafe("MERCATO_REFRESH_TOKEN_TTL_SECS must be between 1 and 31536000 (a year)".into()));
        }
        if self.reservation_ttl_secs == 0 || self.max_line_quantity < 1 || self.payment_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "MERCATO_RESERVATION_TTL_SECS, MERCATO_MAX_LINE_QUANTITY and MERCATO_PAYMENT_TIMEOUT_SECS must be at least 1"
                    .into(),
            ));
        }
        if self.payment_retries > 5 || self.payment_circuit_failure_threshold == 0 || self.payment_circuit_cooldown_secs == 0 {
            return Err(ConfigError::Invalid(
                "MERCATO_PAYMENT_RETRIES must be at most 5, MERCATO_PAYMENT_CIRCUIT_FAILURE_THRESHOLD and \
                 MERCATO_PAYMENT_CIRCUIT_COOLDOWN_SECS at least 1"
                    .into(),
            ));
        }
        // A checkout must finish well within the idempotency lease, or a retry could
        // take its key over while it still runs; and its payment (every attempt timing
        // out) within the request timeout, or the shopper gets a 408 with the outcome unknown.
        let lease = crate::store::idempotency::LEASE_SECS.unsigned_abs();
        let payment = self.payment_guard().worst_case().as_secs_f64().ceil() as u64;
        if self.request_timeout_secs + payment >= lease || payment >= self.request_timeout_secs {
            return Err(ConfigError::Invalid(format!(
                "MERCATO_PAYMENT_TIMEOUT_SECS × (MERCATO_PAYMENT_RETRIES + 1) (now {payment} s with the pauses) must stay under \
                 MERCATO_REQUEST_TIMEOUT_SECS, and their sum under {lease} s (the idempotency lease)"
            )));
        }
        let blank = |s: &Option<Secret>| s.as_ref().is_some_and(|s| s.expose().trim().is_empty());
        if blank(&self.stripe_secret_key) || blank(&self.stripe_webhook_secret) {
            return Err(ConfigError::Invalid("STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET must not be empty when set".into()));
        }
        if self.stripe_secret_key.is_some()
            && !(self.stripe_api_base.starts_with("https://") || self.stripe_api_base.starts_with("http://"))
        {
            return Err(ConfigError::Invalid(format!(
                "MERCATO_STRIPE_API_BASE `{}` is not an http(s) URL",
                self.stripe_api_base
            )));
        }
        if self.stripe_secret_key.is_some() && self.stripe_webhook_secret.is_none() {
            return Err(ConfigError::Unsafe(
                "STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not: without it Stripe's webhooks cannot be verified \
                 and payments confirmed later would never reach their orders; set it to the endpoint's signing secret (whsec_...)"
                    .into(),
            ));
        }
        if self.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "MERCATO_MAIL_FROM `{}` is not a mailbox like `Shop <shop@example.com>`",
                self.mail_from
            )));
        }
        if self.request_timeout_secs == 0 {
            return Err(ConfigError::Invalid("MERCATO_REQUEST_TIMEOUT_SECS must be at least 1".into()));
        }
        Ok(())
    }

    /// Timeout, retries and circuit breaker of every payment provider.
    /// Whether checkout offers the simulated `test` provider.
    pub fn test_payments_enabled(&self) -> bool {
        self.test_payments.unwrap_or(self.stripe_secret_key.is_none())
    }

    pub fn payment_guard(&self) -> crate::payments::guarded::GuardSettings {
        crate::payments::guarded::GuardSettings {
            timeout: std::time::Duration::from_secs(self.payment_timeout_secs),
            retries: self.payment_retries,
            retry_pause: std::time::Duration::from_millis(100),
            failure_threshold: self.payment_circuit_failure_threshold,
            cooldown: std::time::Duration::from_secs(self.payment_circuit_cooldown_secs),
        }
    }

    /// The configured secret, or (embedded mode only) one generated once and kept in
    /// `data_dir/jwt_secret` so tokens survive restarts.
    pub fn resolve_jwt_secret(&self) -> anyhow::Result<String> {
        resolve_secret(self.jwt_secret.as_deref(), &self.data_dir.join("jwt_secret"))
    }

    /// The `test` payment provider's webhook secret, configured or kept in `data_dir`.
    pub fn resolve_test_payment_secret(&self) -> anyhow::Result<String> {
        resolve_secret(self.test_payment_webhook_secret.as_deref(), &self.data_dir.join("test_payment_secret"))
    }
}

fn resolve_secret(configured: Option<&str>, path: &Path) -> anyhow::Result<String> {
    if let Some(s) = configured {
        return Ok(s.to_owned());
    }
    if let Ok(existing) = std::fs::read_to_string(path)
        && existing.trim().len() >= MIN_JWT_SECRET_LEN
    {
        return Ok(existing.trim().to_owned());
    }
    let secret = crate::auth::tokens::random_token();
    write_private(path, &secret)?;
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_without_a_secret_is_refused() {
        let s = Settings { database_url: Some("postgres://localhost/shop".into()), ..Settings::default() };
        let err = s.check_safety().unwrap_err().to_string();
        assert!(err.contains("MERCATO_JWT_SECRET"), "{err}");
        let s = Settings { jwt_secret: Some("x".repeat(40)), ..s };
        assert!(s.check_safety().is_ok());
    }

    #[test]
    fn absurd_token_lifetimes_are_refused() {
        let s = Settings { refresh_token_ttl_secs: u64::MAX, ..Settings::default() };
        assert!(s.check_safety().unwrap_err().to_string().contains("MERCATO_REFRESH_TOKEN_TTL_SECS"));
        let s = Settings { access_token_ttl_secs: 0, ..Settings::default() };
        assert!(s.check_safety().is_err());
    }

    #[test]
    fn short_secrets_and_bad_addresses_are_refused() {
        let s = Settings { jwt_secret: Some("short".into()), ..Settings::default() };
        assert!(s.check_safety().is_err());
        let s = Settings { listen: "8080".into(), ..Settings::default() };
        assert!(s.check_safety().is_err());
    }

    #[test]
    fn a_stripe_key_without_a_webhook_secret_is_refused_and_neither_is_printed() {
        let s = Settings { stripe_secret_key: Some(Secret::new("sk_test_hidden")), ..Settings::default() };
        let err = s.check_safety().unwrap_err().to_string();
        assert!(err.contains("STRIPE_WEBHOOK_SECRET"), "{err}");
        let s = Settings { stripe_webhook_secret: Some(Secret::new("whsec_hidden")), ..s };
        assert!(s.check_safety().is_ok());
        let printed = format!("{s:?}");
        assert!(!printed.contains("sk_test_hidden") && !printed.contains("whsec_hidden"), "{printed}");
        let s = Settings { stripe_webhook_secret: Some(Secret::new("")), ..s };
        assert!(s.check_safety().is_err());
    }

    #[test]
    fn payment_retries_must_fit_in_the_request_timeout() {
        let s = Settings { payment_retries: 2, ..Settings::default() };
        assert!(s.check_safety().unwrap_err().to_string().contains("MERCATO_PAYMENT_RETRIES"));
        let s = Settings { payment_retries: 2, payment_timeout_secs: 5, ..Settings::default() };
        assert!(s.check_safety().is_ok());
        let s = Settings { payment_circuit_failure_threshold: 0, ..Settings::default() };
        assert!(s.check_safety().is_err());
    }

    #[test]
    fn a_sender_that_is_no_mailbox_is_refused() {
        let s = Settings { mail_from: "Shop".into(), ..Settings::default() };
        assert!(s.check_safety().unwrap_err().to_string().contains("MERCATO_MAIL_FROM"));
    }

    #[test]
    fn the_embedded_default_is_safe() {
        let s = Settings::default();
        assert!(s.check_safety().is_ok());
        assert!(!s.uses_postgres());
        assert!(s.database_url().starts_with("sqlite://"));
    }
}
