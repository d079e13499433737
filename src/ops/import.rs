//! Bulk import from JSON Lines: one `ProductInput` per line, idempotent by SKU.
//! A bad line is reported with its number and every offending field and does not
//! stop the others; each good line is its own transaction.

use std::io::BufRead;

use indicatif::{ProgressBar, ProgressStyle};

use crate::domain::catalog::{NewProduct, ProductInput};
use crate::store::Store;
use crate::store::audit::Actor;
use crate::store::catalog::Upsert;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// `(line number, reason)` for every rejected line.
    pub failed: Vec<(usize, String)>,
}

pub async fn import_jsonl(store: &Store, reader: impl BufRead, total_lines: u64, progress: bool) -> anyhow::Result<ImportReport> {
    let bar = if progress { ProgressBar::new(total_lines) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} lines  {per_sec}  eta {eta}  {msg}")?);
    let actor = Actor::cli();
    let mut report = ImportReport::default();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line?;
        bar.inc(1);
        if line.trim().is_empty() {
            continue;
        }
        let input: ProductInput = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                report.failed.push((line_no, format!("not a product: {e}")));
                continue;
            }
        };
        let product = match NewProduct::parse(&input) {
            Ok(p) => p,
            Err(fields) => {
                let why = fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ");
                report.failed.push((line_no, why));
                continue;
            }
        };
        match store.upsert_product_by_sku(&product, &actor).await {
            Ok(Upsert::Created) => report.created += 1,
            Ok(Upsert::Updated) => report.updated += 1,
            Ok(Upsert::Unchanged) => report.unchanged += 1,
            Err(e) => report.failed.push((line_no, crate::error::ApiError::from(e).to_string())),
        }
        bar.set_message(format!("{} created, {} updated, {} failed", report.created, report.updated, report.failed.len()));
    }
    bar.finish();
    if report.created + report.updated > 0 {
        store.analyze().await?;
    }
    Ok(report)
}
