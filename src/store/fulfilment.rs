//! After payment: shipments (one order may leave in several parcels), delivery,
//! and returns. Every change locks the order row first, so concurrent staff
//! actions on one order are judged one after the other against its latest state.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::audit::Actor;
use super::inventory;
use super::orders::{LockedOrder, OrderError, apply_transition, insert_outbox, lock_order};
use super::rows::{id, int, json, opt_text, text, to_json};
use super::{Store, StoreError, StoreResult, Tx, new_id, now};
use crate::domain::order_status::{OrderEvent, OrderStatus, transition};
use crate::domain::validation::FieldError;

/// Which units of which order line; `quantity` is in units of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineQuantity {
    pub line_id: Uuid,
    pub quantity: i64,
}

pub struct NewShipment {
    pub carrier: String,
    pub tracking_number: String,
    pub tracking_url: Option<String>,
    /// Every unshipped unit when absent.
    pub lines: Option<Vec<LineQuantity>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Shipment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub carrier: String,
    pub tracking_number: String,
    pub tracking_url: Option<String>,
    /// `shipped` or `delivered`.
    pub status: String,
    pub lines: Vec<LineQuantity>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Return {
    pub id: Uuid,
    pub order_id: Uuid,
    /// `requested` or `received`.
    pub status: String,
    pub reason: String,
    pub lines: Vec<LineQuantity>,
    /// Whether the goods went back on hand (once received).
    pub restocked: Option<bool>,
    pub created_at: String,
    pub received_at: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FulfilmentError {
    #[error(transparent)]
    Order(#[from] OrderError),
    /// The lines asked for do not fit the order (unknown line, too many units).
    #[error("some lines cannot be used")]
    Lines(Vec<FieldError>),
    #[error("nothing is left to ship")]
    NothingToShip,
}

impl From<StoreError> for FulfilmentError {
    fn from(e: StoreError) -> Self {
        FulfilmentError::Order(OrderError::Store(e))
    }
}

impl From<sqlx::Error> for FulfilmentError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from_db(e).into()
    }
}

struct LineState {
    id: Uuid,
    variant_id: Uuid,
    quantity: i64,
    shipped: i64,
    returned: i64,
}

async fn line_states(tx: &mut Tx, order_id: Uuid) -> StoreResult<Vec<LineState>> {
    let rows = sqlx::query(
        "SELECT id, variant_id, quantity, shipped_quantity, returned_quantity FROM order_lines WHERE order_id = $1 ORDER BY id",
    )
    .bind(order_id.to_string())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(LineState {
                id: id(r, "id")?,
                variant_id: id(r, "variant_id")?,
                quantity: int(r, "quantity")?,
                shipped: int(r, "shipped_quantity")?,
                returned: int(r, "returned_quantity")?,
            })
        })
        .collect()
}

/// Checks asked-for lines against what each line still allows (`room`), or
/// takes everything there is room for when nothing was asked.
fn pick_lines(
    lines: &[LineState],
    asked: Option<&[LineQuantity]>,
    room: impl Fn(&LineState) -> i64,
) -> Result<Vec<LineQuantity>, Vec<FieldError>> {
    let Some(asked) = asked else {
        return Ok(lines.iter().filter(|l| room(l) > 0).map(|l| LineQuantity { line_id: l.id, quantity: room(l) }).collect());
    };
    let mut errors = Vec::new();
    let mut picked: Vec<LineQuantity> = Vec::new();
    for (i, a) in asked.iter().enumerate() {
        let field = format!("lines[{i}]");
        match lines.iter().find(|l| l.id == a.line_id) {
            None => errors.push(FieldError { field, code: "unknown_line".into(), message: "no such line in this order".into() }),
            Some(_) if picked.iter().any(|p| p.line_id == a.line_id) => {
                errors.push(FieldError { field, code: "duplicate_line".into(), message: "each line may appear once".into() })
            }
            Some(l) if a.quantity < 1 || a.quantity > room(l) => errors.push(FieldError {
                field: format!("{field}.quantity"),
                code: "invalid_quantity".into(),
                message: format!("between 1 and {} units of this line can be used", room(l)),
            }),
            Some(_) => picked.push(*a),
        }
    }
    if errors.is_empty() { Ok(picked) } else { Err(errors) }
}

