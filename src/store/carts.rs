//! Carts and their lines. A cart stores only what the shopper chose (variant and
//! quantity); every price is read from the catalog whenever the cart is shown or
//! checked out, never stored from the client.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use super::read_batches::BatchedRead;
use super::rows::{id, int, json, opt_id, opt_int, opt_text, text};
use super::{Dialect, SqlBuilder, Store, StoreError, StoreResult, new_id, now};
use crate::domain::catalog::ProductStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartStatus {
    Open,
    CheckedOut,
    Merged,
}

#[derive(Debug, Clone)]
pub struct CartRecord {
    pub id: Uuid,
    pub customer_id: Option<Uuid>,
    pub token_hash: Option<String>,
    pub currency: String,
    pub status: CartStatus,
    pub expires_at: String,
    /// Changes with every line change; checkout closes the cart only as it priced it.
    pub updated_at: String,
}

/// A cart line with what the catalog says about it now.
#[derive(Debug, Clone)]
pub struct CartLine {
    pub id: Uuid,
    pub variant_id: Uuid,
    pub quantity: i64,
    pub sku: String,
    pub title: String,
    pub product_id: Uuid,
    pub product_status: ProductStatus,
    pub options: BTreeMap<String, String>,
    /// Price in the cart's currency; `None` when the variant has none.
    pub unit_price: Option<i64>,
    pub weight_grams: i64,
}

/// A variant as a cart sees it when adding it.
pub struct Purchasable {
    pub variant_id: Uuid,
    pub product_status: ProductStatus,
}

fn cart_row(r: &sqlx::any::AnyRow) -> StoreResult<CartRecord> {
    let status = match text(r, "status")?.as_str() {
        "open" => CartStatus::Open,
        "checked_out" => CartStatus::CheckedOut,
        "merged" => CartStatus::Merged,
        other => return Err(StoreError::Corrupt(format!("cart status {other}"))),
    };
    Ok(CartRecord {
        id: id(r, "id")?,
        customer_id: opt_id(r, "customer_id")?,
        token_hash: opt_text(r, "token_hash")?,
        currency: text(r, "currency")?,
        status,
        expires_at: text(r, "expires_at")?,
        updated_at: text(r, "updated_at")?,
    })
}

#[derive(Debug, Clone, Default)]
pub struct CheckoutProbe {
    pub cart: Option<CartRecord>,
    pub lines: Vec<ProbeLine>,
    pub key_used: bool,
}

#[derive(Debug, Clone)]
pub struct ProbeLine {
    pub variant_id: Uuid,
    pub sku: String,
    pub quantity: i64,
}

/// A checkout probe asked for: the cart, and the idempotency key in its scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeKey {
    pub cart_id: Uuid,
    pub scope: String,
    pub key: String,
}

/// Checkout probes of many carts in two statements: the carts with their lines,
/// and the keys used in their scopes.
pub struct CheckoutProbes;

impl BatchedRead for CheckoutProbes {
    type Key = ProbeKey;
    type Value = Arc<CheckoutProbe>;

    async fn read(store: &Store, keys: &[ProbeKey]) -> StoreResult<HashMap<ProbeKey, Arc<CheckoutProbe>>> {
        let q = checkout_probe_sql(store.dialect, keys.iter().map(|k| k.cart_id.to_string()).collect());
        let rows = q.build().fetch_all(&store.pool).await?;
        let mut carts: HashMap<Uuid, CheckoutProbe> = HashMap::new();
        for r in &rows {
            let cart = cart_row(r)?;
            let probe = carts.entry(cart.id).or_insert_with(|| CheckoutProbe { cart: Some(cart), ..CheckoutProbe::default() });
            if let Some(variant_id) = opt_id(r, "variant_id")? {
                probe.lines.push(ProbeLine { variant_id, sku: text(r, "sku")?, quantity: int(r, "quantity")? });
            }
        }
        // The exact (scope, key) pairs asked, not every key ever used on these carts.
        let mut q = SqlBuilder::new("SELECT scope, idem_key FROM idempotency_keys WHERE (scope, idem_key) IN (VALUES ");
        q.bind_rows(keys.iter().map(|k| vec![k.scope.as_str().into(), k.key.as_str().into()])).push(")");
        let used: HashSet<(String, String)> = q
            .build()
            .fetch_all(&store.pool)
            .await?
            .iter()
            .map(|r| Ok((text(r, "scope")?, text(r, "idem_key")?)))
            .collect::<StoreResult<_>>()?;
        Ok(keys
            .iter()
            .map(|k| {
                let mut probe = carts.get(&k.cart_id).cloned().unwrap_or_default();
                probe.key_used = used.contains(&(k.scope.clone(), k.key.clone()));
                (k.clone(), Arc::new(probe))
            })
            .collect())
    }
}

