//! Structured logs: JSON lines by default (one object per event, with the request
//! span's `request_id`), human-readable with `MERCATO_LOG_FORMAT=pretty`.

use tracing_subscriber::EnvFilter;

pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second initialisation (tests, embedding) keeps the first subscriber.
    let _ = if format == "pretty" {
        builder.try_init()
    } else {
        builder.json().with_current_span(true).with_span_list(false).try_init()
    };
}
