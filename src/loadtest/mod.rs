//! `mercato loadtest`: load against a running shop, then proof that its books
//! still add up. A run is one command on a fresh shop: it checks that every
//! target answers, logs in as staff, creates its own products and stock, offers
//! the load step by step (closed or open model, see `runner`), and afterwards
//! reads the shop back through the admin API (`invariants`). Whatever the load
//! did, a run whose invariants do not hold fails.
//!
//! Exit codes (`Failure::exit_code`, `Verdict::exit_code`): 0 passed; 1 an
//! invariant is broken or could not be checked; 2 usage or setup error; 3 a
//! target unreachable or the staff credentials refused; 130 interrupted.

pub mod admin;
pub mod args;
pub mod emails;
pub mod html;
pub mod invariants;
pub mod plan;
pub mod queue;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod setup;
pub mod stats;

use std::sync::Arc;
use std::time::Instant;

use invariants::{Books, Invariant};
use plan::{Options, StaffAuth};
use report::{Report, Verdict};
use runner::{Runner, Stop};
use scenarios::Shopper;
use stats::Recorder;

/// Why a run could not go ahead, in one line.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Options that cannot work together.
    Usage,
    /// The shop cannot be prepared for the scenario.
    Setup,
    Unreachable,
    /// The staff login, token or its permissions.
    Credentials,
    /// The invariants could not be read back.
    Check,
    /// Stopped before the load started.
    Interrupted,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure { kind, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(FailureKind::Usage, message)
    }

    pub fn exit_code(&self) -> u8 {
        match self.kind {
            FailureKind::Check => 1,
            FailureKind::Usage | FailureKind::Setup => 2,
            FailureKind::Unreachable | FailureKind::Credentials => 3,
            FailureKind::Interrupted => 130,
        }
    }
}

/// A finished (or interrupted) run: its report and the books it kept, to check again.
pub struct Outcome {
    pub report: Report,
    pub books: Books,
}

/// Runs the load test `options` describes. `stop` ends it early: sending stops,
/// what is in flight finishes, and the report covers what was done.
pub async fn run(options: Options, stop: Arc<Stop>) -> Result<Outcome, Failure> {
    options.validate()?;
    let targets: Vec<String> = options.targets.iter().map(|t| t.trim_end_matches('/').to_owned()).collect();
    let steps = options.steps();
    // One client for the whole run, with an idle connection kept for every buyer that may be waiting.
    let most_in_flight = steps.iter().map(|s| s.load.most_in_flight()).max().unwrap_or(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(most_in_flight)
        .tcp_nodelay(true)
        .timeout(options.timeout)
        .build()
        .map_err(|e| Failure::usage(format!("cannot build the HTTP client: {e}")))?;
    setup::check_reachable(&client, &targets).await?;
    let admin = match &options.staff {
        StaffAuth::Login { email, password } => Some(admin::Admin::login(&client, &targets[0], email, password).await?),
        StaffAuth::Token(t) => Some(admin::Admin::with_token(&client, &targets[0], t)),
        StaffAuth::None => None,
    };

    let run_id = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    let email = format!("load+{run_id}@example.com");
    let stocked = match &admin {
        Some(a) if options.scenario.buys() => setup::stock_products(a, &run_id, options.variants_needed(), options.stock).await?,
        _ => Vec::new(),
    };
    let catalog =
        if options.scenario.browses() { setup::discover(&client, &targets[0]).await? } else { setup::Catalog::default() };
    if stop.is_stopped() {
        return Err(Failure::new(FailureKind::Interrupted, "interrupted before the load started"));
    }

    let started_at = time::OffsetDateTime::now_utc();
    let recorder = Arc::new(Recorder::new(Instant::now()));
    let runner = Runner {
        shopper: Arc::new(Shopper::new(client.clone(), targets.clone(), &email, &stocked, catalog)),
        recorder: recorder.clone(),
        stop: stop.clone(),
        scenario: options.scenario,
        buyers: options.buyers,
        progress: options.progress,
    };
    let runs = runner.run(&steps).await;
    let tally = recorder.finish();
    let (step_reports, timeline) = report::summarise(&steps, &runs, &tally);
    let books = Books { email, stocked, answered: tally.orders };

    let (invariants, note, emails, verdict) = if stop.is_stopped() {
        (Vec::new(), Some("the run was interrupted".to_owned()), None, Verdict::Interrupted)
    } else if let Some(a) = &admin {
        match check_books(a, &books, options.emails.as_ref()).await {
            Ok((invariants, emails)) => {
                let verdict = if invariants.iter().all(|i| i.holds) { Verdict::Passed } else { Verdict::InvariantsBroken };
                (invariants, None, emails, verdict)
            }
            // The load's figures are still worth printing; the run fails all the same.
            Err(e) => {
                (Vec::new(), Some(format!("the shop's books could not be read back: {e}")), None, Verdict::InvariantsBroken)
            }
        }
    } else {
        let why = "no staff credentials (--admin-email/--admin-password or --staff-token)".to_owned();
        (Vec::new(), Some(why), None, Verdict::Passed)
    };
    let report = Report {
        run: run_id,
        scenario: options.scenario.name(),
        targets,
        started_at: started_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        steps: step_reports,
        timeline,
        invariants,
        invariants_note: note,
        emails,
        verdict,
        exit_code: verdict.exit_code(),
    };
    Ok(Outcome { report, books })
}

/// The invariants, and with a database to read (`--emails`) the confirmation e-mails' latency.
async fn check_books(
    admin: &admin::Admin,
    books: &Books,
    emails: Option<&crate::store::Store>,
) -> Result<(Vec<Invariant>, Option<report::EmailLatency>), Failure> {
    let mut invariants = invariants::check(admin, books).await?;
    let Some(store) = emails else { return Ok((invariants, None)) };
    let (latency, sent) = emails::measure(store, &books.answered)
        .await
        .map_err(|e| Failure::new(FailureKind::Check, format!("reading confirmation e-mails: {e:#}")))?;
    invariants.push(sent);
    Ok((invariants, Some(latency)))
}