// The two reads of checkout's storm look up each cart's lines through the
// (cart_id, variant_id) index, whatever PostgreSQL's statistics say. Carts filled in
// the minutes before a sale have none yet, and without them the planner joins a
// list of carts by scanning every cart line of the shop, once per batch. On
// PostgreSQL each cart's lines are therefore read by a lateral subquery (`OFFSET 0`
// keeps it from being flattened back into that join); SQLite looks them up through
// the index as it is. The carts are one array parameter on PostgreSQL
// (`SqlBuilder::bind_in`), so each read is one statement text at every batch size.

/// The checkout probe of `carts`: each cart (absent when it does not exist) with
/// its lines' variants and quantities, lines in order.
pub fn checkout_probe_sql(dialect: Dialect, carts: BTreeSet<String>) -> SqlBuilder {
    let mut q = SqlBuilder::new(match dialect {
        Dialect::Postgres => {
            "SELECT c.id, c.customer_id, c.token_hash, c.currency, c.status, c.expires_at, c.updated_at,
                    ci.variant_id, ci.sku, ci.quantity
             FROM carts c
             LEFT JOIN LATERAL (SELECT i.id, i.variant_id, v.sku, i.quantity FROM cart_items i
                JOIN variants v ON v.id = i.variant_id WHERE i.cart_id = c.id OFFSET 0) ci ON true"
        }
        Dialect::Sqlite => {
            "SELECT c.id, c.customer_id, c.token_hash, c.currency, c.status, c.expires_at, c.updated_at,
                    ci.variant_id, v.sku, ci.quantity
             FROM carts c
             LEFT JOIN cart_items ci ON ci.cart_id = c.id
             LEFT JOIN variants v ON v.id = ci.variant_id"
        }
    });
    q.push(" WHERE c.id").bind_in(dialect, carts).push(" ORDER BY c.id, ci.id");
    q
}

/// The lines of `carts` with their variants, products and prices in `currencies`
/// (a line once per price, or once unpriced), by cart and line.
pub fn cart_lines_sql(dialect: Dialect, currencies: BTreeSet<&str>, carts: BTreeSet<String>) -> SqlBuilder {
    let mut q = SqlBuilder::new(match dialect {
        Dialect::Postgres => "SELECT ci.* FROM carts c CROSS JOIN LATERAL (SELECT ",
        Dialect::Sqlite => "SELECT ",
    });
    q.push(
        "i.cart_id, i.id, i.variant_id, i.quantity, v.sku, v.options, v.weight_grams, p.id AS product_id,
                p.title, p.status, vp.currency, vp.amount_minor
         FROM cart_items i
         JOIN variants v ON v.id = i.variant_id
         JOIN products p ON p.id = v.product_id
         LEFT JOIN variant_prices vp ON vp.variant_id = v.id AND vp.currency",
    );
    q.bind_in(dialect, currencies.into_iter().map(str::to_owned));
    q.push(match dialect {
        Dialect::Postgres => " WHERE i.cart_id = c.id OFFSET 0) ci WHERE c.id",
        Dialect::Sqlite => " WHERE i.cart_id",
    });
    q.bind_in(dialect, carts).push(match dialect {
        Dialect::Postgres => " ORDER BY ci.cart_id, ci.id",
        Dialect::Sqlite => " ORDER BY i.cart_id, i.id",
    });
    q
}