impl Store {
    /// Records a parcel leaving: the lines and units in it, the carrier and the
    /// tracking number. The order is `shipped` once nothing is left unshipped,
    /// `fulfilling` before.
    pub async fn ship(&self, order_id: Uuid, s: &NewShipment, actor: &Actor) -> Result<Shipment, FulfilmentError> {
        let mut tx = self.begin().await?;
        let order = lock_order(&mut tx, self.dialect, order_id).await?;
        // Judge the state first: "not paid yet" says more than "nothing to ship".
        transition(order.status, OrderEvent::Ship { complete: false }).map_err(OrderError::from)?;
        let lines = line_states(&mut tx, order_id).await?;
        let picked = pick_lines(&lines, s.lines.as_deref(), |l| l.quantity - l.shipped).map_err(FulfilmentError::Lines)?;
        if picked.is_empty() {
            return Err(FulfilmentError::NothingToShip);
        }
        let shipment_id = new_id();
        let ts = now();
        sqlx::query(
            "INSERT INTO shipments (id, order_id, carrier, tracking_number, tracking_url, status, actor_type, actor_id, created_at)
             VALUES ($1, $2, $3, $4, $5, 'shipped', $6, $7, $8)",
        )
        .bind(shipment_id.to_string())
        .bind(order_id.to_string())
        .bind(s.carrier.as_str())
        .bind(s.tracking_number.as_str())
        .bind(s.tracking_url.as_deref())
        .bind(actor.kind)
        .bind(actor.id.map(|i| i.to_string()))
        .bind(ts.as_str())
        .execute(&mut *tx)
        .await?;
        for p in &picked {
            sqlx::query("INSERT INTO shipment_lines (shipment_id, order_line_id, quantity) VALUES ($1, $2, $3)")
                .bind(shipment_id.to_string())
                .bind(p.line_id.to_string())
                .bind(p.quantity)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE order_lines SET shipped_quantity = shipped_quantity + $1 WHERE id = $2")
                .bind(p.quantity)
                .bind(p.line_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let complete = lines.iter().all(|l| l.quantity == l.shipped + picked_quantity(&picked, l.id));
        let reason = format!("shipment {} ({} {})", shipment_id, s.carrier, s.tracking_number);
        apply_transition(&mut tx, &order, OrderEvent::Ship { complete }, actor, &reason).await?;
        insert_outbox(&mut tx, "shipment.created", serde_json::json!({"order_id": order_id, "shipment_id": shipment_id})).await?;
        tx.commit().await?;
        Ok(self.shipments(order_id).await?.into_iter().find(|x| x.id == shipment_id).ok_or(StoreError::NotFound("shipment"))?)
    }

    /// The carrier says everything arrived.
    pub async fn mark_delivered(&self, order_id: Uuid, actor: &Actor) -> Result<OrderStatus, OrderError> {
        let mut tx = self.begin().await?;
        let order = lock_order(&mut tx, self.dialect, order_id).await?;
        let to = apply_transition(&mut tx, &order, OrderEvent::Deliver, actor, "delivered").await?;
        sqlx::query("UPDATE shipments SET status = 'delivered', delivered_at = $1 WHERE order_id = $2 AND status = 'shipped'")
            .bind(now())
            .bind(order_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(to)
    }

    pub async fn shipments(&self, order_id: Uuid) -> StoreResult<Vec<Shipment>> {
        let rows = sqlx::query(
            "SELECT id, order_id, carrier, tracking_number, tracking_url, status, created_at FROM shipments WHERE order_id = $1 ORDER BY id",
        )
        .bind(order_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let line_rows = sqlx::query(
            "SELECT sl.shipment_id, sl.order_line_id, sl.quantity FROM shipment_lines sl
             JOIN shipments s ON s.id = sl.shipment_id WHERE s.order_id = $1 ORDER BY sl.order_line_id",
        )
        .bind(order_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let shipment_id = text(r, "id")?;
                let mut lines = Vec::new();
                for l in line_rows.iter() {
                    if text(l, "shipment_id")? == shipment_id {
                        lines.push(LineQuantity { line_id: id(l, "order_line_id")?, quantity: int(l, "quantity")? });
                    }
                }
                Ok(Shipment {
                    id: id(r, "id")?,
                    order_id: id(r, "order_id")?,
                    carrier: text(r, "carrier")?,
                    tracking_number: text(r, "tracking_number")?,
                    tracking_url: opt_text(r, "tracking_url")?,
                    status: text(r, "status")?,
                    lines,
                    created_at: text(r, "created_at")?,
                })
            })
            .collect()
    }

    /// Opens a return for shipped units (all of them when `lines` is absent).
    pub async fn request_return(
        &self,
        order_id: Uuid,
        lines: Option<&[LineQuantity]>,
        reason: &str,
        actor: &Actor,
    ) -> Result<Return, FulfilmentError> {
        let mut tx = self.begin().await?;
        let order = lock_order(&mut tx, self.dialect, order_id).await?;
        transition(order.status, OrderEvent::RequestReturn).map_err(OrderError::from)?;
        let states = line_states(&mut tx, order_id).await?;
        let picked = pick_lines(&states, lines, |l| l.shipped - l.returned).map_err(FulfilmentError::Lines)?;
        if picked.is_empty() {
            return Err(FulfilmentError::Lines(vec![FieldError {
                field: "lines".into(),
                code: "nothing_to_return".into(),
                message: "no shipped units are left to return".into(),
            }]));
        }
        let return_id = new_id();
        sqlx::query(
            "INSERT INTO returns (id, order_id, status, reason, lines, actor_type, actor_id, created_at)
             VALUES ($1, $2, 'requested', $3, $4, $5, $6, $7)",
        )
        .bind(return_id.to_string())
        .bind(order_id.to_string())
        .bind(reason)
        .bind(to_json(&picked))
        .bind(actor.kind)
        .bind(actor.id.map(|i| i.to_string()))
        .bind(now())
        .execute(&mut *tx)
        .await?;
        apply_transition(&mut tx, &order, OrderEvent::RequestReturn, actor, &format!("return {return_id}: {reason}")).await?;
        tx.commit().await?;
        self.return_of(order_id, return_id).await?.ok_or_else(|| StoreError::NotFound("return").into())
    }

    /// The returned goods arrived: the order is `returned`, and the units go back
    /// on hand when `restock` (not when they came back damaged).
    pub async fn receive_return(
        &self,
        order_id: Uuid,
        return_id: Uuid,
        restock: bool,
        actor: &Actor,
    ) -> Result<Return, FulfilmentError> {
        let mut tx = self.begin().await?;
        let order: LockedOrder = lock_order(&mut tx, self.dialect, order_id).await?;
        let row = sqlx::query("SELECT status, lines FROM returns WHERE id = $1 AND order_id = $2")
            .bind(return_id.to_string())
            .bind(order_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("return"))?;
        let lines: Vec<LineQuantity> = json(&row, "lines")?;
        let reason = format!("return {return_id} received{}", if restock { ", restocked" } else { "" });
        apply_transition(&mut tx, &order, OrderEvent::ReceiveReturn, actor, &reason).await?;
        sqlx::query("UPDATE returns SET status = 'received', restocked = $1, received_at = $2 WHERE id = $3")
            .bind(i64::from(restock))
            .bind(now())
            .bind(return_id.to_string())
            .execute(&mut *tx)
            .await?;
        let states = line_states(&mut tx, order_id).await?;
        let mut items = Vec::new();
        for l in &lines {
            sqlx::query("UPDATE order_lines SET returned_quantity = returned_quantity + $1 WHERE id = $2")
                .bind(l.quantity)
                .bind(l.line_id.to_string())
                .execute(&mut *tx)
                .await?;
            if let Some(s) = states.iter().find(|s| s.id == l.line_id) {
                items.push((s.variant_id, l.quantity));
            }
        }
        if restock {
            inventory::restock_order(&mut tx, order_id, Some(&items), "returned", actor).await?;
        }
        tx.commit().await?;
        self.return_of(order_id, return_id).await?.ok_or_else(|| StoreError::NotFound("return").into())
    }

    pub async fn returns(&self, order_id: Uuid) -> StoreResult<Vec<Return>> {
        let rows = sqlx::query(
            "SELECT id, order_id, status, reason, lines, restocked, created_at, received_at FROM returns WHERE order_id = $1 ORDER BY id",
        )
        .bind(order_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Return {
                    id: id(r, "id")?,
                    order_id: id(r, "order_id")?,
                    status: text(r, "status")?,
                    reason: text(r, "reason")?,
                    lines: json(r, "lines")?,
                    restocked: super::rows::opt_int(r, "restocked")?.map(|v| v != 0),
                    created_at: text(r, "created_at")?,
                    received_at: opt_text(r, "received_at")?,
                })
            })
            .collect()
    }

    async fn return_of(&self, order_id: Uuid, return_id: Uuid) -> StoreResult<Option<Return>> {
        Ok(self.returns(order_id).await?.into_iter().find(|r| r.id == return_id))
    }
}

fn picked_quantity(picked: &[LineQuantity], line_id: Uuid) -> i64 {
    picked.iter().filter(|p| p.line_id == line_id).map(|p| p.quantity).sum()
}
