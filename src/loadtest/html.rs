//! `--html report.html`: the report as one self-contained page: the step table,
//! the invariants and two charts drawn as inline SVG (latency p50/p99 and
//! throughput, second by second). No script, stylesheet or font is fetched when
//! the page is viewed.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::report::{Report, SecondReport};

pub fn render(report: &Report) -> String {
    let mut page = String::new();
    let title = format!("mercato loadtest: {} (run {})", report.scenario, report.run);
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:1em 0}}\n\
         th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:right}} th:first-child,td:first-child{{text-align:left}}\n\
         .ok{{color:#176b2c}} .broken{{color:#b00020;font-weight:bold}} figure{{margin:1em 0}}\n\
         </style></head><body>\n<h1>{t}</h1>\n<p>Targets: {targets}. Started {started}. Verdict: <b>{verdict:?}</b> (exit {code}).</p>\n",
        t = escape(&title),
        targets = escape(&report.targets.join(", ")),
        started = escape(&report.started_at),
        verdict = report.verdict,
        code = report.exit_code,
    );
    page.push_str(
        "<h2>Steps</h2>\n<table><tr><th>step</th><th>operation</th><th>requests</th><th>ok</th><th>req/s</th><th>orders/s</th>\
         <th>dropped</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>errors</th></tr>\n",
    );
    for st in &report.steps {
        let p = &st.latency_ms;
        let _ = writeln!(
            page,
            "<tr><td><b>{}</b></td><td>all</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td>\
             <td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>",
            escape(&st.name),
            st.requests,
            st.ok,
            st.throughput,
            st.orders_per_second,
            st.dropped,
            p.p50,
            p.p90,
            p.p99,
            p.p99_9,
            p.max,
            st.errors
        );
        for op in &st.ops {
            let p = &op.latency_ms;
            let mut errors: Vec<String> = op
                .errors
                .iter()
                .map(|e| {
                    let status = e.key.status.map_or("-".into(), |s| s.to_string());
                    format!("{status} {} ×{} (p99 {:.1} ms)", escape(&e.key.kind), e.count, e.latency_ms.p99)
                })
                .collect();
            if !errors.is_empty() && op.ok > 0 {
                errors.insert(0, format!("ok ×{} (p99 {:.1} ms)", op.ok, op.ok_latency_ms.p99));
            }
            let _ = writeln!(
                page,
                "<tr><td></td><td>{}</td><td>{}</td><td>{}</td><td></td><td></td><td></td><td>{:.1}</td><td>{:.1}</td>\
                 <td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>",
                op.op.name(),
                op.requests,
                op.ok,
                p.p50,
                p.p90,
                p.p99,
                p.p99_9,
                p.max,
                errors.join("<br>")
            );
        }
    }
    page.push_str("</table>\n<h2>Invariants</h2>\n<ul>\n");
    if let Some(note) = &report.invariants_note {
        let _ = writeln!(page, "<li>not checked: {}</li>", escape(note));
    }
    for inv in &report.invariants {
        let (class, word) = if inv.holds { ("ok", "holds") } else { ("broken", "BROKEN") };
        let _ = writeln!(page, "<li class=\"{class}\">{}: {word} — {}</li>", escape(inv.name), escape(&inv.detail));
    }
    page.push_str("</ul>\n<h2>Over time</h2>\n");
    let t = &report.timeline;
    // Seconds in which nothing was answered have no latency: the line breaks there.
    let answered = |f: fn(&SecondReport) -> f64| segments(t, |s| (s.requests > 0).then(|| f(s)));
    let every = |f: fn(&SecondReport) -> f64| segments(t, |s| Some(f(s)));
    let latency = [("p50", BLUE_LINE, answered(|s| s.p50_ms)), ("p99", RED_LINE, answered(|s| s.p99_ms))];
    let throughput = [
        ("ok/s", BLUE_LINE, every(|s| (s.requests - s.errors) as f64)),
        ("errors/s", RED_LINE, every(|s| s.errors as f64)),
        ("orders/s", GREEN_LINE, every(|s| s.orders as f64)),
    ];
    let steps: Vec<(f64, &str)> = report.steps.iter().map(|s| (s.started_s, s.name.as_str())).collect();
    for (caption, y, lines) in
        [("Latency per second", "ms", &latency[..]), ("Throughput per second", "per second", &throughput[..])]
    {
        let _ = writeln!(page, "<figure>{}</figure>", chart(caption, y, lines, &steps));
    }
    page.push_str("</body></html>\n");
    page
}

