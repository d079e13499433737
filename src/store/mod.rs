//! Persistence. One `Store` over `sqlx::Any`, so SQLite (embedded) and PostgreSQL
//! (scaled out) run the same SQL; the few places where the dialects differ are
//! decided here and nowhere else. A public method is one unit of work: it opens,
//! uses and commits its own transaction, and admin writes record their audit row
//! inside that same transaction.
//!
//! Column types are the portable subset `Any` can carry: ids are UUIDv7 text,
//! times are fixed-width RFC 3339 UTC text (so they sort as text), money is BIGINT
//! minor units, small structured values are JSON text.

pub mod audit;
pub mod carts;
pub mod catalog;
pub mod catalog_events;
pub mod collections;
pub mod customers;
pub mod database_url;
pub mod fulfilment;
pub mod idempotency;
pub mod inventory;
pub mod jobs;
pub mod notifications;
pub mod orders;
pub mod password_resets;
pub mod paying;
pub mod payments;
pub mod placement;
pub mod promotions;
pub mod rates;
pub mod read_batches;
pub mod refunds;
pub mod rows;
pub mod search_documents;
pub mod staff;
pub mod webhooks;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Executor, SqlSafeStr, Transaction};
use uuid::Uuid;

use crate::catalog_versions::CatalogVersions;
use crate::sold_out::SoldOut;

/// A write transaction. It derefs to the connection (`&mut **tx` / `&mut *tx`
/// as an executor) and remembers the variants whose stock it gave back, so that
/// once it has committed the sold-out memory forgets them, and what it changed
/// in the catalog, which it appends to the catalog's change log just before it
/// commits.
pub struct Tx {
    inner: Transaction<'static, Any>,
    dialect: Dialect,
    stock_returned: Vec<Uuid>,
    catalog: catalog_events::Touched,
    sold_out: Arc<SoldOut>,
    versions: Arc<CatalogVersions>,
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}