/// A cart line with its price in each currency asked.
type PricedLine = (CartLine, BTreeMap<String, i64>);

/// Cart lines of many carts, each priced in the currency asked, in one statement.
pub struct CartLines;

impl BatchedRead for CartLines {
    type Key = (Uuid, String);
    type Value = Vec<CartLine>;

    async fn read(store: &Store, keys: &[(Uuid, String)]) -> StoreResult<HashMap<(Uuid, String), Vec<CartLine>>> {
        let currencies: BTreeSet<&str> = keys.iter().map(|(_, c)| c.as_str()).collect();
        let q = cart_lines_sql(store.dialect, currencies, keys.iter().map(|(c, _)| c.to_string()).collect());
        // A line comes once per currency it is priced in among those asked (or
        // once unpriced): each key takes its currency's price.
        let mut by_cart: HashMap<Uuid, Vec<PricedLine>> = HashMap::new();
        for r in &q.build().fetch_all(&store.pool).await? {
            let lines = by_cart.entry(id(r, "cart_id")?).or_default();
            let line_id = id(r, "id")?;
            if lines.last().is_none_or(|(l, _)| l.id != line_id) {
                let status = text(r, "status")?;
                let line = CartLine {
                    id: line_id,
                    variant_id: id(r, "variant_id")?,
                    quantity: int(r, "quantity")?,
                    sku: text(r, "sku")?,
                    title: text(r, "title")?,
                    product_id: id(r, "product_id")?,
                    product_status: ProductStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("product status {status}")))?,
                    options: json(r, "options")?,
                    unit_price: None,
                    weight_grams: opt_int(r, "weight_grams")?.unwrap_or(0),
                };
                lines.push((line, BTreeMap::new()));
            }
            if let (Some(currency), Some(amount), Some((_, prices))) =
                (opt_text(r, "currency")?, opt_int(r, "amount_minor")?, lines.last_mut())
            {
                prices.insert(currency, amount);
            }
        }
        Ok(keys
            .iter()
            .map(|(cart, currency)| {
                let lines = by_cart.get(cart).map_or_else(Vec::new, |lines| {
                    lines.iter().map(|(l, prices)| CartLine { unit_price: prices.get(currency).copied(), ..l.clone() }).collect()
                });
                ((*cart, currency.clone()), lines)
            })
            .collect())
    }
}

const SELECT_CART: &str = "SELECT id, customer_id, token_hash, currency, status, expires_at, updated_at FROM carts";

impl Store {
    pub async fn create_cart(
        &self,
        customer_id: Option<Uuid>,
        token_hash: Option<&str>,
        currency: &str,
        expires_at: &str,
    ) -> StoreResult<CartRecord> {
        let cart_id = new_id();
        let ts = now();
        let mut tx = self.begin_relaxed().await?;
        sqlx::query(
            "INSERT INTO carts (id, customer_id, token_hash, currency, status, created_at, updated_at, expires_at)
             VALUES ($1, $2, $3, $4, 'open', $5, $5, $6)",
        )
        .bind(cart_id.to_string())
        .bind(customer_id.map(|c| c.to_string()))
        .bind(token_hash)
        .bind(currency)
        .bind(ts.as_str())
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(CartRecord {
            id: cart_id,
            customer_id,
            token_hash: token_hash.map(str::to_owned),
            currency: currency.to_owned(),
            status: CartStatus::Open,
            expires_at: expires_at.to_owned(),
            updated_at: ts,
        })
    }

    pub async fn cart(&self, cart_id: Uuid) -> StoreResult<Option<CartRecord>> {
        let mut q = super::SqlBuilder::new(SELECT_CART);
        q.push(" WHERE id = ").bind(cart_id.to_string());
        q.build().fetch_optional(&self.pool).await?.as_ref().map(cart_row).transpose()
    }

