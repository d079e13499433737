//! `--emails`: the time from each checkout answer (as the buyer saw it) to its
//! confirmation e-mail being handed over (SMTP or `.eml`), read from the shop's
//! database because no API tells when an e-mail left.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::invariants::Invariant;
use super::report::{EmailLatency, Percentiles};
use super::stats::AnsweredOrder;

/// How long to wait for the last confirmation e-mail.
const PATIENCE: Duration = Duration::from_secs(300);

/// Waits for every answered order's confirmation, then measures; the invariant
/// says whether all of them were sent in time.
pub async fn measure(store: &crate::store::Store, answered: &[AnsweredOrder]) -> anyhow::Result<(EmailLatency, Invariant)> {
    let keys: Vec<String> = answered.iter().map(|o| format!("order_confirmed:{}", o.id)).collect();
    let wait_until = Instant::now() + PATIENCE;
    let sent = loop {
        let sent = store.notification_sent_times(&keys).await?;
        if sent.len() == keys.len() || Instant::now() > wait_until {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    for (o, key) in answered.iter().zip(&keys) {
        let Some(sent_at) = sent.get(key) else { continue };
        let sent_at = time::OffsetDateTime::parse(sent_at, &time::format_description::well_known::Rfc3339)?;
        h.saturating_record(((sent_at - o.at).whole_microseconds().max(1)) as u64);
    }
    let missing = keys.len() - sent.len();
    let invariant = Invariant {
        name: "every order's confirmation e-mail sent",
        holds: missing == 0,
        detail: format!("{} of {} sent within {} s of the run's end", sent.len(), keys.len(), PATIENCE.as_secs()),
    };
    Ok((EmailLatency { orders: keys.len(), sent: sent.len(), latency_ms: Percentiles::of(&h) }, invariant))
}