impl Tx {
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let touched = std::mem::take(&mut self.catalog);
        let logged = if touched.is_empty() {
            Vec::new()
        } else {
            catalog_events::append(&mut self.inner, self.dialect, &touched).await.map_err(|e| match e {
                StoreError::Db(e) => e,
                other => sqlx::Error::Protocol(other.to_string()),
            })?
        };
        self.inner.commit().await?;
        for (seq, product) in logged {
            self.versions.note(seq, product);
        }
        if !self.stock_returned.is_empty() {
            self.sold_out.forget(&self.stock_returned).await;
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Stock of `variant` becomes available again when this transaction commits.
    pub(crate) fn stock_returned(&mut self, variant: Uuid) {
        if !self.stock_returned.contains(&variant) {
            self.stock_returned.push(variant);
        }
        self.catalog.variants.insert(variant);
    }

    /// `variant` may have run out (or come back) when this transaction commits:
    /// its product's "in stock" changes for search.
    pub(crate) fn stock_changed(&mut self, variant: Uuid) {
        self.catalog.variants.insert(variant);
    }

    /// `product`'s catalog data changes when this transaction commits.
    pub(crate) fn product_changed(&mut self, product: Uuid) {
        self.catalog.products.insert(product);
    }

    /// Something every catalog answer may show (a category) changes.
    pub(crate) fn catalog_changed(&mut self) {
        self.catalog.everything = true;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A named unique constraint was violated (see `UNIQUE_KEYS`).
    #[error("unique constraint {0} violated")]
    Unique(&'static str),
    /// A row this write refers to was removed by a concurrent write.
    #[error("a referenced row changed concurrently")]
    ForeignKey,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Unique constraints by their PostgreSQL name and the `table.column` SQLite reports.
const UNIQUE_KEYS: &[(&str, &str)] = &[
    ("products_slug_key", "products.slug"),
    ("variants_sku_key", "variants.sku"),
    ("categories_slug_key", "categories.slug"),
    ("staff_email_key", "staff.email"),
    ("refresh_tokens_hash_key", "refresh_tokens.token_hash"),
    ("variants_options_key", "variants.product_id, variants.options"),
    ("customers_email_key", "customers.email"),
    ("stock_locations_code_key", "stock_locations.code"),
];

impl StoreError {
    /// Classifies a driver error, naming the unique constraint it broke, if any.
    pub fn from_db(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err
            && db.is_foreign_key_violation()
        {
            return StoreError::ForeignKey;
        }
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
        {
            let message = db.message();
            let constraint = db.constraint();
            for (name, column) in UNIQUE_KEYS {
                if constraint == Some(*name) || message.contains(column) {
                    return StoreError::Unique(name);
                }
            }
        }
        StoreError::Db(err)
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    sold_out: Arc<SoldOut>,
    versions: Arc<CatalogVersions>,
    automatic_promotions: Arc<promotions::AutomaticPromotions>,
    reads: Arc<Reads>,
    claims: Arc<idempotency::ClaimBatches>,
}

/// The queues of the reads concurrent requests share ([`read_batches`]).
#[derive(Default)]
struct Reads {
    probes: Arc<read_batches::ReadBatches<carts::CheckoutProbes>>,
    cart_lines: Arc<read_batches::ReadBatches<carts::CartLines>>,
    coded_offers: Arc<read_batches::ReadBatches<promotions::CodedOffers>>,
    tax_rates: Arc<read_batches::ReadBatches<rates::TaxRates>>,
    shipping_options: Arc<read_batches::ReadBatches<rates::ShippingOptions>>,
}

macro_rules! migrations {
    ($($version:literal => $name:literal),* $(,)?) => {
        fn migrations(dialect: Dialect) -> Vec<Migration> {
            match dialect {
                Dialect::Postgres => vec![$(
                    Migration::new($version, Cow::Borrowed($name), MigrationType::Simple,
                        include_str!(concat!("../../migrations/postgres/", $name, ".sql")).into_sql_str(), false),
                )*],
                Dialect::Sqlite => vec![$(
                    Migration::new($version, Cow::Borrowed($name), MigrationType::Simple,
                        include_str!(concat!("../../migrations/sqlite/", $name, ".sql")).into_sql_str(), false),
                )*],
            }
        }
    };
}

// Versioned schema changes, the same version and name for both databases.
migrations! {
    1 => "0001_catalog_and_staff",
    2 => "0002_catalog_constraints",
    3 => "0003_customers_inventory_checkout",
    4 => "0004_order_admin_indexes",
    5 => "0005_jobs",
    6 => "0006_order_lifecycle",
    7 => "0007_notifications",
    8 => "0008_batched_reservations",
    9 => "0009_catalog_events",
    10 => "0010_promotions",
    11 => "0011_customer_segments",
    12 => "0012_collections",
}

impl Store {
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> StoreResult<Self> {
        install_default_drivers();
        let dialect = if url.starts_with("postgres") { Dialect::Postgres } else { Dialect::Sqlite };
        if dialect == Dialect::Sqlite
            && let Some(dir) = sqlite_parent_dir(url)
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        let tls_env_set = database_url::TLS_ENV.iter().any(|v| std::env::var_os(v).is_some());
        let url = database_url::connection_url(url, tls_env_set);
        if matches!(url, std::borrow::Cow::Owned(_)) {
            tracing::info!("database on this host: connecting without TLS (an sslmode in DATABASE_URL or PGSSLMODE chooses)");
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL lets readers run beside the one writer; the busy timeout makes
                        // writers queue instead of failing; foreign keys are off by default.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Self {
            pool,
            dialect,
            sold_out: Arc::new(SoldOut::in_process()),
            versions: Arc::new(CatalogVersions::default()),
            automatic_promotions: Arc::default(),
            reads: Arc::default(),
            claims: Arc::default(),
        })
    }

    /// Shares `sold_out` (for example one backed by Redis) instead of this
    /// store's own in-process memory.
    pub fn with_sold_out(mut self, sold_out: Arc<SoldOut>) -> Self {
        self.sold_out = sold_out;
        self
    }

    pub fn sold_out(&self) -> &Arc<SoldOut> {
        &self.sold_out
    }

    /// Notes this instance's own catalog changes in `versions` as they commit.
    pub fn with_versions(mut self, versions: Arc<CatalogVersions>) -> Self {
        self.versions = versions;
        self
    }

    pub fn versions(&self) -> &Arc<CatalogVersions> {
        &self.versions
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The plan the database chooses for `q`: `EXPLAIN (ANALYZE, BUFFERS)` on
    /// PostgreSQL (the statement really runs), `EXPLAIN QUERY PLAN` on SQLite.
    pub async fn explain(&self, q: SqlBuilder) -> StoreResult<Vec<String>> {
        let prefix = match self.dialect {
            Dialect::Postgres => "EXPLAIN (ANALYZE, BUFFERS) ",
            Dialect::Sqlite => "EXPLAIN QUERY PLAN ",
        };
        let rows = q.prefixed(prefix).build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| match self.dialect {
                Dialect::Postgres => rows::text(r, "QUERY PLAN"),
                Dialect::Sqlite => rows::text(r, "detail"),
            })
            .collect()
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        let mut migrator = Migrator::with_migrations(migrations(self.dialect));
        // SQLite has no advisory locks; one process owns the file in the embedded mode.
        migrator.set_locking(self.dialect == Dialect::Postgres);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads and then writes can fail with
    /// SQLITE_BUSY regardless of the busy timeout.
    pub async fn begin(&self) -> StoreResult<Tx> {
        let inner = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        };
        Ok(Tx {
            inner,
            dialect: self.dialect,
            stock_returned: Vec::new(),
            catalog: catalog_events::Touched::default(),
            sold_out: self.sold_out.clone(),
            versions: self.versions.clone(),
        })
    }

    /// A write transaction whose commit does not wait for the disk (PostgreSQL
    /// `synchronous_commit = off` for this transaction only), for writes that are
    /// frequent and cheap to lose: cart changes. A crash can forget the last
    /// fraction of a second of them and nothing else: the database stays
    /// consistent, and any later durable commit (an order placed from the cart)
    /// makes every earlier write durable with it, as the log is written in order.
    /// Orders, stock, payments and idempotency records keep durable commits. On
    /// SQLite (`synchronous = NORMAL` in WAL mode) every commit is alike.
    pub async fn begin_relaxed(&self) -> StoreResult<Tx> {
        // A statement of its own after `BEGIN`, not one round trip with it: should
        // it fail, the transaction sqlx knows of is rolled back.
        let mut tx = self.begin().await?;
        if self.dialect == Dialect::Postgres {
            tx.execute("SET LOCAL synchronous_commit = off").await?;
        }
        Ok(tx)
    }

    /// The database this store talks to.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether write transactions wait for one database-wide lock (SQLite), each
    /// holding a pooled connection while it waits.
    pub fn writers_queue(&self) -> bool {
        self.dialect == Dialect::Sqlite
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Refreshes the planner's statistics, after a bulk load changed the data's
    /// shape (until autovacuum gets to it, PostgreSQL plans from an empty table).
    pub async fn analyze(&self) -> StoreResult<()> {
        sqlx::query("ANALYZE").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Whether the pool was closed: the process is stopping, and background loops
    /// end rather than report the closed pool as a failure.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }
}

fn sqlite_parent_dir(url: &str) -> Option<&std::path::Path> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty())
}

/// Now, as stored: fixed-width RFC 3339 UTC with microseconds, so text order is time order.
pub fn now() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

pub fn format_time(t: time::OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    t.to_offset(time::UtcOffset::UTC).format(&FORMAT).unwrap_or_default()
}

pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// A bound value of a dynamically assembled statement.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    Int(i64),
    OptText(Option<String>),
    OptInt(Option<i64>),
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v)
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

/// Assembles a statement from fixed SQL fragments and bound values, numbering the
/// `$n` placeholders. Input only ever reaches the database as a bound value.
/// (sqlx's own `QueryBuilder` writes `?` placeholders for `Any`, which PostgreSQL rejects.)
#[derive(Debug, Default)]
pub struct SqlBuilder {
    sql: String,
    args: Vec<Arg>,
}

/// A PostgreSQL array literal of `values`, each quoted, so any text (commas,
/// braces, quotes, the word NULL) is one element as it is.
fn text_array(values: impl IntoIterator<Item = String>) -> String {
    let mut array = String::from("{");
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                array.push('\\');
            }
            array.push(c);
        }
        array.push('"');
    }
    array.push('}');
    array
}