    /// The customer's newest open cart.
    pub async fn open_cart_of(&self, customer_id: Uuid) -> StoreResult<Option<CartRecord>> {
        let mut q = super::SqlBuilder::new(SELECT_CART);
        q.push(" WHERE customer_id = ").bind(customer_id.to_string()).push(" AND status = 'open' ORDER BY id DESC LIMIT 1");
        q.build().fetch_optional(&self.pool).await?.as_ref().map(cart_row).transpose()
    }

    /// What checkout needs to know first about a cart: whose it is, its lines'
    /// variants, and whether this idempotency key was used on it. Concurrent
    /// checkouts read theirs together ([`CheckoutProbes`]).
    pub async fn checkout_probe(&self, cart_id: Uuid, scope: &str, key: &str) -> StoreResult<Arc<CheckoutProbe>> {
        let asked = ProbeKey { cart_id, scope: scope.to_owned(), key: key.to_owned() };
        Ok(self.reads.probes.load(self, asked).await?.unwrap_or_default())
    }

    /// The cart's lines with what the catalog says about them now, priced in
    /// the cart's currency. Concurrent requests read theirs together ([`CartLines`]).
    pub async fn cart_lines(&self, cart: &CartRecord) -> StoreResult<Vec<CartLine>> {
        Ok(self.reads.cart_lines.load(self, (cart.id, cart.currency.clone())).await?.unwrap_or_default())
    }

