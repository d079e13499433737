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

/// Whether the product of the row `products` has stock somewhere (each
/// location's on_hand − reserved is never negative, so "some location has some"
/// is "the sum is positive"). Only ever in a WHERE clause, where PostgreSQL turns
/// it into one (anti-)join over all products rather than a scan per product.
const HAS_STOCK: &str = "EXISTS (SELECT 1 FROM variants v JOIN stock_levels s ON s.variant_id = v.id
     WHERE v.product_id = products.id AND s.on_hand - s.reserved > 0)";

/// Appends one row per touched product (and one for `everything`); returns
/// what was appended. Products touched through their variants' stock are
/// logged only when their `in_stock` flag really flips (it is kept here).
pub(super) async fn append(
    conn: &mut AnyConnection,
    dialect: Dialect,
    touched: &Touched,
) -> StoreResult<Vec<(u64, Option<Uuid>)>> {
    let mut products = touched.products.clone();
    if !touched.variants.is_empty() {
        products.extend(flip_in_stock(conn, dialect, &touched.variants).await?);
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

/// Recomputes the `in_stock` flag of the products of `variants`; returns those
/// whose flag flipped. The products are locked first (in id order) and their
/// stock read after, so two transactions changing stock of one product's
/// variants compute one after the other, the second seeing the first's commit:
/// otherwise each could miss the other's change and leave the flag wrong.
async fn flip_in_stock(conn: &mut AnyConnection, dialect: Dialect, variants: &BTreeSet<Uuid>) -> StoreResult<Vec<Uuid>> {
    let mut q = SqlBuilder::new("SELECT id, in_stock FROM products WHERE id IN (SELECT product_id FROM variants WHERE id IN (");
    q.bind_list(variants.iter().map(|v| v.to_string())).push(")) ORDER BY id");
    if dialect == Dialect::Postgres {
        q.push(" FOR UPDATE");
    }
    let mut flagged = std::collections::BTreeMap::new();
    for row in q.build().fetch_all(&mut *conn).await? {
        flagged.insert(super::rows::id(&row, "id")?, int(&row, "in_stock")? != 0);
    }
    if flagged.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = SqlBuilder::new(
        "SELECT DISTINCT v.product_id FROM variants v JOIN stock_levels s ON s.variant_id = v.id
         WHERE s.on_hand - s.reserved > 0 AND v.product_id IN (",
    );
    q.bind_list(flagged.keys().map(|p| p.to_string())).push(")");
    let mut stocked = BTreeSet::new();
    for row in q.build().fetch_all(&mut *conn).await? {
        stocked.insert(super::rows::id(&row, "product_id")?);
    }
    let flipped: Vec<Uuid> = flagged.into_iter().filter(|(p, was)| *was != stocked.contains(p)).map(|(p, _)| p).collect();
    for (value, which) in [(1i64, true), (0, false)] {
        let ids: Vec<String> = flipped.iter().filter(|p| stocked.contains(p) == which).map(|p| p.to_string()).collect();
        if !ids.is_empty() {
            let mut q = SqlBuilder::new("UPDATE products SET in_stock = ");
            q.bind(value).push(" WHERE id IN (").bind_list(ids).push(")");
            q.build().execute(&mut *conn).await?;
        }
    }
    Ok(flipped)
}

/// Brings every product's `in_stock` flag up to date (after a bulk stock load);
/// returns the products whose flag changed.
pub(super) async fn refresh_in_stock(conn: &mut AnyConnection) -> StoreResult<Vec<Uuid>> {
    let mut flipped = Vec::new();
    for (set, condition) in [("1 WHERE in_stock = 0 AND ", ""), ("0 WHERE in_stock = 1 AND ", "NOT ")] {
        let mut q = SqlBuilder::new("UPDATE products SET in_stock = ");
        q.push(set).push(condition).push(HAS_STOCK).push(" RETURNING id");
        for row in q.build().fetch_all(&mut *conn).await? {
            flipped.push(super::rows::id(&row, "id")?);
        }
    }
    Ok(flipped)
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
