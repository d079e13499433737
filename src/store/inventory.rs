//! Stock per variant per location, the append-only movement ledger, and
//! reservations. Stock is only ever changed by conditional updates
//! (`... WHERE on_hand - reserved >= q`), and the `stock_levels_reserved_check`
//! constraint (`0 <= reserved <= on_hand`) backs them up: no code path can
//! oversell, even a wrong one.

use serde::Serialize;
use uuid::Uuid;

use super::audit::Actor;
use super::rows::{id, int, opt_int, text};
use super::{SqlBuilder, Store, StoreError, StoreResult, Tx, new_id, now};

/// The built-in location created by the migrations.
pub const MAIN_LOCATION: &str = "00000000-0000-7000-8000-000000000001";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Location {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    /// Stock is reserved from the lowest priority that has enough.
    pub priority: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LocationLevel {
    pub location: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StockLevel {
    pub sku: String,
    pub variant_id: Uuid,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub low_stock_threshold: Option<i64>,
    pub locations: Vec<LocationLevel>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LowStock {
    pub sku: String,
    pub variant_id: Uuid,
    pub available: i64,
    pub low_stock_threshold: i64,
}

/// A (variant, location) whose ledger does not add up to its levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Discrepancy {
    pub variant_id: Uuid,
    pub location_id: Uuid,
    pub on_hand: i64,
    pub ledger_on_hand: i64,
    pub reserved: i64,
    pub ledger_reserved: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    /// Stock rows compared with the sum of their ledger movements.
    pub checked: i64,
    pub discrepancies: Vec<Discrepancy>,
}

/// A line that could not be reserved, and how many were available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Shortage {
    pub variant_id: Uuid,
    pub requested: i64,
    pub available: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("unknown SKU")]
    UnknownSku,
    #[error("unknown location")]
    UnknownLocation,
    /// The adjustment would take on-hand stock below what is reserved (or below zero).
    #[error("not enough stock")]
    Insufficient { on_hand: i64, reserved: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for InventoryError {
    fn from(e: sqlx::Error) -> Self {
        InventoryError::Store(StoreError::from_db(e))
    }
}

/// One stock movement, written to the ledger in the transaction that makes it.
struct Movement<'a> {
    variant_id: &'a str,
    location_id: &'a str,
    kind: &'a str,
    delta_on_hand: i64,
    delta_reserved: i64,
    reason: &'a str,
    order_id: Option<&'a str>,
}

async fn record_movement(tx: &mut Tx, m: Movement<'_>, actor: &Actor) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO stock_movements
            (id, variant_id, location_id, kind, delta_on_hand, delta_reserved, reason, order_id, actor_type, actor_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(new_id().to_string())
    .bind(m.variant_id)
    .bind(m.location_id)
    .bind(m.kind)
    .bind(m.delta_on_hand)
    .bind(m.delta_reserved)
    .bind(m.reason)
    .bind(m.order_id)
    .bind(actor.kind)
    .bind(actor.id.map(|i| i.to_string()))
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    pub async fn locations(&self) -> StoreResult<Vec<Location>> {
        let rows = sqlx::query("SELECT id, code, name, priority FROM stock_locations ORDER BY priority, code")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Location { id: id(r, "id")?, code: text(r, "code")?, name: text(r, "name")?, priority: int(r, "priority")? })
            })
            .collect()
    }

    pub async fn create_location(&self, code: &str, name: &str, priority: i64, actor: &Actor) -> StoreResult<Location> {
        let mut tx = self.begin().await?;
        let location = Location { id: new_id(), code: code.to_owned(), name: name.to_owned(), priority };
        sqlx::query("INSERT INTO stock_locations (id, code, name, priority, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(location.id.to_string())
            .bind(code)
            .bind(name)
            .bind(priority)
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_db)?;
        super::audit::record(
            &mut tx,
            actor,
            super::audit::Change {
                action: "location.create",
                entity_type: "location",
                entity_id: location.id,
                before: None,
                after: serde_json::to_value(&location).ok(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(location)
    }

    async fn variant_by_sku(&self, conn: &mut sqlx::AnyConnection, sku: &str) -> Result<Uuid, InventoryError> {
        let row = sqlx::query("SELECT id FROM variants WHERE sku = $1").bind(sku).fetch_optional(&mut *conn).await?;
        row.map(|r| id(&r, "id")).transpose()?.ok_or(InventoryError::UnknownSku)
    }

    /// Receives or corrects stock at one location (`location` code, or the main
    /// location). A negative delta may not take on-hand stock below what is reserved.
    pub async fn adjust_stock(
        &self,
        sku: &str,
        location: Option<&str>,
        delta: i64,
        kind: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<StockLevel, InventoryError> {
        let mut tx = self.begin().await?;
        let variant_id = self.variant_by_sku(&mut tx, sku).await?.to_string();
        // The main location unless one is named; either must exist (a shop whose
        // main location was removed must name one).
        let row = match location {
            None => sqlx::query("SELECT id FROM stock_locations WHERE id = $1").bind(MAIN_LOCATION),
            Some(code) => sqlx::query("SELECT id FROM stock_locations WHERE code = $1").bind(code),
        }
        .fetch_optional(&mut *tx)
        .await?;
        let location_id = row.map(|r| text(&r, "id")).transpose()?.ok_or(InventoryError::UnknownLocation)?;
        sqlx::query(
            "INSERT INTO stock_levels (variant_id, location_id, on_hand, reserved) VALUES ($1, $2, 0, 0)
             ON CONFLICT (variant_id, location_id) DO NOTHING",
        )
        .bind(variant_id.as_str())
        .bind(location_id.as_str())
        .execute(&mut *tx)
        .await?;
        let changed = sqlx::query(
            "UPDATE stock_levels SET on_hand = on_hand + $1
             WHERE variant_id = $2 AND location_id = $3 AND on_hand + $1 >= reserved",
        )
        .bind(delta)
        .bind(variant_id.as_str())
        .bind(location_id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            let row = sqlx::query("SELECT on_hand, reserved FROM stock_levels WHERE variant_id = $1 AND location_id = $2")
                .bind(variant_id.as_str())
                .bind(location_id.as_str())
                .fetch_one(&mut *tx)
                .await?;
            return Err(InventoryError::Insufficient { on_hand: int(&row, "on_hand")?, reserved: int(&row, "reserved")? });
        }
        record_movement(
            &mut tx,
            Movement {
                variant_id: &variant_id,
                location_id: &location_id,
                kind,
                delta_on_hand: delta,
                delta_reserved: 0,
                reason,
                order_id: None,
            },
            actor,
        )
        .await?;
        let variant = Uuid::parse_str(&variant_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if delta > 0 {
            tx.stock_returned(variant);
        } else {
            tx.stock_changed(variant);
        }
        tx.commit().await?;
        self.stock_level(sku).await?.ok_or(InventoryError::UnknownSku)
    }

    pub async fn set_low_stock_threshold(&self, sku: &str, threshold: Option<i64>) -> Result<StockLevel, InventoryError> {
        let done = sqlx::query("UPDATE variants SET low_stock_threshold = $1 WHERE sku = $2")
            .bind(threshold)
            .bind(sku)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if done == 0 {
            return Err(InventoryError::UnknownSku);
        }
        self.stock_level(sku).await?.ok_or(InventoryError::UnknownSku)
    }

    /// Gives every never-stocked variant some stock at the main location, with its
    /// receipt in the ledger: for seeding a demo shop, in two statements.
    pub async fn seed_stock_unaudited(&self) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let stocked = sqlx::query(
            "INSERT INTO stock_levels (variant_id, location_id, on_hand, reserved)
             SELECT v.id, $1, (v.position * 7 + COALESCE(v.weight_grams, 0)) % 40 + 3, 0 FROM variants v
             WHERE NOT EXISTS (SELECT 1 FROM stock_levels s WHERE s.variant_id = v.id)",
        )
        .bind(MAIN_LOCATION)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for product in super::catalog_events::refresh_in_stock(&mut tx).await? {
            tx.product_changed(product);
        }
        sqlx::query(
            "INSERT INTO stock_movements (id, variant_id, location_id, kind, delta_on_hand, delta_reserved, reason, actor_type, created_at)
             SELECT 'seed-' || s.variant_id, s.variant_id, s.location_id, 'receipt', s.on_hand, 0, 'demo seed', 'cli', $1
             FROM stock_levels s
             WHERE NOT EXISTS (SELECT 1 FROM stock_movements m WHERE m.variant_id = s.variant_id AND m.location_id = s.location_id)",
        )
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(stocked)
    }

    /// Totals and per-location levels of one SKU (zero when never stocked).
    pub async fn stock_level(&self, sku: &str) -> StoreResult<Option<StockLevel>> {
        let Some(v) = sqlx::query("SELECT id, low_stock_threshold FROM variants WHERE sku = $1")
            .bind(sku)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let variant_id = id(&v, "id")?;
        let rows = sqlx::query(
            "SELECT l.code, s.on_hand, s.reserved FROM stock_levels s JOIN stock_locations l ON l.id = s.location_id
             WHERE s.variant_id = $1 ORDER BY l.priority, l.code",
        )
        .bind(variant_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let locations = rows
            .iter()
            .map(|r| {
                let (on_hand, reserved) = (int(r, "on_hand")?, int(r, "reserved")?);
                Ok(LocationLevel { location: text(r, "code")?, on_hand, reserved, available: on_hand - reserved })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let on_hand = locations.iter().map(|l| l.on_hand).sum();
        let reserved = locations.iter().map(|l| l.reserved).sum();
        Ok(Some(StockLevel {
            sku: sku.to_owned(),
            variant_id,
            on_hand,
            reserved,
            available: on_hand - reserved,
            low_stock_threshold: opt_int(&v, "low_stock_threshold")?,
            locations,
        }))
    }

    /// Available stock per variant (all locations), for carts and error messages.
    pub async fn available(&self, variant_ids: &[Uuid]) -> StoreResult<Vec<(Uuid, i64)>> {
        if variant_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = SqlBuilder::new(
            "SELECT variant_id, CAST(SUM(on_hand - reserved) AS BIGINT) AS available FROM stock_levels WHERE variant_id IN (",
        );
        q.bind_list(variant_ids.iter().map(|v| v.to_string())).push(") GROUP BY variant_id");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((id(r, "variant_id")?, int(r, "available")?))).collect()
    }

    /// Variants at or below their low-stock threshold.
    pub async fn low_stock(&self) -> StoreResult<Vec<LowStock>> {
        let rows = sqlx::query(
            "SELECT v.id, v.sku, v.low_stock_threshold, CAST(COALESCE(SUM(s.on_hand - s.reserved), 0) AS BIGINT) AS available
             FROM variants v LEFT JOIN stock_levels s ON s.variant_id = v.id
             WHERE v.low_stock_threshold IS NOT NULL
             GROUP BY v.id, v.sku, v.low_stock_threshold
             HAVING COALESCE(SUM(s.on_hand - s.reserved), 0) <= v.low_stock_threshold
             ORDER BY v.sku",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LowStock {
                    sku: text(r, "sku")?,
                    variant_id: id(r, "id")?,
                    available: int(r, "available")?,
                    low_stock_threshold: int(r, "low_stock_threshold")?,
                })
            })
            .collect()
    }

    /// Compares every stock row with the sum of its ledger movements.
    pub async fn reconcile_stock(&self) -> StoreResult<Reconciliation> {
        let rows = sqlx::query(
            "SELECT s.variant_id, s.location_id, s.on_hand, s.reserved,
                    CAST(COALESCE(m.on_hand, 0) AS BIGINT) AS ledger_on_hand,
                    CAST(COALESCE(m.reserved, 0) AS BIGINT) AS ledger_reserved
             FROM stock_levels s
             LEFT JOIN (SELECT variant_id, location_id, SUM(delta_on_hand) AS on_hand, SUM(delta_reserved) AS reserved
                        FROM stock_movements GROUP BY variant_id, location_id) m
               ON m.variant_id = s.variant_id AND m.location_id = s.location_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut discrepancies = Vec::new();
        for r in &rows {
            let d = Discrepancy {
                variant_id: id(r, "variant_id")?,
                location_id: id(r, "location_id")?,
                on_hand: int(r, "on_hand")?,
                ledger_on_hand: int(r, "ledger_on_hand")?,
                reserved: int(r, "reserved")?,
                ledger_reserved: int(r, "ledger_reserved")?,
            };
            if d.on_hand != d.ledger_on_hand || d.reserved != d.ledger_reserved {
                discrepancies.push(d);
            }
        }
        Ok(Reconciliation { checked: rows.len() as i64, discrepancies })
    }
}

/// The job that took sold goods off on-hand stock, one per paid order, before
/// the sales folder; still run for jobs queued then.
pub const SETTLE_SALES_JOB: &str = "stock.settle_sales";

/// Settles an order's held reservations. Released ones go back to available
/// stock at once. Sold ones (`commit`) become `sold`: available stock is already
/// right (`on_hand - reserved` does not change when a sale takes a unit off both),
/// so taking them off on-hand waits for the sales folder
/// (`housekeeping::spawn_sales_folder`: each serve/worker process, every second), which folds
/// all sales of a variant into one update. Under a flash sale that keeps the
/// paying buyers off the hot stock row: a job per paid order meant dozens of
/// folds queueing for that row at once, between the checkout batches that need
/// it. The ledger records the sale when it is folded, so levels and ledger agree
/// at every moment.
pub async fn settle_reservations(tx: &mut Tx, order_id: Uuid, commit: bool, reason: &str, actor: &Actor) -> StoreResult<()> {
    let order = order_id.to_string();
    if commit {
        sqlx::query("UPDATE reservations SET status = 'sold' WHERE order_id = $1 AND status = 'held'")
            .bind(order.as_str())
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    let held = sqlx::query(
        "SELECT id, variant_id, location_id, quantity FROM reservations WHERE order_id = $1 AND status = 'held' ORDER BY variant_id",
    )
    .bind(order.as_str())
    .fetch_all(&mut **tx)
    .await?;
    for r in &held {
        let (variant, location, quantity) = (text(r, "variant_id")?, text(r, "location_id")?, int(r, "quantity")?);
        sqlx::query("UPDATE stock_levels SET reserved = reserved - $1 WHERE variant_id = $2 AND location_id = $3")
            .bind(quantity)
            .bind(variant.as_str())
            .bind(location.as_str())
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE reservations SET status = 'released' WHERE id = $1").bind(text(r, "id")?).execute(&mut **tx).await?;
        let m = Movement {
            variant_id: &variant,
            location_id: &location,
            kind: "release",
            delta_on_hand: 0,
            delta_reserved: -quantity,
            reason,
            order_id: Some(&order),
        };
        record_movement(tx, m, actor).await?;
        tx.stock_returned(id(r, "variant_id")?);
    }
    Ok(())
}

/// Whose sold reservations to fold.
pub enum Sales<'a> {
    OfVariant(&'a str),
    OfOrder(&'a str),
}

/// Takes sold reservations off on-hand stock: one update per stock row, one
/// ledger movement per reservation. Returns how many reservations it folded.
pub async fn fold_sales(tx: &mut Tx, which: Sales<'_>) -> StoreResult<usize> {
    let (sql, key) = match which {
        Sales::OfVariant(v) => (
            "UPDATE reservations SET status = 'committed' WHERE variant_id = $1 AND status = 'sold'
             RETURNING order_id, variant_id, location_id, quantity",
            v,
        ),
        Sales::OfOrder(o) => (
            "UPDATE reservations SET status = 'committed' WHERE order_id = $1 AND status = 'sold'
             RETURNING order_id, variant_id, location_id, quantity",
            o,
        ),
    };
    let rows = sqlx::query(sql).bind(key).fetch_all(&mut **tx).await?;
    let mut per_row: std::collections::BTreeMap<(Uuid, Uuid), i64> = std::collections::BTreeMap::new();
    let mut movements = Vec::with_capacity(rows.len());
    for r in &rows {
        let (order, variant, location, quantity) =
            (text(r, "order_id")?, text(r, "variant_id")?, text(r, "location_id")?, int(r, "quantity")?);
        *per_row.entry((id(r, "variant_id")?, id(r, "location_id")?)).or_insert(0) += quantity;
        movements.push((order, variant, location, quantity));
    }
    // The ledger first: the stock rows are locked last, for as short as can be
    // (a flash sale's checkout batches wait for them).
    let system = Actor { kind: "system", id: None, request_id: None };
    for chunk in movements.chunks(500) {
        let mut q = SqlBuilder::new(
            "INSERT INTO stock_movements
                (id, variant_id, location_id, kind, delta_on_hand, delta_reserved, reason, order_id, actor_type, actor_id, created_at)
             VALUES ",
        );
        let ts = now();
        q.bind_rows(chunk.iter().map(|(order, variant, location, quantity)| {
            vec![
                new_id().to_string().into(),
                variant.as_str().into(),
                location.as_str().into(),
                "sale".into(),
                (-quantity).into(),
                (-quantity).into(),
                "paid".into(),
                order.as_str().into(),
                system.kind.into(),
                super::Arg::OptText(None),
                ts.as_str().into(),
            ]
        }));
        q.build().execute(&mut **tx).await?;
    }
    // Stock rows in the order every stock writer takes them (see `placement::lock_stock`).
    let variants: std::collections::BTreeSet<Uuid> = per_row.keys().map(|(v, _)| *v).collect();
    for (variant, at) in super::placement::lock_stock(tx, &variants).await? {
        for location in at.iter().map(|a| a.location) {
            let Some(quantity) = per_row.get(&(variant, location)) else { continue };
            sqlx::query(
                "UPDATE stock_levels SET on_hand = on_hand - $1, reserved = reserved - $1 WHERE variant_id = $2 AND location_id = $3",
            )
            .bind(*quantity)
            .bind(variant.to_string())
            .bind(location.to_string())
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(rows.len())
}

impl Store {
    /// Folds the sold reservations of `variant_ids` into their stock rows (the
    /// sales folder). Several folds of one variant at once are harmless: the
    /// first folds everything, the others find nothing left.
    pub async fn settle_sales(&self, variant_ids: &[String]) -> StoreResult<usize> {
        let mut folded = 0;
        // A transaction per variant: its reservation rows, then its stock rows,
        // and nothing else held meanwhile.
        for v in variant_ids {
            let mut tx = self.begin().await?;
            folded += fold_sales(&mut tx, Sales::OfVariant(v)).await?;
            tx.commit().await?;
        }
        Ok(folded)
    }

    /// Folds every sale not yet taken off on-hand stock (the sales folder, tests).
    pub async fn settle_all_sales(&self) -> StoreResult<usize> {
        let rows =
            sqlx::query("SELECT DISTINCT variant_id FROM reservations WHERE status = 'sold'").fetch_all(&self.pool).await?;
        let mut variants = Vec::with_capacity(rows.len());
        for r in &rows {
            variants.push(text(r, "variant_id")?);
        }
        variants.sort();
        self.settle_sales(&variants).await
    }
}

/// Puts sold goods of an order back on hand, where they were taken from: all of
/// them (`None`, a cancelled sale) or the given (variant, quantity) pairs (a
/// return). Each line is one movement in the ledger.
pub async fn restock_order(
    tx: &mut Tx,
    order_id: Uuid,
    items: Option<&[(Uuid, i64)]>,
    reason: &str,
    actor: &Actor,
) -> StoreResult<()> {
    let order = order_id.to_string();
    // Sales not yet folded are taken off on-hand first, so what follows sees them.
    fold_sales(tx, Sales::OfOrder(&order)).await?;
    let committed = sqlx::query(
        "SELECT variant_id, location_id, quantity FROM reservations WHERE order_id = $1 AND status = 'committed' ORDER BY variant_id",
    )
    .bind(order.as_str())
    .fetch_all(&mut **tx)
    .await?;
    let mut todo: Vec<(String, String, i64)> = Vec::new();
    for r in &committed {
        let (variant, location, sold) = (text(r, "variant_id")?, text(r, "location_id")?, int(r, "quantity")?);
        let quantity = match items {
            None => sold,
            Some(items) => items.iter().filter(|(v, _)| v.to_string() == variant).map(|(_, q)| *q).sum::<i64>().min(sold),
        };
        if quantity > 0 {
            todo.push((variant, location, quantity));
        }
    }
    for (variant, location, quantity) in &todo {
        sqlx::query("UPDATE stock_levels SET on_hand = on_hand + $1 WHERE variant_id = $2 AND location_id = $3")
            .bind(*quantity)
            .bind(variant.as_str())
            .bind(location.as_str())
            .execute(&mut **tx)
            .await?;
        let m = Movement {
            variant_id: variant,
            location_id: location,
            kind: "restock",
            delta_on_hand: *quantity,
            delta_reserved: 0,
            reason,
            order_id: Some(&order),
        };
        record_movement(tx, m, actor).await?;
        tx.stock_returned(Uuid::parse_str(variant).map_err(|e| StoreError::Corrupt(e.to_string()))?);
    }
    Ok(())
}
