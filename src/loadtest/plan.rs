//! What a run will do, decided before it sends anything: the scenario, the load
//! model and the steps of the ramp. Every option is checked here, so a bad
//! combination is refused before the shop is touched.

use std::time::Duration;

use serde::Serialize;

use super::Failure;

/// The most a stock adjustment may add at once (the admin API's limit).
pub const MAX_STOCK: i64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Buyers race for one variant: all carts first, then every checkout at once.
    FlashSale,
    /// Buyers check out random variants with ample stock.
    SteadyCheckout,
    /// Product lists (filters, sorts), searches, product pages and the category tree.
    Browse,
    /// Mostly browsing, some abandoned carts, a few checkouts.
    Mixed,
    /// Full-text searches: a title word (sometimes misspelt) with two filters
    /// and every facet, each query drawn anew so the answer cache rarely helps.
    Search,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FlashSale => "flash-sale",
            Scenario::SteadyCheckout => "steady-checkout",
            Scenario::Browse => "browse",
            Scenario::Mixed => "mixed",
            Scenario::Search => "search",
        }
    }

    /// Whether the scenario buys, and so needs products, stock and staff access.
    pub fn buys(self) -> bool {
        !matches!(self, Scenario::Browse | Scenario::Search)
    }

    pub fn browses(self) -> bool {
        matches!(self, Scenario::Browse | Scenario::Mixed | Scenario::Search)
    }
}

/// How load is offered: a fixed number of buyers each waiting for its answer
/// (closed), or arrivals on a clock whatever the answers do (open).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Load {
    Closed { concurrency: usize },
    Open { rate: f64, max_in_flight: usize },
}

impl Load {
    fn times(self, m: f64) -> Load {
        match self {
            Load::Closed { concurrency } => Load::Closed { concurrency: ((concurrency as f64 * m).round() as usize).max(1) },
            Load::Open { rate, max_in_flight } => Load::Open { rate: rate * m, max_in_flight },
        }
    }

    /// The most requests this load can have waiting at once.
    pub fn most_in_flight(self) -> usize {
        match self {
            Load::Closed { concurrency } => concurrency,
            Load::Open { max_in_flight, .. } => max_in_flight,
        }
    }

    pub fn label(self) -> String {
        match self {
            Load::Closed { concurrency } => format!("c={concurrency}"),
            Load::Open { rate, .. } => format!("{}/s", trim_float(rate)),
        }
    }
}

/// How the tool logs in to the admin API.
#[derive(Clone, Debug)]
pub enum StaffAuth {
    Login { email: String, password: String },
    Token(String),
    None,
}

/// Everything a run needs to know.
pub struct Options {
    pub targets: Vec<String>,
    pub scenario: Scenario,
    /// The baseline the ramp multiplies.
    pub load: Load,
    pub ramp: Vec<f64>,
    /// Length of each step (not used by flash-sale, whose steps end when every buyer has been served).
    pub step: Duration,
    /// flash-sale: buyers per sale.
    pub buyers: usize,
    /// Units stocked per variant.
    pub stock: i64,
    /// steady-checkout and mixed: variants the buyers spread over.
    pub variants: usize,
    /// Longest wait for one answer.
    pub timeout: Duration,
    pub staff: StaffAuth,
    /// The shop's database, to time confirmation e-mails against checkout answers.
    pub emails: Option<crate::store::Store>,
    /// Draw live progress on stderr.
    pub progress: bool,
}

impl Options {
    /// A closed-model run of `scenario` against one target with the defaults of the command line.
    pub fn new(target: &str, scenario: Scenario) -> Self {
        Options {
            targets: vec![target.to_owned()],
            scenario,
            load: Load::Closed { concurrency: 64 },
            ramp: vec![1.0],
            step: Duration::from_secs(30),
            buyers: 1000,
            stock: if scenario == Scenario::FlashSale { 100 } else { MAX_STOCK },
            variants: 100,
            timeout: Duration::from_secs(30),
            staff: StaffAuth::None,
            emails: None,
            progress: false,
        }
    }

