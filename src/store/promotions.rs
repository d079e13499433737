//! Promotions, their codes, the codes on carts, and the usage counters checkout
//! takes (`placement`) and order cancellations give back (`orders`).
//!
//! `promotions.uses` counts the live redemptions of a promotion with a
//! `usage_limit`, and is only kept for those: a promotion without one is never
//! locked by checkout, so an automatic sale for everyone adds no hot row. Every
//! staff update recounts it from `order_discounts` under the row's lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use super::audit::{self, Actor, Change};
use super::read_batches::BatchedRead;
use super::rows::{flag, id, int, json, opt_id, opt_int, opt_text, text};
use super::{Dialect, SqlBuilder, Store, StoreError, StoreResult, Tx, format_time, new_id, now};
use crate::domain::promotions::evaluate::Reason;
use crate::domain::promotions::rules::{Promotion, PromotionRules};
use crate::domain::promotions::usage::{Claim, Counter, Usage};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PromotionRecord {
    pub id: Uuid,
    pub rules: PromotionRules,
    /// Orders that hold a redemption now (cancelled and expired orders gave theirs back).
    pub redemptions: i64,
    /// Codes that redeem it.
    pub codes: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PromotionCode {
    pub code: String,
    pub single_use: bool,
    /// Orders that redeemed this code and kept it.
    pub redemptions: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Redemption {
    pub order_id: Uuid,
    pub order_number: String,
    pub order_status: String,
    pub customer_id: Option<Uuid>,
    pub code: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub created_at: String,
    /// When the order was cancelled or expired and gave the use back.
    pub released_at: Option<String>,
}

/// A promotion a cart is offered, with what the counters say about it.
#[derive(Debug, Clone)]
pub struct StoredOffer {
    pub promotion: Promotion,
    /// The rules' version (`updated_at`), checked again at placement.
    pub version: String,
    pub code: Option<String>,
    pub single_use: bool,
    pub blocked: Option<Reason>,
}

/// A discount an order is placed with.
#[derive(Debug, Clone)]
pub struct NewDiscount {
    pub promotion_id: Uuid,
    pub code: Option<String>,
    pub name: String,
    /// `order`, `lines` or `shipping`.
    pub target: &'static str,
    pub amount: i64,
    /// Has a usage or per-customer limit (or is for first orders): checkout
    /// batches such orders together (`order_batches`).
    pub limited: bool,
    pub single_use: bool,
    /// The version of the rules the order was priced with.
    pub version: String,
}

/// How long an instance keeps the list of automatic promotions. Every cart view
/// and checkout needs it; reading and parsing it each time cost a busy shop a
/// quarter of its checkout throughput (docs/BENCHMARKS.md §7). An instance forgets
/// it on its own promotion writes; other instances see a staff change within this
/// long. Windows (`starts_at`/`ends_at`) are still judged at the moment of pricing,
/// and usage limits under the lock at placement.
pub const AUTOMATIC_TTL: Duration = Duration::from_secs(1);

/// The automatic promotions last read, with when. A write bumps the generation,
/// so a read that started before it does not keep its stale list.
#[derive(Default)]
pub struct AutomaticPromotions(Mutex<Kept>);

/// The generation, and the list read under it with when.
type Kept = (u64, Option<(Instant, Arc<Vec<StoredOffer>>)>);

impl AutomaticPromotions {
    /// The list if fresh, else the generation a new read must be kept under.
    fn fresh(&self) -> Result<Arc<Vec<StoredOffer>>, u64> {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &held.1 {
            Some((at, offers)) if at.elapsed() < AUTOMATIC_TTL => Ok(offers.clone()),
            _ => Err(held.0),
        }
    }

    fn keep(&self, generation: u64, offers: Arc<Vec<StoredOffer>>) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if held.0 == generation {
            held.1 = Some((Instant::now(), offers));
        }
    }

    fn forget(&self) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *held = (held.0 + 1, None);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromotionWriteError {
    #[error("promotion not found")]
    NotFound,
    #[error("the usage limit is below the {0} redemptions already made")]
    LimitBelowUses(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for PromotionWriteError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

const SELECT_PROMOTION: &str = "SELECT p.id, p.rules, p.created_at, p.updated_at,
        (SELECT COUNT(*) FROM order_discounts d WHERE d.promotion_id = p.id AND d.released_at IS NULL) AS redemptions,
        (SELECT COUNT(*) FROM promotion_codes c WHERE c.promotion_id = p.id) AS codes
     FROM promotions p";

fn promotion_row(r: &sqlx::any::AnyRow) -> StoreResult<PromotionRecord> {
    Ok(PromotionRecord {
        id: id(r, "id")?,
        rules: json(r, "rules")?,
        redemptions: int(r, "redemptions")?,
        codes: int(r, "codes")?,
        created_at: text(r, "created_at")?,
        updated_at: text(r, "updated_at")?,
    })
}

fn rule_columns(rules: &PromotionRules) -> [super::Arg; 9] {
    [
        rules.name.as_str().into(),
        i64::from(rules.automatic).into(),
        i64::from(rules.active).into(),
        super::rows::to_json(rules).into(),
        rules.starts_at.map(format_time).into(),
        rules.ends_at.map(format_time).into(),
        rules.usage_limit.into(),
        rules.per_customer_limit.into(),
        now().into(),
    ]
}

impl Store {
    pub async fn create_promotion(&self, rules: &PromotionRules, actor: &Actor) -> StoreResult<PromotionRecord> {
        let mut tx = self.begin().await?;
        let promotion_id = new_id();
        let mut q = SqlBuilder::new(
            "INSERT INTO promotions (id, name, automatic, active, rules, starts_at, ends_at, usage_limit, per_customer_limit,
                updated_at, created_at) VALUES (",
        );
        q.bind(promotion_id.to_string());
        for arg in rule_columns(rules) {
            q.push(", ").bind(arg);
        }
        q.push(", ").bind(now()).push(")");
        q.build().execute(&mut *tx).await?;
        audit::record(
            &mut tx,
            actor,
            Change {
                action: "promotion.create",
                entity_type: "promotion",
                entity_id: promotion_id,
                before: None,
                after: serde_json::to_value(rules).ok(),
            },
        )
        .await?;
        tx.commit().await?;
        self.automatic_promotions.forget();
        self.promotion(promotion_id).await?.ok_or(StoreError::NotFound("promotion"))
    }

    /// Replaces a promotion's rules. Its usage counter is recounted under its lock,
    /// and a limit below the redemptions already made is refused.
    pub async fn update_promotion(
        &self,
        promotion_id: Uuid,
        rules: &PromotionRules,
        actor: &Actor,
    ) -> Result<PromotionRecord, PromotionWriteError> {
        let mut tx = self.begin().await?;
        let lock = match self.dialect {
            Dialect::Postgres => "SELECT rules FROM promotions WHERE id = $1 FOR UPDATE",
            Dialect::Sqlite => "SELECT rules FROM promotions WHERE id = $1",
        };
        let row = sqlx::query(lock).bind(promotion_id.to_string()).fetch_optional(&mut *tx).await?;
        let Some(row) = row else { return Err(PromotionWriteError::NotFound) };
        let before: serde_json::Value = json(&row, "rules")?;
        let live = int(
            &sqlx::query("SELECT COUNT(*) AS n FROM order_discounts WHERE promotion_id = $1 AND released_at IS NULL")
                .bind(promotion_id.to_string())
                .fetch_one(&mut *tx)
                .await?,
            "n",
        )?;
        if rules.usage_limit.is_some_and(|l| l < live) {
            return Err(PromotionWriteError::LimitBelowUses(live));
        }
        let mut q = SqlBuilder::new("UPDATE promotions SET ");
        let columns = [
            "name = ",
            ", automatic = ",
            ", active = ",
            ", rules = ",
            ", starts_at = ",
            ", ends_at = ",
            ", usage_limit = ",
            ", per_customer_limit = ",
            ", updated_at = ",
        ];
        for (column, arg) in columns.into_iter().zip(rule_columns(rules)) {
            q.push(column).bind(arg);
        }
        q.push(", uses = ").bind(live).push(" WHERE id = ").bind(promotion_id.to_string());
        q.build().execute(&mut *tx).await?;
        audit::record(
            &mut tx,
            actor,
            Change {
                action: "promotion.update",
                entity_type: "promotion",
                entity_id: promotion_id,
                before: Some(before),
                after: serde_json::to_value(rules).ok(),
            },
        )
        .await?;
        tx.commit().await?;
        self.automatic_promotions.forget();
        self.promotion(promotion_id).await?.ok_or(PromotionWriteError::NotFound)
    }

    pub async fn promotion(&self, promotion_id: Uuid) -> StoreResult<Option<PromotionRecord>> {
        let mut q = SqlBuilder::new(SELECT_PROMOTION);
        q.push(" WHERE p.id = ").bind(promotion_id.to_string());
        q.build().fetch_optional(&self.pool).await?.as_ref().map(promotion_row).transpose()
    }

    /// Newest first, keyset-paged by id.
    pub async fn list_promotions(&self, before: Option<Uuid>, limit: i64) -> StoreResult<Vec<PromotionRecord>> {
        let mut q = SqlBuilder::new(SELECT_PROMOTION);
        if let Some(before) = before {
            q.push(" WHERE p.id < ").bind(before.to_string());
        }
        q.push(" ORDER BY p.id DESC LIMIT ").bind(limit);
        q.build().fetch_all(&self.pool).await?.iter().map(promotion_row).collect()
    }

    /// Adds codes to a promotion; codes that exist already (on any promotion) are
    /// skipped. Returns those added.
    pub async fn add_promotion_codes(
        &self,
        promotion_id: Uuid,
        codes: &[String],
        single_use: bool,
        actor: &Actor,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.begin().await?;
        let ts = now();
        let mut added = Vec::with_capacity(codes.len());
        for chunk in codes.chunks(1_000) {
            let mut q = SqlBuilder::new("INSERT INTO promotion_codes (code, promotion_id, single_use, created_at) VALUES ");
            q.bind_rows(chunk.iter().map(|c| {
                vec![c.as_str().into(), promotion_id.to_string().into(), i64::from(single_use).into(), ts.as_str().into()]
            }));
            q.push(" ON CONFLICT (code) DO NOTHING RETURNING code");
            for r in q.build().fetch_all(&mut *tx).await.map_err(StoreError::from_db)? {
                added.push(text(&r, "code")?);
            }
        }
        audit::record(
            &mut tx,
            actor,
            Change {
                action: "promotion.codes_add",
                entity_type: "promotion",
                entity_id: promotion_id,
                before: None,
                after: Some(serde_json::json!({"added": added.len(), "single_use": single_use})),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(added)
    }

    pub async fn promotion_codes(&self, promotion_id: Uuid) -> StoreResult<Vec<PromotionCode>> {
        let rows = sqlx::query(
            "SELECT c.code, c.single_use, c.created_at,
                (SELECT COUNT(*) FROM order_discounts d WHERE d.code = c.code AND d.released_at IS NULL) AS redemptions
             FROM promotion_codes c WHERE c.promotion_id = $1 ORDER BY c.code",
        )
        .bind(promotion_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PromotionCode {
                    code: text(r, "code")?,
                    single_use: flag(r, "single_use")?,
                    redemptions: int(r, "redemptions")?,
                    created_at: text(r, "created_at")?,
                })
            })
            .collect()
    }

    /// The promotion a (normalized) code redeems.
    pub async fn promotion_of_code(&self, code: &str) -> StoreResult<Option<PromotionRecord>> {
        let mut q = SqlBuilder::new(SELECT_PROMOTION);
        q.push(" JOIN promotion_codes pc ON pc.promotion_id = p.id WHERE pc.code = ").bind(code);
        q.build().fetch_optional(&self.pool).await?.as_ref().map(promotion_row).transpose()
    }

    pub async fn cart_codes(&self, cart_id: Uuid) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT code FROM cart_promotions WHERE cart_id = $1 ORDER BY added_at, code")
            .bind(cart_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| text(r, "code")).collect()
    }

    /// Puts a code on an open cart; `false` when it is there already. The cart's
    /// version moves on, so a checkout priced without the code is refused.
    pub async fn add_cart_code(&self, cart_id: Uuid, code: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let added = sqlx::query(
            "INSERT INTO cart_promotions (cart_id, code, added_at) VALUES ($1, $2, $3) ON CONFLICT (cart_id, code) DO NOTHING",
        )
        .bind(cart_id.to_string())
        .bind(code)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_db)?
        .rows_affected()
            == 1;
        touch_cart(&mut tx, cart_id).await?;
        tx.commit().await?;
        Ok(added)
    }

    pub async fn remove_cart_code(&self, cart_id: Uuid, code: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let removed = sqlx::query("DELETE FROM cart_promotions WHERE cart_id = $1 AND code = $2")
            .bind(cart_id.to_string())
            .bind(code)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        touch_cart(&mut tx, cart_id).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// What a cart is offered now: the automatic promotions running at `at`, then
    /// the cart's codes in the order they were applied, each with what its
    /// counters say (`customer`: the buyer's key for per-customer limits, when known).
    pub async fn promotion_offers(&self, cart_id: Uuid, customer: Option<&str>, at: &str) -> StoreResult<Vec<StoredOffer>> {
        let automatic = match self.automatic_promotions.fresh() {
            Ok(offers) => offers,
            Err(generation) => {
                // Not yet started ones too: the evaluator judges the window when pricing.
                let rows = sqlx::query(
                    "SELECT id, rules, uses, usage_limit, updated_at, CAST(NULL AS TEXT) AS code, CAST(0 AS BIGINT) AS single_use,
                        CAST(0 AS BIGINT) AS code_uses FROM promotions
                     WHERE automatic = 1 AND active = 1 AND (ends_at IS NULL OR ends_at > $1) ORDER BY id",
                )
                .bind(at)
                .fetch_all(&self.pool)
                .await?;
                let offers = Arc::new(rows.iter().map(offer_row).collect::<StoreResult<Vec<_>>>()?);
                self.automatic_promotions.keep(generation, offers.clone());
                offers
            }
        };
        let coded = self.reads.coded_offers.load(self, cart_id).await?.unwrap_or_default();
        let mut offers = Vec::with_capacity(automatic.len() + coded.len());
        offers.extend(automatic.iter().cloned());
        offers.extend(coded);
        let per_customer: Vec<String> = offers
            .iter()
            .filter(|o| o.blocked.is_none() && o.promotion.rules.per_customer_limit.is_some())
            .map(|o| o.promotion.id.to_string())
            .collect();
        if let (Some(customer), false) = (customer, per_customer.is_empty()) {
            let mut q = SqlBuilder::new("SELECT promotion_id, COUNT(*) AS n FROM order_discounts WHERE customer_key = ");
            q.bind(customer).push(" AND released_at IS NULL AND promotion_id IN (");
            q.bind_list(per_customer).push(") GROUP BY promotion_id");
            let used: BTreeMap<Uuid, i64> = q
                .build()
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| Ok((id(r, "promotion_id")?, int(r, "n")?)))
                .collect::<StoreResult<_>>()?;
            for o in &mut offers {
                if let (Some(limit), Some(n)) = (o.promotion.rules.per_customer_limit, used.get(&o.promotion.id))
                    && *n >= limit
                    && o.blocked.is_none()
                {
                    o.blocked = Some(Reason::AlreadyUsed);
                }
            }
        }
        Ok(offers)
    }

    /// Of `ids`, the products that exist.
    pub async fn existing_products(&self, ids: &[Uuid]) -> StoreResult<BTreeSet<Uuid>> {
        if ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let mut q = SqlBuilder::new("SELECT id FROM products WHERE id IN (");
        q.bind_list(ids.iter().map(Uuid::to_string)).push(")");
        q.build().fetch_all(&self.pool).await?.iter().map(|r| id(r, "id")).collect()
    }

    /// Each product's categories with all their ancestors.
    pub async fn product_category_branches(&self, products: &[Uuid]) -> StoreResult<BTreeMap<Uuid, Vec<Uuid>>> {
        if products.is_empty() {
            return Ok(BTreeMap::new());
        }
        let parents: BTreeMap<Uuid, Option<Uuid>> = self.categories().await?.into_iter().map(|c| (c.id, c.parent_id)).collect();
        let mut q = SqlBuilder::new("SELECT product_id, category_id FROM product_categories WHERE product_id IN (");
        q.bind_list(products.iter().map(Uuid::to_string)).push(")");
        let mut out: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
        for r in q.build().fetch_all(&self.pool).await? {
            let branch = out.entry(id(&r, "product_id")?).or_default();
            let mut at = Some(id(&r, "category_id")?);
            // The tree's depth is bounded when categories are written; the length bound guards a corrupt cycle.
            while let Some(c) = at.filter(|c| !branch.contains(c) && branch.len() < 64) {
                branch.push(c);
                at = parents.get(&c).copied().flatten();
            }
        }
        Ok(out)
    }

    /// Orders the customer placed that went through or may still (for first-order promotions).
    pub async fn previous_orders(&self, customer_id: Uuid) -> StoreResult<i64> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS n FROM orders WHERE customer_id = $1 AND status NOT IN ('payment_failed', 'expired', 'cancelled')",
        )
        .bind(customer_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        int(&r, "n")
    }

    /// The orders that redeemed a promotion, newest first, keyset-paged.
    pub async fn redemptions(
        &self,
        promotion_id: Uuid,
        before: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<(Uuid, Redemption)>> {
        let mut q = SqlBuilder::new(
            "SELECT d.id, d.order_id, o.number, o.status, o.customer_id, d.code, d.amount, o.currency, d.created_at, d.released_at
             FROM order_discounts d JOIN orders o ON o.id = d.order_id WHERE d.promotion_id = ",
        );
        q.bind(promotion_id.to_string());
        if let Some(before) = before {
            q.push(" AND d.id < ").bind(before.to_string());
        }
        q.push(" ORDER BY d.id DESC LIMIT ").bind(limit);
        q.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    id(r, "id")?,
                    Redemption {
                        order_id: id(r, "order_id")?,
                        order_number: text(r, "number")?,
                        order_status: text(r, "status")?,
                        customer_id: opt_id(r, "customer_id")?,
                        code: opt_text(r, "code")?,
                        amount: int(r, "amount")?,
                        currency: text(r, "currency")?,
                        created_at: text(r, "created_at")?,
                        released_at: opt_text(r, "released_at")?,
                    },
                ))
            })
            .collect()
    }
}

