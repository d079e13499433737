//! The command line of `mercato loadtest`, turned into `Options`; and running it
//! as a command: Ctrl-C, the report's outputs and the exit code.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::plan::{Load, Options, Scenario, StaffAuth, parse_ramp};
use super::report::Verdict;
use super::runner::Stop;
use super::{Failure, FailureKind};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LoadtestArgs {
    #[command(subcommand)]
    pub command: Option<LoadtestCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Subcommand)]
pub enum LoadtestCommand {
    /// Enqueues no-op jobs into this shop's database and drains them with workers
    /// in this process; prints jobs/s and pick-up latency percentiles.
    Queue {
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Jobs claimed per statement.
        #[arg(long, default_value_t = 10)]
        batch: i64,
    },
}

#[derive(Clone, Debug)]
pub struct Ramp(Vec<f64>);

#[derive(clap::Args)]
pub struct RunArgs {
    /// The shop (repeatable, or comma-separated: buyers are spread over the targets round-robin).
    #[arg(long = "target", value_name = "URL", value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    targets: Vec<String>,
    #[arg(long, value_enum, required = true)]
    scenario: Option<Scenario>,
    /// Closed model: buyers at once, each sending its next request when the last is answered [default: 64].
    #[arg(long, conflicts_with = "rate")]
    concurrency: Option<usize>,
    /// Open model: visits started per second, whatever the answers do.
    #[arg(long)]
    rate: Option<f64>,
    /// Open model: the most visits in flight; arrivals past it are counted as dropped.
    #[arg(long, default_value_t = 1000)]
    max_in_flight: usize,
    /// Steps of the run, as multiples of --concurrency or --rate.
    #[arg(long, default_value = "1", value_parser = |s: &str| parse_ramp(s).map(Ramp))]
    ramp: Ramp,
    /// Length of each step (not flash-sale: its steps end when every buyer is served).
    #[arg(long, default_value_t = 30)]
    step_seconds: u64,
    /// flash-sale: buyers per sale.
    #[arg(long, default_value_t = 1000)]
    buyers: usize,
    /// Units per variant [default: 100 for flash-sale, 1000000 otherwise].
    #[arg(long)]
    stock: Option<i64>,
    /// steady-checkout and mixed: how many variants buyers spread over.
    #[arg(long, default_value_t = 100)]
    variants: usize,
    /// Longest wait for one answer.
    #[arg(long, default_value_t = 30)]
    timeout_seconds: u64,
    /// A staff account with catalog:write, inventory:write/read, settings:manage and orders:read (an owner).
    #[arg(long, env = "MERCATO_LOADTEST_EMAIL")]
    admin_email: Option<String>,
    #[arg(long, env = "MERCATO_LOADTEST_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// An access token to use instead of logging in.
    #[arg(long, env = "MERCATO_LOADTEST_STAFF_TOKEN", hide_env_values = true)]
    staff_token: Option<String>,
    /// Write the report as JSON to this file (`-`: standard output, the text report then goes to stderr).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the report as one self-contained HTML page with charts.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Also time each order's confirmation e-mail (reads the shop's database: run with its DATABASE_URL / MERCATO_DATA_DIR).
    #[arg(long)]
    pub emails: bool,
}

impl RunArgs {
    pub fn options(&self, emails: Option<crate::store::Store>) -> Result<Options, Failure> {
        let scenario = self.scenario.ok_or_else(|| Failure::usage("give --scenario"))?;
        let mut o = Options::new(&self.targets[0], scenario);
        o.targets = self.targets.clone();
        o.load = match (self.rate, self.concurrency) {
            (Some(rate), _) => Load::Open { rate, max_in_flight: self.max_in_flight },
            (None, Some(concurrency)) => Load::Closed { concurrency },
            (None, None) => o.load,
        };
        o.ramp = self.ramp.0.clone();
        o.step = Duration::from_secs(self.step_seconds);
        o.buyers = self.buyers;
        o.stock = self.stock.unwrap_or(o.stock);
        o.variants = self.variants;
        o.timeout = Duration::from_secs(self.timeout_seconds.max(1));
        o.staff = match (&self.staff_token, &self.admin_email, &self.admin_password) {
            (Some(t), _, _) => StaffAuth::Token(t.clone()),
            (None, Some(email), Some(password)) => StaffAuth::Login { email: email.clone(), password: password.clone() },
            (None, Some(_), None) => return Err(Failure::usage("give --admin-password or set MERCATO_LOADTEST_PASSWORD")),
            (None, None, _) => StaffAuth::None,
        };
        o.emails = emails;
        o.progress = true;
        Ok(o)
    }

