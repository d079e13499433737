//! The report: what each step achieved (throughput, latency percentiles per
//! operation, errors by status and problem type), the second-by-second timeline,
//! and the invariants. Printed as text for people and written as JSON for
//! machines; `html` draws the same report.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::invariants::Invariant;
use super::plan::{Load, Step};
use super::runner::StepRun;
use super::stats::{ErrorKey, Op, Tally};

#[derive(Debug, Serialize)]
pub struct Report {
    pub run: String,
    pub scenario: &'static str,
    pub targets: Vec<String>,
    pub started_at: String,
    pub steps: Vec<StepReport>,
    pub timeline: Vec<SecondReport>,
    /// Empty when they were not checked; `invariants_note` says why.
    pub invariants: Vec<Invariant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invariants_note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emails: Option<EmailLatency>,
    pub verdict: Verdict,
    pub exit_code: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    InvariantsBroken,
    Interrupted,
}

impl Verdict {
    /// 0 passed, 1 an invariant broken, 130 interrupted (as a shell reports Ctrl-C).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::InvariantsBroken => 1,
            Verdict::Interrupted => 130,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub name: String,
    #[serde(flatten)]
    pub load: Load,
    pub multiple: f64,
    pub started_s: f64,
    pub seconds: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Answers per second, successes and errors alike.
    pub throughput: f64,
    pub orders: u64,
    pub orders_per_second: f64,
    /// Open model: arrivals not sent because too many were in flight.
    pub dropped: u64,
    /// Every request of the step.
    pub latency_ms: Percentiles,
    pub ops: Vec<OpReport>,
}

#[derive(Debug, Serialize)]
pub struct OpReport {
    pub op: Op,
    pub requests: u64,
    pub ok: u64,
    /// Every answer.
    pub latency_ms: Percentiles,
    /// Successful answers alone.
    pub ok_latency_ms: Percentiles,
    pub errors: Vec<ErrorCount>,
}