/// The promotions of the codes on many carts, in one statement.
pub struct CodedOffers;

impl BatchedRead for CodedOffers {
    type Key = Uuid;
    type Value = Vec<StoredOffer>;

    async fn read(store: &Store, carts: &[Uuid]) -> StoreResult<HashMap<Uuid, Vec<StoredOffer>>> {
        let mut q = SqlBuilder::new(
            "SELECT cp.cart_id, p.id, p.rules, p.uses, p.usage_limit, p.updated_at, cp.code, pc.single_use, pc.uses AS code_uses
             FROM cart_promotions cp
             JOIN promotion_codes pc ON pc.code = cp.code
             JOIN promotions p ON p.id = pc.promotion_id
             WHERE cp.cart_id IN (",
        );
        q.bind_list(carts.iter().map(Uuid::to_string)).push(") ORDER BY cp.cart_id, cp.added_at, cp.code");
        let mut offers: HashMap<Uuid, Vec<StoredOffer>> = HashMap::new();
        for r in &q.build().fetch_all(&store.pool).await? {
            offers.entry(id(r, "cart_id")?).or_default().push(offer_row(r)?);
        }
        Ok(offers)
    }
}

fn offer_row(r: &sqlx::any::AnyRow) -> StoreResult<StoredOffer> {
    let single_use = flag(r, "single_use")?;
    let uses = int(r, "uses")?;
    let blocked = if opt_int(r, "usage_limit")?.is_some_and(|l| uses >= l) {
        Some(Reason::Exhausted)
    } else if single_use && int(r, "code_uses")? > 0 {
        Some(Reason::AlreadyUsed)
    } else {
        None
    };
    Ok(StoredOffer {
        promotion: Promotion { id: id(r, "id")?, rules: json(r, "rules")? },
        version: text(r, "updated_at")?,
        code: opt_text(r, "code")?,
        single_use,
        blocked,
    })
}

async fn touch_cart(tx: &mut Tx, cart_id: Uuid) -> StoreResult<()> {
    sqlx::query("UPDATE carts SET updated_at = $1 WHERE id = $2")
        .bind(now())
        .bind(cart_id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The usage claims of an order: one per promotion it uses. Which of them
/// count against a limit is decided by the promotion's row as locked at
/// placement, not by what pricing saw.
pub fn claims(discounts: &[NewDiscount], customer: &str) -> Vec<Claim> {
    discounts
        .iter()
        .map(|d| Claim {
            promotion_id: d.promotion_id,
            single_use_code: d.code.clone().filter(|_| d.single_use),
            customer: customer.to_owned(),
            version: d.version.clone(),
        })
        .collect()
}

/// Whether a promotion row's uses must be counted under an exclusive lock.
fn counted(r: &sqlx::any::AnyRow) -> StoreResult<bool> {
    let rules: PromotionRules = json(r, "rules")?;
    Ok(rules.usage_limit.is_some() || rules.per_customer_limit.is_some() || rules.conditions.first_order_only)
}

const LOCK_COLUMNS: &str = "SELECT id, uses, rules, active, starts_at, ends_at, updated_at FROM promotions WHERE id IN (";

/// Locks the promotions `claims` name, after the stock rows (the order every
/// writer takes them in), and reads what the allocation needs. Rows are locked
/// in id order: promotions with a limit (or single-use codes in this batch)
/// exclusively, so concurrent batches count their uses one after the other; the
/// others shared, which blocks nobody but a staff change (which then waits for the
/// orders in flight). A promotion switched off, not started, ended or changed
/// since pricing refuses its orders here.
pub(super) async fn lock_usage(tx: &mut Tx, claims: &[&Claim]) -> StoreResult<Usage> {
    let mut usage = Usage::default();
    let promotions: BTreeSet<String> = claims.iter().map(|c| c.promotion_id.to_string()).collect();
    if promotions.is_empty() {
        return Ok(usage);
    }
    let mut rows = Vec::new();
    if tx.dialect() == Dialect::Postgres {
        let with_codes: BTreeSet<String> =
            claims.iter().filter(|c| c.single_use_code.is_some()).map(|c| c.promotion_id.to_string()).collect();
        let mut q = SqlBuilder::new(LOCK_COLUMNS);
        q.bind_list(promotions.iter().cloned()).push(")");
        let mut exclusive = BTreeSet::new();
        for r in q.build().fetch_all(&mut **tx).await? {
            let id = text(&r, "id")?;
            if counted(&r)? || with_codes.contains(&id) {
                exclusive.insert(id);
            }
        }
        // Runs of ids (in order) that take the same lock: one statement each.
        let mut runs: Vec<(bool, Vec<String>)> = Vec::new();
        for p in &promotions {
            let x = exclusive.contains(p);
            match runs.last_mut() {
                Some((mode, ids)) if *mode == x => ids.push(p.clone()),
                _ => runs.push((x, vec![p.clone()])),
            }
        }
        for (x, ids) in runs {
            let mut q = SqlBuilder::new(LOCK_COLUMNS);
            q.bind_list(ids).push(") ORDER BY id").push(if x { " FOR UPDATE" } else { " FOR SHARE" });
            for r in q.build().fetch_all(&mut **tx).await? {
                if !x && counted(&r)? {
                    // A limit added by staff between the two reads: count under the
                    // exclusive lock after all (two such batches may deadlock; the
                    // database picks one, which is placed again on its own).
                    let mut q = SqlBuilder::new(LOCK_COLUMNS);
                    q.bind(text(&r, "id")?).push(") FOR UPDATE");
                    rows.push(q.build().fetch_one(&mut **tx).await?);
                } else {
                    rows.push(r);
                }
            }
        }
    } else {
        // SQLite: the transaction holds the database's write lock already.
        let mut q = SqlBuilder::new(LOCK_COLUMNS);
        q.bind_list(promotions.iter().cloned()).push(")");
        rows = q.build().fetch_all(&mut **tx).await?;
    }
    let at = now();
    for r in &rows {
        let rules: PromotionRules = json(r, "rules")?;
        let running = flag(r, "active")?
            && opt_text(r, "starts_at")?.is_none_or(|start| start <= at)
            && opt_text(r, "ends_at")?.is_none_or(|end| end > at);
        // A first-order promotion is one use per customer, held here: two
        // concurrent first orders of one customer cannot both take it.
        let per_customer = match (rules.per_customer_limit, rules.conditions.first_order_only) {
            (limit, false) => limit,
            (limit, true) => Some(limit.map_or(1, |l| l.min(1))),
        };
        usage.counters.insert(
            id(r, "id")?,
            Counter {
                uses: int(r, "uses")?,
                usage_limit: rules.usage_limit,
                per_customer_limit: per_customer,
                running,
                version: text(r, "updated_at")?,
            },
        );
    }
    let customers: BTreeSet<&str> = claims.iter().map(|c| c.customer.as_str()).collect();
    let limited: Vec<String> =
        usage.counters.iter().filter(|(_, c)| c.per_customer_limit.is_some()).map(|(id, _)| id.to_string()).collect();
    if !limited.is_empty() {
        let mut q = SqlBuilder::new(
            "SELECT promotion_id, customer_key, COUNT(*) AS n FROM order_discounts WHERE released_at IS NULL AND promotion_id IN (",
        );
        q.bind_list(limited).push(") AND customer_key IN (");
        q.bind_list(customers.iter().map(|c| c.to_string())).push(") GROUP BY promotion_id, customer_key");
        for r in q.build().fetch_all(&mut **tx).await? {
            usage.by_customer.insert((id(&r, "promotion_id")?, text(&r, "customer_key")?), int(&r, "n")?);
        }
    }
    let codes: BTreeSet<String> = claims.iter().filter_map(|c| c.single_use_code.clone()).collect();
    if !codes.is_empty() {
        let mut q = SqlBuilder::new("SELECT code FROM promotion_codes WHERE uses > 0 AND code IN (");
        q.bind_list(codes).push(")");
        for r in q.build().fetch_all(&mut **tx).await? {
            usage.used_codes.insert(text(&r, "code")?);
        }
    }
    Ok(usage)
}

/// Writes the discounts of placed orders and takes their uses of the promotions
/// in `limited` (those with a usage limit, exclusively locked by `lock_usage`).
pub(super) async fn record_discounts(
    tx: &mut Tx,
    orders: &[(Uuid, &str, &[NewDiscount])],
    limited: &BTreeSet<Uuid>,
) -> StoreResult<()> {
    let ts = now();
    let mut taken: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut single_use = Vec::new();
    let mut rows = Vec::new();
    for (order_id, customer, discounts) in orders {
        for d in discounts.iter() {
            if limited.contains(&d.promotion_id) {
                *taken.entry(d.promotion_id).or_insert(0) += 1;
            }
            if let Some(code) = d.code.as_ref().filter(|_| d.single_use) {
                single_use.push(code.clone());
            }
            rows.push(vec![
                new_id().to_string().into(),
                order_id.to_string().into(),
                d.promotion_id.to_string().into(),
                d.code.clone().into(),
                d.name.as_str().into(),
                d.target.into(),
                d.amount.into(),
                (*customer).into(),
                ts.as_str().into(),
            ]);
        }
    }
    for chunk in rows.chunks(1_000) {
        let mut q = SqlBuilder::new(
            "INSERT INTO order_discounts (id, order_id, promotion_id, code, name, target, amount, customer_key, created_at) VALUES ",
        );
        q.bind_rows(chunk.iter().cloned());
        q.build().execute(&mut **tx).await.map_err(StoreError::from_db)?;
    }
    for (promotion_id, n) in taken {
        sqlx::query("UPDATE promotions SET uses = uses + $1 WHERE id = $2")
            .bind(n)
            .bind(promotion_id.to_string())
            .execute(&mut **tx)
            .await
            .map_err(StoreError::from_db)?;
    }
    if !single_use.is_empty() {
        let mut q = SqlBuilder::new("UPDATE promotion_codes SET uses = uses + 1 WHERE code IN (");
        q.bind_list(single_use).push(")");
        q.build().execute(&mut **tx).await.map_err(StoreError::from_db)?;
    }
    Ok(())
}

/// Gives back the uses of an order that did not go through (cancelled, expired,
/// payment failed). Idempotent: each redemption is released once. Counters are
/// updated in id order, the order checkout locks them in.
pub(super) async fn release_discounts(tx: &mut Tx, order_id: Uuid) -> StoreResult<()> {
    if tx.dialect() == Dialect::Postgres {
        // The counters first, so a staff change (which recounts them) cannot
        // slip between this release and its counter update.
        sqlx::query(
            "SELECT id FROM promotions WHERE id IN
                (SELECT promotion_id FROM order_discounts WHERE order_id = $1 AND released_at IS NULL)
             ORDER BY id FOR UPDATE",
        )
        .bind(order_id.to_string())
        .fetch_all(&mut **tx)
        .await?;
    }
    let released = sqlx::query(
        "UPDATE order_discounts SET released_at = $1 WHERE order_id = $2 AND released_at IS NULL RETURNING promotion_id, code",
    )
    .bind(now())
    .bind(order_id.to_string())
    .fetch_all(&mut **tx)
    .await?;
    let mut by_promotion: BTreeMap<String, i64> = BTreeMap::new();
    let mut codes = BTreeSet::new();
    for r in &released {
        *by_promotion.entry(text(r, "promotion_id")?).or_insert(0) += 1;
        if let Some(code) = opt_text(r, "code")? {
            codes.insert(code);
        }
    }
    for (promotion_id, n) in by_promotion {
        sqlx::query("UPDATE promotions SET uses = uses - $1 WHERE id = $2 AND usage_limit IS NOT NULL AND uses >= $1")
            .bind(n)
            .bind(promotion_id)
            .execute(&mut **tx)
            .await?;
    }
    for code in codes {
        sqlx::query("UPDATE promotion_codes SET uses = uses - 1 WHERE code = $1 AND single_use = 1 AND uses > 0")
            .bind(code)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