    /// A variant by id or SKU, with its product's status. Given both, the id
    /// decides.
    pub async fn purchasable(&self, variant_id: Option<Uuid>, sku: Option<&str>) -> StoreResult<Option<Purchasable>> {
        // A statement per key rather than `v.id = $1 OR v.sku = $2`: PostgreSQL
        // planned that one afresh on every call (the plan for the one key given
        // always beat the generic plan), ~9× its execution time on every cart add.
        const SELECT: &str = "SELECT v.id, p.status FROM variants v JOIN products p ON p.id = v.product_id WHERE ";
        let mut q = SqlBuilder::new(SELECT);
        match (variant_id, sku) {
            (Some(variant_id), _) => q.push("v.id = ").bind(variant_id.to_string()),
            (None, Some(sku)) => q.push("v.sku = ").bind(sku),
            (None, None) => return Ok(None),
        };
        let row = q.build().fetch_optional(&self.pool).await?;
        row.map(|r| {
            let status = text(&r, "status")?;
            Ok(Purchasable {
                variant_id: id(&r, "id")?,
                product_status: ProductStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("product status {status}")))?,
            })
        })
        .transpose()
    }

    /// Adds `quantity` of a variant (to an existing line if there is one), in one
    /// statement, so two concurrent adds both count. Returns the new line quantity,
    /// or `Err(current)` when it would exceed `max`.
    pub async fn add_cart_item(&self, cart_id: Uuid, variant_id: Uuid, quantity: i64, max: i64) -> StoreResult<Result<i64, i64>> {
        let mut tx = self.begin_relaxed().await?;
        let row = sqlx::query(
            "INSERT INTO cart_items (id, cart_id, variant_id, quantity, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (cart_id, variant_id) DO UPDATE SET quantity = cart_items.quantity + excluded.quantity
             WHERE cart_items.quantity + excluded.quantity <= $6
             RETURNING quantity",
        )
        .bind(new_id().to_string())
        .bind(cart_id.to_string())
        .bind(variant_id.to_string())
        .bind(quantity)
        .bind(now())
        .bind(max)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from_db)?;
        let Some(row) = row else {
            let current = sqlx::query("SELECT quantity FROM cart_items WHERE cart_id = $1 AND variant_id = $2")
                .bind(cart_id.to_string())
                .bind(variant_id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| int(&r, "quantity"))
                .transpose()?
                .unwrap_or(0);
            return Ok(Err(current));
        };
        touch(&mut tx, cart_id).await?;
        tx.commit().await?;
        Ok(Ok(int(&row, "quantity")?))
    }

    /// Sets a line's quantity; false when the line is not in this cart.
    pub async fn set_cart_item(&self, cart_id: Uuid, item_id: Uuid, quantity: i64) -> StoreResult<bool> {
        let mut tx = self.begin_relaxed().await?;
        let done = sqlx::query("UPDATE cart_items SET quantity = $1 WHERE id = $2 AND cart_id = $3")
            .bind(quantity)
            .bind(item_id.to_string())
            .bind(cart_id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        touch(&mut tx, cart_id).await?;
        tx.commit().await?;
        Ok(done == 1)
    }

    pub async fn remove_cart_item(&self, cart_id: Uuid, item_id: Uuid) -> StoreResult<bool> {
        let mut tx = self.begin_relaxed().await?;
        let done = sqlx::query("DELETE FROM cart_items WHERE id = $1 AND cart_id = $2")
            .bind(item_id.to_string())
            .bind(cart_id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        touch(&mut tx, cart_id).await?;
        tx.commit().await?;
        Ok(done == 1)
    }

    /// Moves a guest cart's lines into the customer's open cart (quantities add up
    /// to `max` per line), or hands the guest cart to the customer when they have
    /// none. Returns the customer's cart id.
    pub async fn merge_guest_cart(&self, guest: Uuid, customer_id: Uuid, max: i64) -> StoreResult<Option<Uuid>> {
        let mut tx = self.begin_relaxed().await?;
        // Claim the guest cart first: a cart checked out (or merged by another
        // login) at this moment is left alone.
        let claimed = sqlx::query("UPDATE carts SET updated_at = $1 WHERE id = $2 AND status = 'open' AND customer_id IS NULL")
            .bind(now())
            .bind(guest.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            return Ok(None);
        }
        let target = sqlx::query("SELECT id FROM carts WHERE customer_id = $1 AND status = 'open' ORDER BY id DESC LIMIT 1")
            .bind(customer_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| id(&r, "id"))
            .transpose()?;
        let Some(target) = target.filter(|t| *t != guest) else {
            sqlx::query("UPDATE carts SET customer_id = $1, token_hash = NULL, updated_at = $2 WHERE id = $3")
                .bind(customer_id.to_string())
                .bind(now())
                .bind(guest.to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Some(guest));
        };
        let lines = sqlx::query("SELECT variant_id, quantity FROM cart_items WHERE cart_id = $1")
            .bind(guest.to_string())
            .fetch_all(&mut *tx)
            .await?;
        for l in &lines {
            let (variant, quantity) = (text(l, "variant_id")?, int(l, "quantity")?);
            let existing = sqlx::query("SELECT quantity FROM cart_items WHERE cart_id = $1 AND variant_id = $2")
                .bind(target.to_string())
                .bind(variant.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| int(&r, "quantity"))
                .transpose()?;
            match existing {
                Some(q) => {
                    sqlx::query("UPDATE cart_items SET quantity = $1 WHERE cart_id = $2 AND variant_id = $3")
                        .bind((q + quantity).min(max))
                        .bind(target.to_string())
                        .bind(variant.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO cart_items (id, cart_id, variant_id, quantity, created_at) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(new_id().to_string())
                    .bind(target.to_string())
                    .bind(variant.as_str())
                    .bind(quantity.min(max))
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        sqlx::query("UPDATE carts SET status = 'merged', updated_at = $1 WHERE id = $2")
            .bind(now())
            .bind(guest.to_string())
            .execute(&mut *tx)
            .await?;
        touch(&mut tx, target).await?;
        tx.commit().await?;
        Ok(Some(target))
    }
}

async fn touch(tx: &mut super::Tx, cart_id: Uuid) -> StoreResult<()> {
    sqlx::query("UPDATE carts SET updated_at = $1 WHERE id = $2")
        .bind(now())
        .bind(cart_id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