#[derive(Debug, Serialize)]
pub struct ErrorCount {
    #[serde(flatten)]
    pub key: ErrorKey,
    pub count: u64,
    pub latency_ms: Percentiles,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Answers completed in one second of the run.
#[derive(Debug, Serialize)]
pub struct SecondReport {
    pub second: u64,
    pub requests: u64,
    pub errors: u64,
    pub orders: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Checkout answer → confirmation e-mail handed over (`--emails`).
#[derive(Debug, Serialize)]
pub struct EmailLatency {
    pub orders: usize,
    pub sent: usize,
    pub latency_ms: Percentiles,
}

/// Per-step and per-second figures from what was recorded.
pub fn summarise(steps: &[Step], runs: &[StepRun], tally: &Tally) -> (Vec<StepReport>, Vec<SecondReport>) {
    let mut out = Vec::new();
    for (i, (step, run)) in steps.iter().zip(runs).enumerate() {
        let mut all = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
        let mut ops = Vec::new();
        for ((_, op), cell) in tally.cells.range((i, Op::Cart)..=(i, Op::Search)) {
            all.add(&cell.latency).expect("same bounds");
            let mut errors: Vec<ErrorCount> = cell
                .errors
                .iter()
                .map(|(k, h)| ErrorCount { key: k.clone(), count: h.len(), latency_ms: Percentiles::of(h) })
                .collect();
            errors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
            let requests = cell.latency.len();
            ops.push(OpReport {
                op: *op,
                requests,
                ok: requests - cell.failed(),
                latency_ms: Percentiles::of(&cell.latency),
                ok_latency_ms: Percentiles::of(&cell.ok_latency),
                errors,
            });
        }
        let requests = all.len();
        let ok: u64 = ops.iter().map(|o| o.ok).sum();
        let orders = tally.orders.iter().filter(|o| o.step == i).count() as u64;
        let secs = run.elapsed.as_secs_f64().max(1e-6);
        out.push(StepReport {
            name: step.name.clone(),
            load: step.load,
            multiple: step.multiple,
            started_s: run.started.as_secs_f64(),
            seconds: run.elapsed.as_secs_f64(),
            requests,
            ok,
            errors: requests - ok,
            throughput: requests as f64 / secs,
            orders,
            orders_per_second: orders as f64 / secs,
            dropped: tally.dropped.get(&i).copied().unwrap_or(0),
            latency_ms: Percentiles::of(&all),
            ops,
        });
    }
    let timeline = tally
        .seconds
        .iter()
        .enumerate()
        .map(|(s, sec)| {
            let p = Percentiles::of(&sec.latency);
            SecondReport {
                second: s as u64,
                requests: sec.latency.len(),
                errors: sec.errors,
                orders: sec.orders,
                p50_ms: p.p50,
                p99_ms: p.p99,
            }
        })
        .collect();
    (out, timeline)
}

fn short(p: &Percentiles) -> String {
    format!("ms p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}", p.p50, p.p90, p.p99, p.max)
}

impl Report {
    /// The report for a terminal.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "mercato loadtest: {} against {} (run {})", self.scenario, self.targets.join(", "), self.run);
        let _ = writeln!(
            s,
            "{:<18} {:>7} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8}",
            "step", "seconds", "requests", "errors", "req/s", "orders", "orders/s", "dropped", "p99 ms"
        );
        for st in &self.steps {
            let _ = writeln!(
                s,
                "{:<18} {:>7.1} {:>9} {:>8} {:>8.1} {:>9} {:>8.1} {:>8} {:>8.1}",
                st.name,
                st.seconds,
                st.requests,
                st.errors,
                st.throughput,
                st.orders,
                st.orders_per_second,
                st.dropped,
                st.latency_ms.p99
            );
            for op in &st.ops {
                let p = &op.latency_ms;
                let _ = writeln!(
                    s,
                    "  {:<18} {:>7} ok of {:>7}   ms p50 {:.1}  p90 {:.1}  p95 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
                    op.op.name(),
                    op.ok,
                    op.requests,
                    p.p50,
                    p.p90,
                    p.p95,
                    p.p99,
                    p.p99_9,
                    p.max
                );
                // With failures among the answers, each outcome's latencies on its
                // own: a refusal is answered far sooner than an order is placed.
                if !op.errors.is_empty() {
                    if op.ok > 0 {
                        let _ = writeln!(s, "      ok: {}   {}", op.ok, short(&op.ok_latency_ms));
                    }
                    for e in &op.errors {
                        let status = e.key.status.map_or("-".to_owned(), |s| s.to_string());
                        let kind = if e.key.kind.is_empty() { "(no problem type)" } else { &e.key.kind };
                        let _ = writeln!(s, "      {status} {kind}: {}   {}", e.count, short(&e.latency_ms));
                    }
                }
            }
        }
        if let Some(e) = &self.emails {
            let _ =
                writeln!(s, "confirmation e-mails: {} of {} sent; answer → e-mail {}", e.sent, e.orders, short(&e.latency_ms));
        }
        if let Some(note) = &self.invariants_note {
            let _ = writeln!(s, "invariants not checked: {note}");
        }
        for inv in &self.invariants {
            let _ = writeln!(s, "{} {}: {}", if inv.holds { "ok    " } else { "BROKEN" }, inv.name, inv.detail);
        }
        let _ = writeln!(s, "verdict: {:?} (exit {})", self.verdict, self.exit_code);
        s
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::loadtest::plan::StepKind;
    use crate::loadtest::stats::{AnsweredOrder, Recorder};

