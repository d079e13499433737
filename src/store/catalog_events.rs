//! The catalog's change log: appended inside the transaction that changes the
//! catalog (or a product's stock from "in stock" to "sold out" and back), tailed
//! by every instance to keep its search index and caches current.

use std::collections::BTreeSet;

use sqlx::AnyConnection;
use uuid::Uuid;

use super::rows::{int, opt_id, text};
use super::{Arg, Dialect, SqlBuilder, Store, StoreError, StoreResult, now};

/// Serialises appends on PostgreSQL, so that rows become visible in `seq` order:
/// a sequence hands out numbers in the order transactions ask, not the order
/// they commit, and a tail reading `seq > n` would skip a number that commits
/// late. The lock is taken as the last statement before commit, held for the
/// commit only, and only by transactions that change the catalog.
const APPEND_LOCK: i64 = 0x6d65_7263_6174_6f01;

/// What a transaction changed, collected by `Tx` and appended on commit.
#[derive(Debug, Default)]
pub struct Touched {
    pub products: BTreeSet<Uuid>,
    /// Variants whose stock may have crossed zero: their products are logged
    /// if their "in stock" changed.
    pub variants: BTreeSet<Uuid>,
    pub everything: bool,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.products.is_empty() && self.variants.is_empty() && !self.everything
    }
}

#[derive(Debug, Clone)]
pub struct CatalogEvent {
    pub seq: u64,
    /// None: a change every catalog answer may show (a category).
    pub product_id: Option<Uuid>,
    pub at: String,
}

/// Whether a product has stock somewhere (each location's on_hand − reserved is
/// never negative, so "some location has some" is "the sum is positive").
const IN_STOCK: &str = "CASE WHEN EXISTS (SELECT 1 FROM variants v JOIN stock_levels s ON s.variant_id = v.id
     WHERE v.product_id = products.id AND s.on_hand - s.reserved > 0) THEN 1 ELSE 0 END";

/// Appends one row per touched product (and one for `everything`); returns
/// what was appended. Products touched through their variants' stock are
/// logged only when their `in_stock` flag really changed (it is updated here).
pub(super) async fn append(
    conn: &mut AnyConnection,
    dialect: Dialect,
    touched: &Touched,
) -> StoreResult<Vec<(u64, Option<Uuid>)>> {
    let mut products = touched.products.clone();
    if !touched.variants.is_empty() {
        let mut q = SqlBuilder::new("UPDATE products SET in_stock = ");
        q.push(IN_STOCK).push(" WHERE id IN (SELECT product_id FROM variants WHERE id IN (");
        q.bind_list(touched.variants.iter().map(|v| v.to_string())).push(")) AND in_stock <> ");
        q.push(IN_STOCK).push(" RETURNING id");
        for row in q.build().fetch_all(&mut *conn).await? {
            products.extend(opt_id(&row, "id")?);
        }
    }
    let mut rows: Vec<Option<Uuid>> = products.into_iter().map(Some).collect();
    if touched.everything {
        rows.push(None);
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(APPEND_LOCK).execute(&mut *conn).await?;
    }
    let at = now();
    let mut appended = Vec::with_capacity(rows.len());
    // Bound parameters per statement stay far below either database's limit.
    for chunk in rows.chunks(2_000) {
        let mut q = SqlBuilder::new("INSERT INTO catalog_events (product_id, at) VALUES ");
        q.bind_rows(chunk.iter().map(|p| vec![Arg::from(p.map(|p| p.to_string())), Arg::from(at.as_str())]));
        q.push(" RETURNING seq, product_id");
        for row in q.build().fetch_all(&mut *conn).await? {
            appended.push((seq(&row)?, opt_id(&row, "product_id")?));
        }
    }
    Ok(appended)
}

/// Brings every product's `in_stock` flag up to date (after a bulk stock load);
/// returns the products whose flag changed.
pub(super) async fn refresh_in_stock(conn: &mut AnyConnection) -> StoreResult<Vec<Uuid>> {
    let mut q = SqlBuilder::new("UPDATE products SET in_stock = ");
    q.push(IN_STOCK).push(" WHERE in_stock <> ").push(IN_STOCK).push(" RETURNING id");
    q.build().fetch_all(&mut *conn).await?.iter().map(|r| super::rows::id(r, "id")).collect()
}

fn seq(row: &sqlx::any::AnyRow) -> StoreResult<u64> {
    u64::try_from(int(row, "seq")?).map_err(|_| StoreError::Corrupt("negative catalog event seq".into()))
}

impl Store {
    /// Up to `limit` changes after position `after`, in order.
    pub async fn catalog_events_after(&self, after: u64, limit: i64) -> StoreResult<Vec<CatalogEvent>> {
        let rows = sqlx::query("SELECT seq, product_id, at FROM catalog_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after as i64)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(CatalogEvent { seq: seq(r)?, product_id: opt_id(r, "product_id")?, at: text(r, "at")? })).collect()
    }

    /// The oldest and newest positions still in the log (0, 0 when it is empty).
    pub async fn catalog_log_bounds(&self) -> StoreResult<(u64, u64)> {
        let row = sqlx::query("SELECT COALESCE(MIN(seq), 0) AS lo, COALESCE(MAX(seq), 0) AS hi FROM catalog_events")
            .fetch_one(&self.pool)
            .await?;
        let lo = u64::try_from(int(&row, "lo")?).unwrap_or(0);
        let hi = u64::try_from(int(&row, "hi")?).unwrap_or(0);
        Ok((lo, hi))
    }

    /// Forgets changes older than `age`, always keeping the newest row, so a
    /// reader can tell that positions before the oldest kept one are gone.
    pub async fn purge_catalog_events(&self, age: std::time::Duration) -> StoreResult<u64> {
        let cutoff = super::format_time(time::OffsetDateTime::now_utc() - age);
        let done = sqlx::query("DELETE FROM catalog_events WHERE at < $1 AND seq < (SELECT MAX(seq) FROM catalog_events)")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