    /// Runs the load test as a command; the error carries the exit code.
    pub async fn execute(&self, emails: Option<crate::store::Store>) -> Result<(), Exit> {
        let options = self.options(emails)?;
        let stop = Arc::new(Stop::default());
        let ctrl_c = tokio::spawn({
            let stop = stop.clone();
            async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("mercato: stopping: letting what is in flight finish (Ctrl-C again to quit at once)");
                    stop.stop();
                }
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let outcome = super::run(options, stop).await;
        ctrl_c.abort();
        let report = outcome?.report;
        let text = report.text();
        let to_stdout = self.json.as_deref() == Some(std::path::Path::new("-"));
        if to_stdout {
            eprint!("{text}");
            println!("{}", report.json());
        } else {
            print!("{text}");
        }
        let write = |path: &PathBuf, body: String| {
            std::fs::File::create(path)
                .and_then(|mut f| f.write_all(body.as_bytes()))
                .map_err(|e| Exit { code: 2, message: format!("cannot write {}: {e}", path.display()) })
        };
        if let Some(path) = self.json.as_ref().filter(|_| !to_stdout) {
            write(path, report.json())?;
        }
        if let Some(path) = &self.html {
            write(path, super::html::render(&report))?;
        }
        match report.verdict {
            Verdict::Passed => Ok(()),
            Verdict::InvariantsBroken => {
                let broken: Vec<&str> = report.invariants.iter().filter(|i| !i.holds).map(|i| i.name).collect();
                let message = match &report.invariants_note {
                    Some(why) if broken.is_empty() => why.clone(),
                    _ => format!("invariant broken: {}", broken.join(", ")),
                };
                Err(Exit { code: report.exit_code, message })
            }
            Verdict::Interrupted => {
                Err(Exit { code: report.exit_code, message: "interrupted: the report covers what was sent before Ctrl-C".into() })
            }
        }
    }
}

/// A command's end with a chosen exit code and a one-line reason.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl From<Failure> for Exit {
    fn from(f: Failure) -> Self {
        let code = f.exit_code();
        let message = match f.kind {
            FailureKind::Usage | FailureKind::Interrupted => f.message,
            FailureKind::Setup => format!("setup failed: {}", f.message),
            FailureKind::Unreachable => format!("target unreachable: {}", f.message),
            FailureKind::Credentials => format!("staff credentials refused: {}", f.message),
            FailureKind::Check => format!("invariants could not be checked: {}", f.message),
        };
        Exit { code, message }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadtestArgs,
    }

    fn parse(args: &[&str]) -> Result<Options, String> {
        let cli = Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        cli.args.run.options(None).map_err(|e| e.to_string())
    }

    fn refusal(args: &[&str]) -> String {
        parse(args).err().expect("refused")
    }

    #[test]
    fn flags_become_options() {
        let o = parse(&[
            "--target",
            "http://a:1,http://b:2",
            "--scenario",
            "steady-checkout",
            "--rate",
            "50",
            "--ramp",
            "1,2",
            "--staff-token",
            "t",
        ])
        .unwrap();
        assert_eq!(o.targets, ["http://a:1", "http://b:2"]);
        assert_eq!(o.load, Load::Open { rate: 50.0, max_in_flight: 1000 });
        assert_eq!(o.ramp, [1.0, 2.0]);
        assert_eq!(o.stock, 1_000_000);
        let o = parse(&["--scenario", "flash-sale", "--target", "http://a:1", "--target", "http://b:2"]).unwrap();
        assert_eq!((o.targets.len(), o.stock, o.load), (2, 100, Load::Closed { concurrency: 64 }));
        assert!(refusal(&["--scenario", "browse", "--rate", "1", "--concurrency", "2"]).contains("cannot be used"));
        assert!(refusal(&["--scenario", "browse", "--ramp", "1,x"]).contains("`x`"));
        assert!(refusal(&["--concurrency", "2"]).contains("--scenario"));
    }

    #[test]
    fn every_failure_maps_to_its_documented_exit_code() {
        let code = |kind| Exit::from(Failure::new(kind, "x")).code;
        assert_eq!(code(FailureKind::Check), 1);
        assert_eq!(code(FailureKind::Usage), 2);
        assert_eq!(code(FailureKind::Setup), 2);
        assert_eq!(code(FailureKind::Unreachable), 3);
        assert_eq!(code(FailureKind::Credentials), 3);
        assert_eq!(code(FailureKind::Interrupted), 130);
    }
}