const BLUE_LINE: RGBColor = RGBColor(31, 119, 180);
const RED_LINE: RGBColor = RGBColor(214, 39, 40);
const GREEN_LINE: RGBColor = RGBColor(44, 160, 44);

/// The runs of consecutive seconds for which `f` has a value, as (second, value) points.
fn segments(timeline: &[SecondReport], f: impl Fn(&SecondReport) -> Option<f64>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for s in timeline {
        match f(s) {
            Some(v) => out.last_mut().expect("never empty").push((s.second as f64, v)),
            None if out.last().is_some_and(|l| !l.is_empty()) => out.push(Vec::new()),
            None => {}
        }
    }
    out.retain(|l| !l.is_empty());
    out
}

/// A chart's line: its legend, colour and the segments it is drawn in.
type Line = (&'static str, RGBColor, Vec<Vec<(f64, f64)>>);

/// A line chart as an SVG element, with a mark where each step starts.
fn chart(caption: &str, y_desc: &str, lines: &[Line], steps: &[(f64, &str)]) -> String {
    let mut svg = String::new();
    let points = || lines.iter().flat_map(|l| l.2.iter().flatten());
    let x_max = points().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (960, 320)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart.configure_mesh().x_desc("seconds into the run").y_desc(y_desc).draw()?;
        let grey = RGBColor(150, 150, 150);
        for &(x, name) in steps {
            chart.draw_series(LineSeries::new([(x, 0.0), (x, y_max)], grey))?;
            chart.draw_series(std::iter::once(Text::new(name.to_owned(), (x, y_max), ("sans-serif", 12))))?;
        }
        for (label, colour, segments) in lines {
            let colour = *colour;
            for (i, segment) in segments.iter().enumerate() {
                let series = chart.draw_series(LineSeries::new(segment.iter().copied(), colour.stroke_width(2)))?;
                if i == 0 {
                    series
                        .label(*label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg,
        Err(e) => format!("<p>chart not drawn: {}</p>", escape(&e.to_string())),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::invariants::Invariant;
    use crate::loadtest::report::Verdict;

    #[test]
    fn latency_lines_break_where_nothing_was_answered() {
        let second = |s: u64, requests: u64| SecondReport { second: s, requests, errors: 0, orders: 0, p50_ms: 1.0, p99_ms: 2.0 };
        let t = [second(0, 3), second(1, 0), second(2, 0), second(3, 1), second(4, 2)];
        let parts = segments(&t, |s| (s.requests > 0).then_some(s.p50_ms));
        assert_eq!(parts, [vec![(0.0, 1.0)], vec![(3.0, 1.0), (4.0, 1.0)]]);
        assert_eq!(segments(&t, |s| Some(s.requests as f64)).len(), 1);
        assert!(segments(&[], |s| Some(s.p50_ms)).is_empty());
    }

    #[test]
    fn the_html_report_is_one_page_with_inline_svg_and_nothing_to_fetch() {
        let timeline = (0..5)
            .map(|s| SecondReport { second: s, requests: 100 + s, errors: s, orders: 3, p50_ms: 2.0, p99_ms: 9.5 + s as f64 })
            .collect();
        let report = Report {
            run: "abc".into(),
            scenario: "browse",
            targets: vec!["http://127.0.0.1:8080".into()],
            started_at: "2026-01-01T00:00:00Z".into(),
            steps: vec![],
            timeline,
            invariants: vec![Invariant { name: "stock ledger reconciles", holds: false, detail: "1 <of> 2".into() }],
            invariants_note: None,
            emails: None,
            verdict: Verdict::InvariantsBroken,
            exit_code: 1,
        };
        let html = render(&report);
        assert!(html.starts_with("<!doctype html>"));
        assert_eq!(html.matches("<svg").count(), 2, "two inline charts");
        assert!(html.contains("<polyline") || html.contains("<path"), "lines are drawn");
        assert!(html.contains("Latency per second") && html.contains("p99"));
        assert!(html.contains("1 &lt;of&gt; 2"), "text is escaped");
        let lower = html.to_lowercase();
        for fetch in ["<script", "<link", "<img", "@import", "url(", "src=", "href="] {
            assert!(!lower.contains(fetch), "the page must not fetch anything: found {fetch}");
        }
        // The only URLs are the SVG namespace and the target named in the text.
        let urls: Vec<&str> = lower.match_indices("http").map(|(i, _)| &lower[i..(i + 26).min(lower.len())]).collect();
        assert!(urls.iter().all(|u| u.starts_with("http://www.w3.org/") || u.starts_with("http://127.0.0.1:8080")), "{urls:?}");
    }
}
