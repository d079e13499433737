//! After the run, the shop's own books, read back through the admin API, must
//! agree with what the buyers were told: as many orders as successful checkout
//! answers, every answered order present, no variant sold past its stock, and a
//! stock ledger that reconciles. Stock is judged by `on_hand − reserved` (what is
//! still available), never by `on_hand` alone, so the check holds whether a paid
//! reservation has already become a decrement of `on_hand` or not yet.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use super::admin::Admin;
use super::setup::Stocked;
use super::stats::AnsweredOrder;
use super::{Failure, FailureKind};

#[derive(Clone, Debug, Serialize)]
pub struct Invariant {
    pub name: &'static str,
    pub holds: bool,
    pub detail: String,
}

/// What the run did, to compare with the shop.
pub struct Books {
    /// Every checkout of the run used this address, so the shop's orders for it are this run's.
    pub email: String,
    pub stocked: Vec<Stocked>,
    pub answered: Vec<AnsweredOrder>,
}

/// An order of this run as the admin API shows it.
#[derive(Debug, Clone)]
pub struct ShopOrder {
    pub id: String,
    pub status: String,
    /// (SKU, quantity)
    pub lines: Vec<(String, i64)>,
}

#[derive(Debug, Clone)]
pub struct Level {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
}

/// The shop's side of the books.
pub struct Shop {
    pub orders: Vec<ShopOrder>,
    pub levels: Vec<Level>,
    pub ledger_rows: i64,
    pub ledger_discrepancies: usize,
}

/// Statuses whose stock went back on the shelf.
const RELEASED: [&str; 3] = ["payment_failed", "expired", "cancelled"];

/// How many order pages are read at once.
const PARALLEL_READS: usize = 8;

pub async fn check(admin: &Admin, books: &Books) -> Result<Vec<Invariant>, Failure> {
    Ok(evaluate(books, &read_shop(admin, books).await?))
}

pub async fn read_shop(admin: &Admin, books: &Books) -> Result<Shop, Failure> {
    let failed = |what: &'static str| move |e: super::admin::AdminError| e.during(FailureKind::Check, what);
    let email = serde_urlencoded::to_string([("email", &books.email)]).unwrap_or_default();
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/admin/orders?{email}&limit=100");
        if let Some(c) = &cursor {
            path.push('&');
            path.push_str(&serde_urlencoded::to_string([("cursor", c)]).unwrap_or_default());
        }
        let page = admin.get(&path).await.map_err(failed("listing this run's orders"))?;
        ids.extend(page["items"].as_array().into_iter().flatten().filter_map(|o| o["id"].as_str().map(str::to_owned)));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut orders = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(PARALLEL_READS) {
        let reads = chunk.iter().map(|id| async move { admin.get(&format!("/v1/admin/orders/{id}")).await });
        for detail in futures_util::future::join_all(reads).await {
            orders.push(shop_order(&detail.map_err(failed("reading an order of this run"))?));
        }
    }
    let mut levels = Vec::with_capacity(books.stocked.len());
    for s in &books.stocked {
        let level = admin.get(&format!("/v1/admin/inventory/{}", s.sku)).await.map_err(failed("reading stock levels"))?;
        let n = |k: &str| level[k].as_i64().unwrap_or(i64::MIN);
        levels.push(Level { sku: s.sku.clone(), on_hand: n("on_hand"), reserved: n("reserved") });
    }
    let recon = admin.get("/v1/admin/inventory/reconciliation").await.map_err(failed("reconciling the stock ledger"))?;
    Ok(Shop {
        orders,
        levels,
        ledger_rows: recon["checked"].as_i64().unwrap_or(0),
        ledger_discrepancies: recon["discrepancies"].as_array().map_or(0, Vec::len),
    })
}

