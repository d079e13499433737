//! Carts: who may touch one, and what it costs. Every figure is computed here
//! from the catalog, the tax rates and the shipping options at the moment of
//! reading; the client only ever says which variant and how many.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::tokens::{hash_refresh_token, random_token};
use crate::domain::catalog::ProductStatus;
use crate::domain::money::Currency;
use crate::domain::pricing::{self, LineInput, TaxMode};
use crate::domain::shipping;
use crate::error::{ApiError, ApiResult};
use crate::ops::promotions::{CartPromotions, CodeView, DiscountView, PromotionContext};
use crate::store::carts::{CartLine, CartRecord, CartStatus};
use crate::store::{Store, format_time, now};

/// Who is asking: a signed-in customer, and/or the holder of a guest cart token.
#[derive(Debug, Clone, Default)]
pub struct Shopper {
    pub customer_id: Option<Uuid>,
    pub cart_token: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct CartSettings {
    pub max_line_quantity: i64,
    pub cart_ttl_days: i64,
    pub tax_mode: TaxMode,
    pub default_currency: Currency,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CartItemView {
    pub id: Uuid,
    pub variant_id: Uuid,
    pub sku: String,
    pub title: String,
    pub options: std::collections::BTreeMap<String, String>,
    pub quantity: i64,
    /// Current catalog price; absent when the variant has no price in the cart's currency.
    pub unit_price: Option<i64>,
    pub line_total: Option<i64>,
    /// This line's share of the discounts.
    pub discount: i64,
    /// Units available to buy right now, across locations.
    pub available: i64,
    /// Why this line cannot be bought as it is: `out_of_stock`, `insufficient_stock`,
    /// `unavailable` (no longer published) or `no_price`.
    pub problem: Option<&'static str>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CartView {
    pub id: Uuid,
    pub currency: String,
    /// `open`, `checked_out` or `merged`.
    pub status: &'static str,
    pub items: Vec<CartItemView>,
    /// Lines without a problem, as displayed.
    pub subtotal: i64,
    /// Cheapest shipping to `country`; absent without a `country` to quote for.
    pub shipping: Option<i64>,
    pub shipping_option_id: Option<Uuid>,
    /// Everything the promotions take off (lines and shipping).
    pub discount_total: i64,
    /// Each promotion that applies, with its amount.
    pub discounts: Vec<DiscountView>,
    /// The codes on the cart, and why any of them does not apply.
    pub codes: Vec<CodeView>,
    /// Tax for `country` (contained in the prices when `tax_mode` is `inclusive`).
    pub tax: Option<i64>,
    /// `subtotal` + `shipping` − `discount_total` (+ `tax` when prices exclude it).
    pub grand_total: i64,
    pub tax_mode: TaxMode,
    pub expires_at: String,
    /// Only in the answer that created a guest cart: send it back as `X-Cart-Token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_token: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCartInput {
    /// ISO 4217; the shop's default when absent.
    pub currency: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItemInput {
    /// Either `sku` or `variant_id` (given both, `variant_id` decides).
    pub sku: Option<String>,
    pub variant_id: Option<Uuid>,
    pub quantity: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantityInput {
    pub quantity: i64,
}

/// Where to quote shipping and tax for.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    pub country: Option<String>,
    pub region: String,
}

fn check_quantity(q: i64, max: i64) -> ApiResult<()> {
    if !(1..=max).contains(&q) {
        return Err(ApiError::invalid_field("quantity", "out_of_range", format!("quantity must be between 1 and {max}")));
    }
    Ok(())
}

pub async fn create(store: &Store, shopper: &Shopper, input: &NewCartInput, s: &CartSettings) -> ApiResult<CartView> {
    let currency = match &input.currency {
        Some(c) => Currency::parse(c).map_err(|e| ApiError::invalid_field("currency", e.code, e.message))?,
        None => s.default_currency,
    };
    if let Some(customer) = shopper.customer_id
        && let Some(existing) = store.open_cart_of(customer).await?
    {
        return view(store, &existing, &Destination::default(), s, None).await;
    }
    let expires = format_time(time::OffsetDateTime::now_utc() + time::Duration::days(s.cart_ttl_days));
    let (token, hash) = match shopper.customer_id {
        Some(_) => (None, None),
        None => {
            let t = random_token();
            let h = hash_refresh_token(&t);
            (Some(t), Some(h))
        }
    };
    let cart = store.create_cart(shopper.customer_id, hash.as_deref(), currency.as_str(), &expires).await?;
    view(store, &cart, &Destination::default(), s, token).await
}

/// The cart if `shopper` may use it; anyone else gets 404, as if it did not exist.
pub async fn authorize(store: &Store, cart_id: Uuid, shopper: &Shopper) -> ApiResult<CartRecord> {
    owned_by(store.cart(cart_id).await?, shopper)
}

/// The cart, if `shopper` may use it; `404` otherwise, as if it did not exist.
pub fn owned_by(cart: Option<CartRecord>, shopper: &Shopper) -> ApiResult<CartRecord> {
    let cart = cart.ok_or(ApiError::NotFound("cart"))?;
    let allowed = match (cart.customer_id, &cart.token_hash) {
        (Some(owner), _) => shopper.customer_id == Some(owner),
        (None, Some(hash)) => shopper.cart_token.as_deref().is_some_and(|t| &hash_refresh_token(t) == hash),
        (None, None) => false,
    };
    if !allowed {
        return Err(ApiError::NotFound("cart"));
    }
    Ok(cart)
}

/// Like `authorize`, for changes: the cart must also be open and not expired.
pub async fn authorize_open(store: &Store, cart_id: Uuid, shopper: &Shopper) -> ApiResult<CartRecord> {
    let cart = authorize(store, cart_id, shopper).await?;
    if cart.status != CartStatus::Open {
        return Err(ApiError::conflict("cart_closed", None, "this cart was checked out or merged; start a new one"));
    }
    if cart.expires_at <= now() {
        return Err(ApiError::CartExpired);
    }
    Ok(cart)
}

pub async fn add_item(store: &Store, cart: &CartRecord, input: &AddItemInput, s: &CartSettings) -> ApiResult<()> {
    check_quantity(input.quantity, s.max_line_quantity)?;
    if input.sku.is_none() && input.variant_id.is_none() {
        return Err(ApiError::invalid_field("sku", "required", "give a sku or a variant_id"));
    }
    let item = store.purchasable(input.variant_id, input.sku.as_deref()).await?.ok_or_else(|| {
        ApiError::invalid_field(
            if input.variant_id.is_some() { "variant_id" } else { "sku" },
            "unknown_variant",
            "no such variant",
        )
    })?;
    if item.product_status != ProductStatus::Published {
        return Err(ApiError::invalid_field("sku", "unavailable", "this product is not for sale"));
    }
    match store.add_cart_item(cart.id, item.variant_id, input.quantity, s.max_line_quantity).await? {
        Ok(_) => Ok(()),
        Err(current) => Err(ApiError::invalid_field(
            "quantity",
            "out_of_range",
            format!("at most {} per line; the cart already has {current}", s.max_line_quantity),
        )),
    }
}

pub async fn set_quantity(
    store: &Store,
    cart: &CartRecord,
    item: Uuid,
    input: &SetQuantityInput,
    s: &CartSettings,
) -> ApiResult<()> {
    check_quantity(input.quantity, s.max_line_quantity)?;
    if !store.set_cart_item(cart.id, item, input.quantity).await? {
        return Err(ApiError::NotFound("cart item"));
    }
    Ok(())
}

pub async fn remove_item(store: &Store, cart: &CartRecord, item: Uuid) -> ApiResult<()> {
    if !store.remove_cart_item(cart.id, item).await? {
        return Err(ApiError::NotFound("cart item"));
    }
    Ok(())
}

/// Lines with their current availability and problem, priced in the cart's currency.
pub struct Priced {
    pub lines: Vec<(CartLine, i64, Option<&'static str>)>,
    pub totals: pricing::Totals,
    pub shipping_option_id: Option<Uuid>,
    pub weight_grams: i64,
    pub rate_bp: u32,
    /// The promotions evaluated for the buyable lines (in `totals.lines` order).
    pub promotions: CartPromotions,
}

/// Which stock figures `price` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockFlags {
    /// Each line's available stock, and `out_of_stock` / `insufficient_stock` flags (the cart page).
    Read,
    /// None: checkout's reservation decides stock under lock, so a read here would be stale anyway.
    Skip,
}

/// Prices the buyable lines for `destination`. With `option` given, that shipping
/// option is used (it must ship there); otherwise the cheapest that does.
pub async fn price(
    store: &Store,
    cart: &CartRecord,
    destination: &Destination,
    option: Option<Uuid>,
    s: &CartSettings,
    stock: StockFlags,
    who: &PromotionContext,
) -> ApiResult<(Priced, Option<ShippingError>)> {
    // The lines and the shop's rates are independent reads: asked together, so a
    // checkout waits for one round of grouped reads, not three.
    let (lines, rate, options) = tokio::join!(
        store.cart_lines(cart),
        async {
            match &destination.country {
                Some(country) => store.tax_rate_for(country, &destination.region).await.map(Some),
                None => Ok(None),
            }
        },
        async {
            match &destination.country {
                Some(_) => store.shipping_options().await.map(Some),
                None => Ok(None),
            }
        },
    );
    let (lines, rate, options) = (lines?, rate?, options?);
    let available: std::collections::HashMap<Uuid, i64> = match stock {
        StockFlags::Read => {
            let ids: Vec<Uuid> = lines.iter().map(|l| l.variant_id).collect();
            store.available(&ids).await?.into_iter().collect()
        }
        StockFlags::Skip => lines.iter().map(|l| (l.variant_id, i64::MAX)).collect(),
    };
    let mut out = Vec::with_capacity(lines.len());
    for l in lines {
        let avail = available.get(&l.variant_id).copied().unwrap_or(0);
        let problem = if l.product_status != ProductStatus::Published {
            Some("unavailable")
        } else if l.unit_price.is_none() {
            Some("no_price")
        } else if avail <= 0 {
            Some("out_of_stock")
        } else if avail < l.quantity {
            Some("insufficient_stock")
        } else {
            None
        };
        out.push((l, avail, problem));
    }
    let buyable: Vec<&CartLine> =
        out.iter().filter(|(_, _, p)| !matches!(p, Some("unavailable" | "no_price"))).map(|(l, _, _)| l).collect();
    let weight: i64 = buyable.iter().map(|l| l.weight_grams.saturating_mul(l.quantity)).sum();
    // Shipping is quoted on the subtotal before discounts.
    let subtotal: i64 = buyable.iter().map(|l| l.unit_price.unwrap_or(0).saturating_mul(l.quantity)).sum();
    let (rate_bp, shipping, option_id, shipping_error) = match (&destination.country, rate, options) {
        (Some(country), Some(rate), Some(options)) => {
            let options: Vec<(Uuid, shipping::ShippingRule)> =
                options.into_iter().filter(|o| o.active && o.currency == cart.currency).map(|o| (o.id, o.rule())).collect();
            let chosen = match option {
                Some(wanted) => match options.iter().find(|(id, _)| *id == wanted) {
                    None => Err(ShippingError::UnknownOption),
                    Some((id, rule)) => rule.quote(country, subtotal, weight).map(|p| (*id, p)).ok_or(ShippingError::DoesNotShip),
                },
                None => {
                    shipping::cheapest(&options, country, subtotal, weight).map(|(id, p)| (*id, p)).ok_or(ShippingError::NoOption)
                }
            };
            match chosen {
                Ok((id, p)) => (rate as u32, p, Some(id), None),
                Err(e) => (rate as u32, 0, None, Some(e)),
            }
        }
        // No address yet: no tax, no shipping.
        _ => (0, 0, None, None),
    };
    let promotions = crate::ops::promotions::evaluate_cart(store, cart, &buyable, shipping, who).await?;
    let inputs: Vec<LineInput> = buyable
        .iter()
        .zip(&promotions.evaluation.line_discounts)
        .map(|(l, d)| LineInput { unit_price: l.unit_price.unwrap_or(0), quantity: l.quantity, discount: *d })
        .collect();
    let totals = pricing::totals(&inputs, (shipping, promotions.evaluation.shipping_discount), rate_bp, s.tax_mode)
        .map_err(|_| ApiError::invalid_field("quantity", "too_large", "the cart total is out of range"))?;
    Ok((Priced { lines: out, totals, shipping_option_id: option_id, weight_grams: weight, rate_bp, promotions }, shipping_error))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShippingError {
    UnknownOption,
    DoesNotShip,
    NoOption,
}

pub async fn view(
    store: &Store,
    cart: &CartRecord,
    destination: &Destination,
    s: &CartSettings,
    token: Option<String>,
) -> ApiResult<CartView> {
    let (priced, _) = price(store, cart, destination, None, s, StockFlags::Read, &PromotionContext::of_cart(cart)).await?;
    let quoted = destination.country.is_some() && priced.shipping_option_id.is_some();
    let (discounts, codes) = priced.promotions.views();
    // Discounts are per buyable line, in order; unbuyable lines get none.
    let mut shares = priced.totals.lines.iter().map(|t| t.discount);
    let items = priced
        .lines
        .into_iter()
        .map(|(l, available, problem)| CartItemView {
            discount: if matches!(problem, Some("unavailable" | "no_price")) { 0 } else { shares.next().unwrap_or(0) },
            id: l.id,
            variant_id: l.variant_id,
            sku: l.sku,
            title: l.title,
            options: l.options,
            quantity: l.quantity,
            unit_price: l.unit_price,
            line_total: l.unit_price.map(|p| p.saturating_mul(l.quantity)),
            available,
            problem,
        })
        .collect();
    Ok(CartView {
        id: cart.id,
        currency: cart.currency.clone(),
        status: match cart.status {
            CartStatus::Open => "open",
            CartStatus::CheckedOut => "checked_out",
            CartStatus::Merged => "merged",
        },
        items,
        subtotal: priced.totals.subtotal,
        shipping: quoted.then_some(priced.totals.shipping),
        shipping_option_id: priced.shipping_option_id,
        discount_total: priced.totals.discount_total,
        discounts,
        codes,
        tax: destination.country.is_some().then_some(priced.totals.tax),
        grand_total: priced.totals.grand_total,
        tax_mode: s.tax_mode,
        expires_at: cart.expires_at.clone(),
        cart_token: token,
    })
}
