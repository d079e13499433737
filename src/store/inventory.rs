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
        let location_id = match location {
            None => MAIN_LOCATION.to_owned(),
            Some(code) => {
                let row =
                    sqlx::query("SELECT id FROM stock_locations WHERE code = $1").bind(code).fetch_optional(&mut *tx).await?;
                row.map(|r| text(&r, "id")).transpose()?.ok_or(InventoryError::UnknownLocation)?
            }
        };
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

/// Reserves every line for `order_id` inside the caller's transaction. Lines are
/// taken in variant order so concurrent checkouts lock rows in one global order
/// and cannot deadlock. Each line is one conditional update at the first location
/// (by priority) that has enough; a line that fits nowhere is a shortage, and the
/// caller rolls the whole transaction back.
pub async fn reserve(
    tx: &mut Tx,
    order_id: Uuid,
    lines: &[(Uuid, i64)],
    expires_at: &str,
    actor: &Actor,
) -> Result<Vec<Shortage>, StoreError> {
    let mut sorted = lines.to_vec();
    sorted.sort();
    let order = order_id.to_string();
    let mut shortages = Vec::new();
    for (variant_id, quantity) in sorted {
        let variant = variant_id.to_string();
        let candidates = sqlx::query(
            "SELECT s.location_id FROM stock_levels s JOIN stock_locations l ON l.id = s.location_id
             WHERE s.variant_id = $1 AND s.on_hand - s.reserved >= $2 ORDER BY l.priority, l.id",
        )
        .bind(variant.as_str())
        .bind(quantity)
        .fetch_all(&mut **tx)
        .await?;
        let mut placed = None;
        for c in &candidates {
            let location = text(c, "location_id")?;
            let done = sqlx::query(
                "UPDATE stock_levels SET reserved = reserved + $1
                 WHERE variant_id = $2 AND location_id = $3 AND on_hand - reserved >= $1",
            )
            .bind(quantity)
            .bind(variant.as_str())
            .bind(location.as_str())
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if done == 1 {
                placed = Some(location);
                break;
            }
        }
        let Some(location) = placed else {
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(on_hand - reserved), 0) AS BIGINT) AS available FROM stock_levels WHERE variant_id = $1",
            )
            .bind(variant.as_str())
            .fetch_one(&mut **tx)
            .await?;
            shortages.push(Shortage { variant_id, requested: quantity, available: int(&row, "available")? });
            continue;
        };
        sqlx::query(
            "INSERT INTO reservations (id, order_id, variant_id, location_id, quantity, status, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, 'held', $6, $7)",
        )
        .bind(new_id().to_string())
        .bind(order.as_str())
        .bind(variant.as_str())
        .bind(location.as_str())
        .bind(quantity)
        .bind(expires_at)
        .bind(now())
        .execute(&mut **tx)
        .await?;
        let m = Movement {
            variant_id: &variant,
            location_id: &location,
            kind: "reserve",
            delta_on_hand: 0,
            delta_reserved: quantity,
            reason: "checkout",
            order_id: Some(&order),
        };
        record_movement(tx, m, actor).await?;
    }
    Ok(shortages)
}

/// Settles an order's held reservations: `commit` turns them into a decrement of
/// on-hand stock (the goods are sold), otherwise they go back to available stock.
pub async fn settle_reservations(tx: &mut Tx, order_id: Uuid, commit: bool, reason: &str, actor: &Actor) -> StoreResult<()> {
    let order = order_id.to_string();
    let held = sqlx::query(
        "SELECT id, variant_id, location_id, quantity FROM reservations WHERE order_id = $1 AND status = 'held' ORDER BY variant_id",
    )
    .bind(order.as_str())
    .fetch_all(&mut **tx)
    .await?;
    for r in &held {
        let (variant, location, quantity) = (text(r, "variant_id")?, text(r, "location_id")?, int(r, "quantity")?);
        let sql = if commit {
            "UPDATE stock_levels SET on_hand = on_hand - $1, reserved = reserved - $1 WHERE variant_id = $2 AND location_id = $3"
        } else {
            "UPDATE stock_levels SET reserved = reserved - $1 WHERE variant_id = $2 AND location_id = $3"
        };
        sqlx::query(sql).bind(quantity).bind(variant.as_str()).bind(location.as_str()).execute(&mut **tx).await?;
        sqlx::query("UPDATE reservations SET status = $1 WHERE id = $2")
            .bind(if commit { "committed" } else { "released" })
            .bind(text(r, "id")?)
            .execute(&mut **tx)
            .await?;
        let m = Movement {
            variant_id: &variant,
            location_id: &location,
            kind: if commit { "sale" } else { "release" },
            delta_on_hand: if commit { -quantity } else { 0 },
            delta_reserved: -quantity,
            reason,
            order_id: Some(&order),
        };
        record_movement(tx, m, actor).await?;
    }
    Ok(())
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
    }
    Ok(())
}