    /// Refuses what cannot run, with the reason in one line.
    pub fn validate(&self) -> Result<(), Failure> {
        let usage = |m: String| Err(Failure::usage(m));
        if self.targets.is_empty() {
            return usage("give at least one --target".into());
        }
        for t in &self.targets {
            match reqwest::Url::parse(t) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return usage(format!("--target `{t}` is not an http(s) URL such as http://127.0.0.1:8080")),
            }
        }
        if self.ramp.is_empty() || self.ramp.iter().any(|m| !m.is_finite() || *m <= 0.0) {
            return usage("--ramp needs positive multiples, e.g. 1,2,5,10".into());
        }
        match self.load {
            Load::Closed { concurrency: 0 } => return usage("--concurrency must be at least 1".into()),
            Load::Open { rate, .. } if !rate.is_finite() || rate <= 0.0 => return usage("--rate must be above 0".into()),
            Load::Open { max_in_flight: 0, .. } => return usage("--max-in-flight must be at least 1".into()),
            Load::Open { .. } if self.scenario == Scenario::FlashSale => {
                return usage("flash-sale sends every checkout at one moment; give --concurrency, not --rate".into());
            }
            _ => {}
        }
        if self.step.is_zero() {
            return usage("--step-seconds must be at least 1".into());
        }
        if !(1..=MAX_STOCK).contains(&self.stock) {
            return usage(format!("--stock must be between 1 and {MAX_STOCK}"));
        }
        if self.buyers == 0 || self.variants == 0 {
            return usage("--buyers and --variants must be at least 1".into());
        }
        if self.scenario.buys() && matches!(self.staff, StaffAuth::None) {
            return usage(format!(
                "{} creates its products and checks the orders through the admin API: give --admin-email and \
                 --admin-password (or MERCATO_LOADTEST_PASSWORD), or --staff-token",
                self.scenario.name()
            ));
        }
        if self.emails.is_some() && !self.scenario.buys() {
            return usage("--emails times order confirmations; browse places no orders".into());
        }
        Ok(())
    }

    /// The steps of the run, in order.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        for (sale, &m) in self.ramp.iter().enumerate() {
            let load = self.load.times(m);
            if self.scenario == Scenario::FlashSale {
                steps.push(Step { name: format!("cart {}", load.label()), load, multiple: m, kind: StepKind::Carts { sale } });
                steps.push(Step {
                    name: format!("checkout {}", load.label()),
                    load,
                    multiple: m,
                    kind: StepKind::Storm { sale },
                });
            } else {
                steps.push(Step { name: load.label(), load, multiple: m, kind: StepKind::Timed(self.step) });
            }
        }
        steps
    }

    /// How many variants the run stocks: one per sale, or `variants` shared by the whole run.
    pub fn variants_needed(&self) -> usize {
        match self.scenario {
            Scenario::FlashSale => self.ramp.len(),
            Scenario::SteadyCheckout | Scenario::Mixed => self.variants,
            Scenario::Browse | Scenario::Search => 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub name: String,
    pub load: Load,
    /// The ramp's multiple of the baseline.
    pub multiple: f64,
    pub kind: StepKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepKind {
    /// Runs for this long.
    Timed(Duration),
    /// flash-sale: every buyer builds a cart for sale number `sale`'s variant.
    Carts { sale: usize },
    /// flash-sale: then all of them check out at once.
    Storm { sale: usize },
}

/// `1,2,5,10` → multiples of the baseline.
pub fn parse_ramp(s: &str) -> Result<Vec<f64>, String> {
    s.split(',')
        .map(|part| {
            let part = part.trim();
            match part.parse::<f64>() {
                Ok(m) if m.is_finite() && m > 0.0 => Ok(m),
                _ => Err(format!("`{part}` is not a positive multiple (write e.g. 1,2,5,10)")),
            }
        })
        .collect()
}

/// When arrival `i` of an open-model step is due, counted from the step's start.
pub fn arrival_offset(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// How many arrivals of a step lasting `length` are due `elapsed` into it.
pub fn arrivals_due(elapsed: Duration, rate: f64, length: Duration) -> u64 {
    let total = (length.as_secs_f64() * rate).round() as u64;
    // Arrival i is due at i / rate, so floor(elapsed * rate) + 1 of them are due (0 counts).
    ((elapsed.as_secs_f64() * rate).floor() as u64 + 1).min(total)
}

fn trim_float(x: f64) -> String {
    if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.1}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_is_a_list_of_positive_multiples() {
        assert_eq!(parse_ramp("1,2,5,10"), Ok(vec![1.0, 2.0, 5.0, 10.0]));
        assert_eq!(parse_ramp(" 0.5 , 1.5"), Ok(vec![0.5, 1.5]));
        assert!(parse_ramp("1,,2").is_err());
        assert!(parse_ramp("0").unwrap_err().contains("`0`"));
        assert!(parse_ramp("-1").is_err());
        assert!(parse_ramp("two").is_err());
        assert!(parse_ramp("inf").is_err());
    }

    #[test]
    fn the_ramp_multiplies_the_baseline_of_each_step() {
        let mut o = Options::new("http://127.0.0.1:8080", Scenario::SteadyCheckout);
        o.load = Load::Closed { concurrency: 10 };
        o.ramp = vec![1.0, 2.5, 0.01];
        let steps = o.steps();
        let loads: Vec<Load> = steps.iter().map(|s| s.load).collect();
        assert_eq!(loads, [Load::Closed { concurrency: 10 }, Load::Closed { concurrency: 25 }, Load::Closed { concurrency: 1 }]);
        assert_eq!(steps[1].name, "c=25");
        o.load = Load::Open { rate: 40.0, max_in_flight: 7 };
        o.ramp = vec![1.0, 2.5];
        let names: Vec<String> = o.steps().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["40/s", "100/s"]);
    }

    #[test]
    fn a_flash_sale_is_a_cart_step_then_a_storm_per_sale() {
        let mut o = Options::new("http://127.0.0.1:8080", Scenario::FlashSale);
        o.load = Load::Closed { concurrency: 20 };
        o.ramp = vec![1.0, 2.0];
        let kinds: Vec<(String, StepKind)> = o.steps().into_iter().map(|s| (s.name, s.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("cart c=20".to_owned(), StepKind::Carts { sale: 0 }),
                ("checkout c=20".to_owned(), StepKind::Storm { sale: 0 }),
                ("cart c=40".to_owned(), StepKind::Carts { sale: 1 }),
                ("checkout c=40".to_owned(), StepKind::Storm { sale: 1 }),
            ]
        );
        assert_eq!(o.variants_needed(), 2);
    }

    #[test]
    fn open_model_arrivals_follow_the_clock_not_the_answers() {
        assert_eq!(arrival_offset(0, 100.0), Duration::ZERO);
        assert_eq!(arrival_offset(150, 100.0), Duration::from_millis(1500));
        let step = Duration::from_secs(2);
        assert_eq!(arrivals_due(Duration::ZERO, 100.0, step), 1);
        assert_eq!(arrivals_due(Duration::from_millis(9), 100.0, step), 1);
        assert_eq!(arrivals_due(Duration::from_millis(10), 100.0, step), 2);
        // A stalled sender that wakes up late owes every arrival it missed, all at once.
        assert_eq!(arrivals_due(Duration::from_millis(1234), 100.0, step), 124);
        // ... but never more than the step holds.
        assert_eq!(arrivals_due(Duration::from_secs(60), 100.0, step), 200);
        assert_eq!(arrivals_due(Duration::from_secs(60), 0.5, Duration::from_secs(3)), 2);
    }

    #[test]
    fn bad_combinations_are_refused_before_anything_is_sent() {
        let ok = |f: &dyn Fn(&mut Options)| {
            let mut o = Options::new("http://127.0.0.1:8080", Scenario::SteadyCheckout);
            o.staff = StaffAuth::Token("t".into());
            f(&mut o);
            o.validate().map_err(|e| e.to_string())
        };
        assert_eq!(ok(&|_| {}), Ok(()));
        assert!(ok(&|o| o.staff = StaffAuth::None).unwrap_err().contains("--admin-email"));
        assert!(ok(&|o| o.targets = vec!["127.0.0.1:8080".into()]).unwrap_err().contains("http(s) URL"));
        assert!(ok(&|o| o.targets.clear()).is_err());
        assert!(ok(&|o| o.stock = MAX_STOCK + 1).is_err());
        assert!(ok(&|o| o.load = Load::Closed { concurrency: 0 }).is_err());
        assert!(ok(&|o| o.load = Load::Open { rate: 0.0, max_in_flight: 1 }).is_err());
        assert!(
            ok(&|o| {
                o.scenario = Scenario::FlashSale;
                o.stock = 10;
                o.load = Load::Open { rate: 10.0, max_in_flight: 1 };
            })
            .unwrap_err()
            .contains("--concurrency")
        );
        assert_eq!(
            ok(&|o| {
                o.scenario = Scenario::Browse;
                o.staff = StaffAuth::None;
            }),
            Ok(())
        );
    }
}