fn shop_order(v: &Value) -> ShopOrder {
    let lines = v["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| (l["sku"].as_str().unwrap_or_default().to_owned(), l["quantity"].as_i64().unwrap_or(0)))
        .collect();
    ShopOrder {
        id: v["id"].as_str().unwrap_or_default().to_owned(),
        status: v["status"].as_str().unwrap_or_default().to_owned(),
        lines,
    }
}

/// Compares the books; pure, so each rule is unit-tested.
pub fn evaluate(books: &Books, shop: &Shop) -> Vec<Invariant> {
    let listed: HashSet<&str> = shop.orders.iter().map(|o| o.id.as_str()).collect();
    let answered: HashSet<&str> = books.answered.iter().map(|o| o.id.as_str()).collect();
    let unanswered = listed.difference(&answered).count();
    let mut created = format!("{} orders for {}, {} successful checkout answers", listed.len(), books.email, answered.len());
    if unanswered > 0 {
        created += &format!(
            "; {unanswered} order(s) exist whose checkout was not answered with success (timed out or refused on the way back?)"
        );
    }
    let lost: Vec<&str> = books.answered.iter().map(|o| o.id.as_str()).filter(|id| !listed.contains(id)).collect();

    let mut units: HashMap<&str, i64> = HashMap::new();
    let mut live_orders = 0;
    for o in shop.orders.iter().filter(|o| !RELEASED.contains(&o.status.as_str())) {
        live_orders += 1;
        for (sku, q) in &o.lines {
            *units.entry(sku.as_str()).or_default() += q;
        }
    }
    let levels: HashMap<&str, &Level> = shop.levels.iter().map(|l| (l.sku.as_str(), l)).collect();
    let mut oversold = Vec::new();
    let mut taken = 0;
    for s in &books.stocked {
        let in_orders = units.get(s.sku.as_str()).copied().unwrap_or(0);
        taken += in_orders;
        let Some(l) = levels.get(s.sku.as_str()) else {
            oversold.push(format!("{}: no stock level", s.sku));
            continue;
        };
        let available = l.on_hand - l.reserved;
        if l.reserved < 0 || available < 0 || s.initial - available != in_orders {
            oversold.push(format!(
                "{}: stocked {}, now available {} (on hand {}, reserved {}), units in this run's orders {}",
                s.sku, s.initial, available, l.on_hand, l.reserved, in_orders
            ));
        }
    }

    vec![
        Invariant {
            name: "orders created = successful answers",
            holds: listed.len() == answered.len() && unanswered == 0,
            detail: created,
        },
        Invariant {
            name: "no order lost",
            holds: lost.is_empty(),
            detail: if lost.is_empty() {
                format!("all {} answered orders found", answered.len())
            } else {
                format!("{} answered order(s) not found: {}", lost.len(), sample(&lost))
            },
        },
        Invariant {
            name: "nothing oversold",
            holds: oversold.is_empty(),
            detail: if oversold.is_empty() {
                format!(
                    "{} variant(s): {taken} unit(s) in {live_orders} live order(s) = stock taken, none below zero",
                    books.stocked.len()
                )
            } else {
                format!("{} variant(s) do not add up: {}", oversold.len(), sample(&oversold))
            },
        },
        Invariant {
            name: "stock ledger reconciles",
            holds: shop.ledger_discrepancies == 0,
            detail: format!("{} of {} stock rows differ from their ledger", shop.ledger_discrepancies, shop.ledger_rows),
        },
    ]
}

fn sample<S: AsRef<str>>(items: &[S]) -> String {
    let shown: Vec<&str> = items.iter().take(5).map(AsRef::as_ref).collect();
    let more = if items.len() > 5 { format!(" and {} more", items.len() - 5) } else { String::new() };
    format!("{}{more}", shown.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(id: &str) -> AnsweredOrder {
        AnsweredOrder { id: id.into(), variant: 0, step: 0, at: time::OffsetDateTime::now_utc() }
    }

    fn order(id: &str, status: &str, sku: &str) -> ShopOrder {
        ShopOrder { id: id.into(), status: status.into(), lines: vec![(sku.into(), 1)] }
    }

    /// Two variants of 5; orders a and b for A, c for B; all answered.
    fn balanced() -> (Books, Shop) {
        let books = Books {
            email: "load+r@example.com".into(),
            stocked: vec![Stocked { sku: "A".into(), initial: 5 }, Stocked { sku: "B".into(), initial: 5 }],
            answered: vec![answered("a"), answered("b"), answered("c")],
        };
        let shop = Shop {
            orders: vec![order("a", "paid", "A"), order("b", "paid", "A"), order("c", "pending_payment", "B")],
            // A's two units already taken off on hand, B's still reserved: both count.
            levels: vec![Level { sku: "A".into(), on_hand: 3, reserved: 0 }, Level { sku: "B".into(), on_hand: 5, reserved: 1 }],
            ledger_rows: 2,
            ledger_discrepancies: 0,
        };
        (books, shop)
    }

    fn broken(books: &Books, shop: &Shop) -> Vec<&'static str> {
        evaluate(books, shop).into_iter().filter(|i| !i.holds).map(|i| i.name).collect()
    }

    #[test]
    fn books_that_add_up_pass_every_invariant() {
        let (books, shop) = balanced();
        assert!(broken(&books, &shop).is_empty(), "{:?}", evaluate(&books, &shop));
        assert!(evaluate(&books, &shop)[2].detail.contains("3 unit(s) in 3 live order(s)"));
    }

    #[test]
    fn an_answered_order_missing_from_the_shop_is_lost() {
        let (books, mut shop) = balanced();
        shop.orders.retain(|o| o.id != "c");
        shop.levels[1].reserved = 0;
        assert_eq!(broken(&books, &shop), ["orders created = successful answers", "no order lost"]);
        assert!(evaluate(&books, &shop)[1].detail.contains(": c"));
    }

    #[test]
    fn an_order_nobody_was_told_about_breaks_the_count() {
        let (books, mut shop) = balanced();
        shop.orders.push(order("d", "paid", "B"));
        shop.levels[1].reserved = 2;
        assert_eq!(broken(&books, &shop), ["orders created = successful answers"]);
    }

    #[test]
    fn stock_gone_without_an_order_or_below_zero_is_oversold() {
        let (books, mut shop) = balanced();
        shop.levels[0].on_hand = 2;
        assert_eq!(broken(&books, &shop), ["nothing oversold"]);
        let (books, mut shop) = balanced();
        shop.levels[1].reserved = 6;
        assert!(evaluate(&books, &shop)[2].detail.contains("available -1"));
    }

    #[test]
    fn released_orders_hold_no_stock() {
        let (books, mut shop) = balanced();
        shop.orders[2].status = "cancelled".into();
        assert_eq!(broken(&books, &shop), ["nothing oversold"]);
        shop.levels[1].reserved = 0;
        assert!(broken(&books, &shop).is_empty());
    }

    #[test]
    fn a_ledger_discrepancy_is_reported() {
        let (books, mut shop) = balanced();
        shop.ledger_discrepancies = 1;
        assert_eq!(broken(&books, &shop), ["stock ledger reconciles"]);
    }
}