    #[test]
    fn steps_are_summarised_from_the_merged_tally() {
        let start = Instant::now();
        let r = Recorder::new(start);
        let conflict = ErrorKey { status: Some(409), kind: "out_of_stock".into() };
        for i in 0..100u64 {
            // 1 ms .. 100 ms, spread over shards.
            let since = Instant::now() - Duration::from_millis(i + 1);
            let error = (i % 10 == 0).then(|| conflict.clone());
            r.record(i as usize, 1, Op::Checkout, since, error);
        }
        r.record(0, 0, Op::Cart, Instant::now(), None);
        r.order(1, AnsweredOrder { id: "a".into(), variant: 0, step: 1, at: time::OffsetDateTime::now_utc() });
        let tally = r.finish();
        let load = Load::Closed { concurrency: 4 };
        let steps = vec![
            Step { name: "cart c=4".into(), load, multiple: 1.0, kind: StepKind::Carts { sale: 0 } },
            Step { name: "checkout c=4".into(), load, multiple: 1.0, kind: StepKind::Storm { sale: 0 } },
        ];
        let runs = vec![
            StepRun { started: Duration::ZERO, elapsed: Duration::from_secs(1) },
            StepRun { started: Duration::from_secs(1), elapsed: Duration::from_secs(2) },
        ];
        let (reports, timeline) = summarise(&steps, &runs, &tally);
        let checkout = &reports[1];
        assert_eq!((checkout.requests, checkout.ok, checkout.errors, checkout.orders), (100, 90, 10, 1));
        assert_eq!(checkout.throughput, 50.0);
        assert_eq!(checkout.orders_per_second, 0.5);
        assert_eq!(checkout.ops.len(), 1);
        assert_eq!(checkout.ops[0].errors[0].key, conflict);
        assert_eq!(checkout.ops[0].errors[0].count, 10);
        let p = &checkout.latency_ms;
        assert!((49.0..=52.0).contains(&p.p50), "{p:?}");
        assert!((99.0..=101.0).contains(&p.p99), "{p:?}");
        assert!(p.p50 <= p.p90 && p.p90 <= p.p95 && p.p95 <= p.p99 && p.p99 <= p.p99_9 && p.p99_9 <= p.max);
        assert_eq!(reports[0].requests, 1);
        assert_eq!(timeline.iter().map(|s| s.requests).sum::<u64>(), 101);
        let json: serde_json::Value = serde_json::from_str(
            &Report {
                run: "r".into(),
                scenario: "flash-sale",
                targets: vec![],
                started_at: String::new(),
                steps: reports,
                timeline,
                invariants: vec![],
                invariants_note: None,
                emails: None,
                verdict: Verdict::Passed,
                exit_code: 0,
            }
            .json(),
        )
        .unwrap();
        assert_eq!(json["steps"][1]["model"], "closed");
        assert_eq!(json["steps"][1]["concurrency"], 4);
        assert_eq!(json["steps"][1]["ops"][0]["op"], "checkout");
        let refused = &json["steps"][1]["ops"][0]["errors"][0];
        assert_eq!((&refused["status"], &refused["type"], &refused["count"]), (&409.into(), &"out_of_stock".into(), &10.into()));
        assert!(refused["latency_ms"]["max"].as_f64().is_some_and(|m| (91.0..=93.0).contains(&m)), "{refused}");
        assert!(json["steps"][1]["ops"][0]["ok_latency_ms"]["max"].as_f64().is_some_and(|m| m >= 100.0), "{json}");
    }

    #[test]
    fn successes_and_each_failure_have_their_own_latencies() {
        let r = Recorder::new(Instant::now());
        let sold_out = ErrorKey { status: Some(409), kind: "out_of_stock".into() };
        for i in 0..10 {
            r.record(i, 0, Op::Checkout, Instant::now() - Duration::from_millis(200), None);
            r.record(i, 0, Op::Checkout, Instant::now() - Duration::from_millis(2), Some(sold_out.clone()));
        }
        let steps = vec![Step {
            name: "checkout c=4".into(),
            load: Load::Closed { concurrency: 4 },
            multiple: 1.0,
            kind: StepKind::Storm { sale: 0 },
        }];
        let runs = vec![StepRun { started: Duration::ZERO, elapsed: Duration::from_secs(1) }];
        let (reports, _) = summarise(&steps, &runs, &r.finish());
        let op = &reports[0].ops[0];
        assert!(op.latency_ms.p50 < 100.0 && op.latency_ms.max >= 200.0, "{:?}", op.latency_ms);
        assert!(op.ok_latency_ms.p50 >= 199.0, "{:?}", op.ok_latency_ms);
        assert_eq!(op.errors[0].count, 10);
        assert!(op.errors[0].latency_ms.max < 100.0, "{:?}", op.errors[0].latency_ms);
    }

    #[test]
    fn exit_codes_say_what_happened() {
        assert_eq!(Verdict::Passed.exit_code(), 0);
        assert_eq!(Verdict::InvariantsBroken.exit_code(), 1);
        assert_eq!(Verdict::Interrupted.exit_code(), 130);
    }
}