impl SqlBuilder {
    pub fn new(sql: &'static str) -> Self {
        Self { sql: sql.to_owned(), args: Vec::new() }
    }

    pub fn push(&mut self, sql: &'static str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder for `value`.
    pub fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        self.sql.push_str(&format!("${}", self.args.len()));
        self
    }

    /// Appends `$a, $b, ...` for every value.
    pub fn bind_list<T: Into<Arg>>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self {
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.bind(v);
        }
        self
    }

    /// Appends a membership test of `values`: ` IN ($a, $b, ...)` on SQLite; on
    /// PostgreSQL ` = ANY(CAST($a AS TEXT[]))`, one statement text whatever the
    /// number of values, so a batched read is prepared and planned once per
    /// connection instead of once per batch size.
    pub fn bind_in(&mut self, dialect: Dialect, values: impl IntoIterator<Item = String>) -> &mut Self {
        match dialect {
            Dialect::Sqlite => self.push(" IN (").bind_list(values).push(")"),
            Dialect::Postgres => self.push(" = ANY(CAST(").bind(text_array(values)).push(" AS TEXT[]))"),
        }
    }

    /// Appends `($a, $b), ($c, $d), ...` for rows of values.
    pub fn bind_rows(&mut self, rows: impl IntoIterator<Item = Vec<Arg>>) -> &mut Self {
        for (i, row) in rows.into_iter().enumerate() {
            self.sql.push_str(if i == 0 { "(" } else { ", (" });
            self.bind_list(row);
            self.sql.push(')');
        }
        self
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The same statement behind a fixed prefix such as `EXPLAIN `.
    pub fn prefixed(mut self, prefix: &'static str) -> Self {
        self.sql.insert_str(0, prefix);
        self
    }

    pub fn build(self) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql));
        for arg in self.args {
            query = match arg {
                Arg::Text(t) => query.bind(t),
                Arg::Int(i) => query.bind(i),
                Arg::OptText(t) => query.bind(t),
                Arg::OptInt(i) => query.bind(i),
            };
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_sort_as_text() {
        let a = format_time(time::macros::datetime!(2026-01-02 03:04:05.000001 UTC));
        let b = format_time(time::macros::datetime!(2026-01-02 03:04:05.1 UTC));
        assert_eq!(a, "2026-01-02T03:04:05.000001Z");
        assert!(a < b);
    }

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut q = SqlBuilder::new("SELECT 1 WHERE a = ");
        q.bind("x").push(" AND b IN (").bind_list([1i64, 2]).push(")");
        assert_eq!(q.sql(), "SELECT 1 WHERE a = $1 AND b IN ($2, $3)");
    }

    #[test]
    fn membership_is_one_placeholder_on_postgres_and_a_list_on_sqlite() {
        let values = || ["a".to_owned(), "b".to_owned()];
        let mut q = SqlBuilder::new("SELECT 1 WHERE a");
        q.bind_in(Dialect::Postgres, values());
        assert_eq!(q.sql(), "SELECT 1 WHERE a = ANY(CAST($1 AS TEXT[]))");
        let mut q = SqlBuilder::new("SELECT 1 WHERE a");
        q.bind_in(Dialect::Sqlite, values());
        assert_eq!(q.sql(), "SELECT 1 WHERE a IN ($1, $2)");
    }

    #[test]
    fn array_literals_quote_every_element() {
        let values = ["plain", "a,b", "{x}", "say \"hi\"", "back\\slash", "NULL", ""].map(str::to_owned);
        assert_eq!(text_array(values), r#"{"plain","a,b","{x}","say \"hi\"","back\\slash","NULL",""}"#);
        assert_eq!(text_array([]), "{}");
    }

    #[test]
    fn finds_the_sqlite_folder() {
        assert_eq!(sqlite_parent_dir("sqlite://./data/mercato.db?mode=rwc"), Some(std::path::Path::new("./data")));
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
    }
}
