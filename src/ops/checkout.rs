//! Checkout: the one request that turns a cart into an order.
//!
//! 1. The `Idempotency-Key` is claimed before anything is written, so a retry
//!    replays the first answer and a concurrent duplicate is refused.
//! 2. The cart is repriced from the catalog and quoted for the address — at the
//!    same time as the claim, since it only reads; used only if the claim lets
//!    this request place the order (a fresh key, or one whose holder gave up).
//! 3. One short transaction (shared by concurrent checkouts, `order_batches`)
//!    closes the cart, writes the order and its started payment, reserves every
//!    line with a conditional update and links the key to the order.
//! 4. The payment is started with the provider outside any transaction; its result
//!    moves the order on (paid: stock committed; declined: stock released). When the
//!    provider cannot be reached, the order fails at once (`fail`) or keeps its
//!    stock while a `payment.retry` job asks again (`queue`).
//! 5. The answer is stored under the key for 24 hours: a paid order's in the
//!    transaction that records the payment, built from the order as placed (the
//!    order is not read back).
//!
//! Each database step is shared with the checkouts that arrive at the same
//! moment: the first read and the pricing reads (`store::read_batches`), the key
//! claim, placing (`order_batches`) and the paid transition (`payment_batches`),
//! so a flash sale's storm costs a statement per group, not per buyer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::carts::{self, CartSettings, Destination, ShippingError, Shopper};
use super::payment_batches::Accepted;
use super::promotions::PromotionContext;
use crate::auth::tokens::hash_refresh_token;
use crate::config::PaymentUnavailable;
use crate::domain::address::Address;
use crate::domain::email::Email;
use crate::domain::identifiers::{order_number, parse_idempotency_key};
use crate::domain::order_status::{OrderEvent, OrderStatus, transition};
use crate::domain::pricing::TaxMode;
use crate::domain::promotions::evaluate::{Reason, Refused};
use crate::domain::signature;
use crate::domain::validation::{FieldError, FieldErrors};
use crate::error::{ApiError, ApiResult};
use crate::payments::{PaymentProvider, PaymentRequest, PaymentStart, ProviderError};
use crate::store::audit::Actor;
use crate::store::idempotency::{Claim, KeyAnswer};
use crate::store::orders::{InboxEntry, NewOrder, NewOrderLine, Order, OrderError, Placed};
use crate::store::{Store, format_time};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentInput {
    /// `test` (built in) or `stripe` (when configured).
    pub provider: String,
    /// The provider's payment-method token: with `test`, `tok_ok`, `tok_decline` or `tok_async`;
    /// with `stripe`, a PaymentMethod id (`pm_...`).
    pub token: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutInput {
    pub email: String,
    pub shipping_address: Address,
    /// The shipping address when absent.
    pub billing_address: Option<Address>,
    /// The cheapest option that ships to the address when absent.
    pub shipping_option_id: Option<Uuid>,
    pub payment: PaymentInput,
    /// When a promotion on the cart does not apply any more (its limit was
    /// reached, the code was used, it ended): `false` (default) refuses the
    /// checkout with `409 promotion_exhausted` / `promotion_not_applicable`;
    /// `true` checks out without it, at the price without it.
    #[serde(default)]
    pub drop_unavailable_promotions: bool,
    /// The grand total the shopper was shown (minor units). When given and the
    /// total now differs (a price, a promotion or the shipping changed), the
    /// checkout is refused with `409 price_changed` and nothing is placed.
    pub expected_grand_total: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentView {
    pub provider: String,
    /// `succeeded`, `pending` (confirmation arrives by webhook, or the provider is
    /// asked again later when it could not be reached: answered with 202) or `declined`.
    pub status: &'static str,
    pub reference: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckoutAnswer {
    pub order: Order,
    /// Lets a guest read this order at `GET /v1/orders/{id}` (header `X-Order-Token`).
    pub order_token: String,
    pub payment: PaymentView,
}

pub struct CheckoutContext<'a> {
    pub store: &'a Store,
    /// Places orders, concurrent ones together.
    pub batches: &'a crate::ops::order_batches::OrderBatches,
    /// Marks orders paid, concurrent ones together.
    pub payments: &'a crate::ops::payment_batches::PaymentBatches,
    pub providers: &'a [Arc<dyn PaymentProvider>],
    pub carts: CartSettings,
    pub reservation_ttl: Duration,
    /// What to do when the provider cannot be reached.
    pub payment_unavailable: PaymentUnavailable,
    /// Derives order access tokens.
    pub secret: &'a [u8],
}

/// Runs a checkout and answers with the status and JSON body to send (and to
/// replay for the same key).
pub async fn checkout(
    ctx: &CheckoutContext<'_>,
    cart_id: Uuid,
    shopper: &Shopper,
    key: Option<&str>,
    body: &[u8],
) -> ApiResult<(StatusCode, String)> {
    let key = match key {
        None => {
            return Err(ApiError::bad_field(
                "idempotency_key_required",
                "Idempotency-Key",
                "checkout needs an Idempotency-Key header",
            ));
        }
        Some(k) => parse_idempotency_key(k).map_err(|e| ApiError::bad_field(e.code, "Idempotency-Key", e.message))?,
    };
    // Ownership first: nobody may replay someone else's answer. One read, shared
    // with the checkouts arriving at the same moment, tells whose cart this is and,
    // after a sale's last unit, whether it can be refused from memory.
    let scope = format!("checkout:{cart_id}");
    let probe = ctx.store.checkout_probe(cart_id, &scope, &key).await?;
    let cart = carts::owned_by(probe.cart.clone(), shopper)?;
    if ctx.store.sold_out().any()
        && let Some(refusal) = known_sold_out(ctx.store, &probe)
    {
        return Err(refusal);
    }
    // The cart is priced while the key is claimed: a fresh checkout (nearly all
    // of them) needs both, and pricing only reads. A replayed, refused or resumed
    // key drops the quote (a retry pays for a read it did not need).
    let request = read_request(ctx, &cart, shopper, body);
    let quoting = async {
        match &request {
            Ok(request) => Some(priced_order(ctx, &cart, request).await),
            Err(_) => None,
        }
    };
    let hash = request_hash(body);
    let (claim, quote) = tokio::join!(ctx.store.claim_idempotency_key(&scope, &key, &hash), quoting);
    let resumed = match claim? {
        Claim::Replay { status, body } => return Ok((StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body)),
        Claim::Mismatch => {
            return Err(ApiError::Unprocessable {
                code: "idempotency_key_reused",
                detail: "this Idempotency-Key was used with a different request body".into(),
            });
        }
        Claim::InFlight => {
            return Err(ApiError::conflict(
                "idempotency_key_in_use",
                None,
                "a request with this Idempotency-Key is still running",
            ));
        }
        Claim::Fresh => None,
        Claim::Resume { order_id } => order_id,
    };
    let keyed = (scope.as_str(), key.as_str());
    let result = match resumed {
        Some(order_id) => resume(ctx, order_id, keyed, body).await,
        None => place_and_pay(ctx, &cart, shopper, keyed, request, quote).await,
    };
    match result {
        Ok(Answered { status, body, stored }) => {
            if !stored {
                ctx.store.finish_idempotency_key(&scope, &key, status.as_u16(), &body).await?;
            }
            Ok((status, body))
        }
        Err(e @ (ApiError::Internal(_) | ApiError::Unavailable)) => {
            // A failure, not an answer: let a retry with the same key run again
            // (from the start, or from the order if one was placed).
            ctx.store.release_idempotency_key(&scope, &key).await?;
            Err(e)
        }
        Err(client_error) => {
            let response = axum::response::IntoResponse::into_response(client_error);
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.map_err(|e| anyhow::anyhow!(e))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            ctx.store.finish_idempotency_key(&scope, &key, status.as_u16(), &text).await?;
            Ok((status, text))
        }
    }
}

/// After a flash sale's last unit, most buyers are answered here: when the
/// sold-out memory knows a variant of this cart is gone, the answer is the
/// `out_of_stock` the database would give, after the one read of the probe and
/// without a transaction. The refusal is not stored under the key (nothing
/// happened; a retry asks again). A key used before, or a cart no longer open,
/// takes the full path, so replays stay exact.
fn known_sold_out(store: &Store, probe: &crate::store::carts::CheckoutProbe) -> Option<ApiError> {
    let open = probe
        .cart
        .as_ref()
        .is_some_and(|c| c.status == crate::store::carts::CartStatus::Open && c.expires_at > crate::store::now());
    if !open || probe.key_used {
        return None;
    }
    use crate::sold_out::Flag;
    let memory = store.sold_out();
    let flags: Vec<Flag> = probe.lines.iter().map(|l| memory.check(l.variant_id)).collect();
    if !flags.contains(&Flag::Fresh) {
        // Only stale flags: this buyer asks the database for everyone.
        let stale: Vec<Uuid> =
            probe.lines.iter().zip(&flags).filter(|(_, f)| **f == Flag::Stale).map(|(l, _)| l.variant_id).collect();
        memory.probe(&stale);
        return None;
    }
    let errors: Vec<FieldError> = probe
        .lines
        .iter()
        .zip(&flags)
        .enumerate()
        .filter(|(_, (_, f))| **f == Flag::Fresh)
        .map(|(i, (l, _))| FieldError {
            field: format!("items[{i}]"),
            code: "out_of_stock".into(),
            message: format!("{}: {} requested, 0 available", l.sku, l.quantity),
        })
        .collect();
    if errors.is_empty() {
        return None;
    }
    metrics::counter!("mercato_checkout_sold_out_answers_total").increment(1);
    Some(ApiError::Conflict { code: "out_of_stock", detail: "some items are not in stock in the quantity asked".into(), errors })
}

/// SHA-256 of the body's canonical JSON (keys sorted), so a client that
/// re-serialises the same request still matches its key.
fn request_hash(body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body).map(|v| v.to_string()).unwrap_or_default();
    signature::hex(&Sha256::digest(if canonical.is_empty() { body } else { canonical.as_bytes() }))
}

fn order_token(secret: &[u8], order_id: Uuid) -> String {
    // A keyed hash of the id: reproducible for a replayed answer, unguessable.
    signature::keyed_hash(secret, order_id.as_bytes())
}

pub fn order_token_hash(secret: &[u8], order_id: Uuid) -> String {
    hash_refresh_token(&order_token(secret, order_id))
}

/// A checkout's answer, and whether it is stored under its key already.
struct Answered {
    status: StatusCode,
    body: String,
    stored: bool,
}

/// A checkout's body, read and checked against its cart; nothing read from the
/// database yet.
struct Request {
    input: CheckoutInput,
    email: Email,
    shipping_address: Address,
    billing_address: Address,
    destination: Destination,
    who: PromotionContext,
}

fn read_request(
    ctx: &CheckoutContext<'_>,
    cart: &crate::store::carts::CartRecord,
    shopper: &Shopper,
    body: &[u8],
) -> ApiResult<Request> {
    let input: CheckoutInput = crate::http::extract::parse_json(body)?;
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(&input.email));
    let shipping_address = input.shipping_address.parse("shipping_address").map_err(|e| errors_extend(&mut errors, e)).ok();
    let billing_address = match &input.billing_address {
        Some(b) => b.parse("billing_address").map_err(|e| errors_extend(&mut errors, e)).ok(),
        None => shipping_address.clone(),
    };
    if !ctx.providers.iter().any(|p| p.name() == input.payment.provider) {
        errors.push("payment.provider", "unknown_provider", "unknown payment provider");
    }
    if input.payment.token.is_empty() || input.payment.token.len() > 255 {
        errors.push("payment.token", "invalid", "a payment token of 1 to 255 characters is required");
    }
    let (Some(email), Some(shipping_address), Some(billing_address)) = (email, shipping_address, billing_address) else {
        return Err(ApiError::Validation(errors.into_vec()));
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors.into_vec()));
    }
    if cart.status != crate::store::carts::CartStatus::Open {
        return Err(ApiError::conflict("cart_closed", None, "this cart was checked out or merged"));
    }
    if cart.expires_at <= crate::store::now() {
        return Err(ApiError::CartExpired);
    }
    let destination = Destination { country: Some(shipping_address.country.clone()), region: shipping_address.region.clone() };
    let customer_id = cart.customer_id.or(shopper.customer_id);
    let who = PromotionContext {
        customer_id,
        customer_key: Some(match customer_id {
            Some(c) => c.to_string(),
            None => format!("email:{}", email.as_str().to_lowercase()),
        }),
        excluded: BTreeSet::new(),
    };
    Ok(Request { input, email, shipping_address, billing_address, destination, who })
}

async fn place_and_pay(
    ctx: &CheckoutContext<'_>,
    cart: &crate::store::carts::CartRecord,
    shopper: &Shopper,
    (scope, key): (&str, &str),
    request: ApiResult<Request>,
    mut quote: Option<ApiResult<NewOrder>>,
) -> ApiResult<Answered> {
    let mut request = request?;
    // A promotion that runs out while this order is placed is left out and the
    // order priced again, when the shopper asked for that; a few rounds at most.
    for _ in 0..4 {
        let order = match quote.take() {
            Some(quoted) => quoted?,
            None => priced_order(ctx, cart, &request).await?,
        };
        let order = Arc::new(order);
        match ctx.batches.place(order.clone(), (scope, key), &shopper_actor(shopper)).await? {
            // The order as placed, its payment started: no need to read it back.
            Placed::Order => return charge(ctx, order.placed(), &request.input.payment, (scope, key)).await,
            Placed::PromotionUnavailable(refusal) if request.input.drop_unavailable_promotions => {
                request.who.excluded.insert(refusal.promotion_id);
            }
            placed => return Err(refused(&order, placed)),
        }
    }
    Err(ApiError::conflict("promotion_exhausted", None, "the cart's promotions kept running out; review the cart and try again"))
}

/// Prices the cart for the address and builds the order to place, or says why it cannot be bought as it is.
async fn priced_order(
    ctx: &CheckoutContext<'_>,
    cart: &crate::store::carts::CartRecord,
    request: &Request,
) -> ApiResult<NewOrder> {
    let Request { input, email, shipping_address, billing_address, destination, who } = request;
    let (priced, shipping_error) =
        carts::price(ctx.store, cart, destination, input.shipping_option_id, &ctx.carts, carts::StockFlags::Skip, who).await?;
    match shipping_error {
        None => {}
        Some(ShippingError::UnknownOption) => {
            return Err(ApiError::invalid_field("shipping_option_id", "unknown_shipping_option", "no such shipping option"));
        }
        Some(ShippingError::DoesNotShip) => {
            return Err(ApiError::invalid_field(
                "shipping_option_id",
                "does_not_ship",
                "this option does not ship this parcel to the address",
            ));
        }
        Some(ShippingError::NoOption) => {
            return Err(ApiError::invalid_field(
                "shipping_address.country",
                "no_shipping",
                "no shipping option ships this parcel there",
            ));
        }
    }
    if priced.lines.is_empty() {
        return Err(ApiError::conflict("cart_empty", None, "the cart has no items"));
    }
    let unbuyable: Vec<FieldError> = priced
        .lines
        .iter()
        .enumerate()
        .filter(|(_, (_, _, p))| matches!(p, Some("unavailable" | "no_price")))
        .map(|(i, (l, _, p))| FieldError {
            field: format!("items[{i}]"),
            code: p.unwrap_or("unavailable").into(),
            message: format!("{} cannot be bought now; remove it from the cart", l.sku),
        })
        .collect();
    if !unbuyable.is_empty() {
        return Err(ApiError::Conflict {
            code: "cart_has_unavailable_items",
            detail: "some items are no longer for sale".into(),
            errors: unbuyable,
        });
    }
    // A code on the cart that does not apply: refused rather than charged
    // differently, unless the shopper said to go on without it.
    let unusable: Vec<&Refused> =
        priced.promotions.evaluation.refused.iter().filter(|r| r.code.is_some() && !input.drop_unavailable_promotions).collect();
    if !unusable.is_empty() {
        let exhausted = unusable.iter().any(|r| matches!(r.reason, Reason::Exhausted | Reason::AlreadyUsed));
        return Err(ApiError::Conflict {
            code: if exhausted { "promotion_exhausted" } else { "promotion_not_applicable" },
            detail: "a code on the cart does not apply; remove it, or check out with drop_unavailable_promotions".into(),
            errors: unusable
                .iter()
                .map(|r| FieldError {
                    field: "codes".into(),
                    code: reason_code(r.reason),
                    message: format!("{}: {}", r.code.as_deref().unwrap_or_default(), r.reason.message()),
                })
                .collect(),
        });
    }
    if let Some(expected) = input.expected_grand_total
        && expected != priced.totals.grand_total
    {
        return Err(ApiError::conflict(
            "price_changed",
            Some("expected_grand_total"),
            format!("the total is now {} minor units, not {expected}; review the cart", priced.totals.grand_total),
        ));
    }
    let order_id = Uuid::now_v7();
    let reserved_until = format_time(time::OffsetDateTime::now_utc() + ctx.reservation_ttl);
    let lines: Vec<NewOrderLine> = priced
        .lines
        .iter()
        .zip(&priced.totals.lines)
        .map(|((l, _, _), t)| NewOrderLine {
            id: Uuid::now_v7(),
            variant_id: l.variant_id,
            sku: l.sku.clone(),
            title: l.title.clone(),
            options: l.options.clone(),
            quantity: l.quantity,
            unit_price: t.unit_price,
            line_total: t.line_total,
            discount: t.discount,
            tax: t.tax,
        })
        .collect();
    let new_order = NewOrder {
        id: order_id,
        number: order_number(order_id),
        cart_id: cart.id,
        cart_seen: cart.updated_at.clone(),
        customer_id: who.customer_id,
        email: email.as_str().to_owned(),
        currency: cart.currency.clone(),
        tax_mode: match ctx.carts.tax_mode {
            TaxMode::Inclusive => "inclusive",
            TaxMode::Exclusive => "exclusive",
        },
        subtotal: priced.totals.subtotal,
        shipping_total: priced.totals.shipping,
        discount_total: priced.totals.discount_total,
        tax_total: priced.totals.tax,
        grand_total: priced.totals.grand_total,
        shipping_option_id: priced.shipping_option_id,
        shipping_address: shipping_address.clone(),
        billing_address: billing_address.clone(),
        access_token_hash: order_token_hash(ctx.secret, order_id),
        reserved_until,
        lines,
        payment_provider: input.payment.provider.clone(),
        created_at: crate::store::now(),
        discounts: priced.promotions.discounts(),
        customer_key: who.customer_key.clone().unwrap_or_default(),
    };
    Ok(new_order)
}

/// The answer for an order the batch did not place.
fn refused(new_order: &NewOrder, placed: Placed) -> ApiError {
    match placed {
        Placed::Order => ApiError::Internal(anyhow::anyhow!("a placed order taken for a refusal")),
        Placed::PromotionUnavailable(refusal) => {
            let name = new_order
                .discounts
                .iter()
                .find(|d| d.promotion_id == refusal.promotion_id)
                .map(|d| d.code.clone().unwrap_or_else(|| d.name.clone()))
                .unwrap_or_default();
            ApiError::Conflict {
                code: "promotion_exhausted",
                detail: format!("{name}: {}", refusal.reason.message()),
                errors: vec![FieldError {
                    field: "codes".into(),
                    code: serde_json::to_value(refusal.reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    message: format!(
                        "{name}: {}; check out again with drop_unavailable_promotions to buy without it",
                        refusal.reason.message()
                    ),
                }],
            }
        }
        Placed::CartClosed => ApiError::conflict("cart_closed", None, "this cart was checked out by another request"),
        Placed::CartChanged => {
            ApiError::conflict("cart_changed", None, "the cart changed while it was being checked out; review it and try again")
        }
        Placed::OutOfStock(shortages) => {
            let errors = shortages
                .iter()
                .map(|s| {
                    let (i, sku) = new_order
                        .lines
                        .iter()
                        .enumerate()
                        .find(|(_, l)| l.variant_id == s.variant_id)
                        .map(|(i, l)| (i, l.sku.clone()))
                        .unwrap_or((0, String::new()));
                    FieldError {
                        field: format!("items[{i}]"),
                        code: "out_of_stock".into(),
                        message: format!("{sku}: {} requested, {} available", s.requested, s.available.max(0)),
                    }
                })
                .collect();
            ApiError::Conflict {
                code: "out_of_stock",
                detail: "some items are not in stock in the quantity asked".into(),
                errors,
            }
        }
    }
}

fn reason_code(reason: Reason) -> String {
    serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn errors_extend(errors: &mut FieldErrors, more: Vec<FieldError>) {
    for e in more {
        errors.push(e.field, &e.code, e.message);
    }
}

fn shopper_actor(shopper: &Shopper) -> Actor {
    Actor { kind: if shopper.customer_id.is_some() { "customer" } else { "guest" }, id: shopper.customer_id, request_id: None }
}

/// Goes on with a checkout whose order an earlier attempt with this key placed:
/// answers as that attempt would have if it got further, else (re)starts the
/// payment with the same provider key.
async fn resume(ctx: &CheckoutContext<'_>, order_id: Uuid, keyed: (&str, &str), body: &[u8]) -> ApiResult<Answered> {
    let input: CheckoutInput = crate::http::extract::parse_json(body)?;
    let order = ctx.store.order(order_id).await?.ok_or(ApiError::NotFound("order"))?;
    let provider = provider(ctx, &input.payment)?;
    match order.status {
        OrderStatus::PendingPayment => {}
        OrderStatus::PaymentFailed => return Err(ApiError::PaymentDeclined(order.number)),
        OrderStatus::Expired | OrderStatus::Cancelled => {
            return Err(ApiError::conflict(
                "order_closed",
                None,
                format!("order {} was {}", order.number, order.status.as_str()),
            ));
        }
        // Paid, and perhaps moved on since: answered with the payment as recorded.
        _ => {
            let payment = ctx.store.payment_of(order.id).await?;
            let held = payment.as_ref().is_some_and(|p| matches!(p.status.as_str(), "authorized" | "capturing"));
            let reference = payment.and_then(|p| p.provider_ref);
            let status = if held { "authorized" } else { "succeeded" };
            return answer(ctx, order, provider.name(), (status, reference), StatusCode::CREATED);
        }
    }
    // Placed before payments were recorded with the order: nothing if it was.
    ctx.store.start_payment(order.id, provider.name(), order.grand_total, &order.currency).await?;
    charge(ctx, order, &input.payment, keyed).await
}

fn provider<'a>(ctx: &'a CheckoutContext<'_>, payment: &PaymentInput) -> ApiResult<&'a Arc<dyn PaymentProvider>> {
    ctx.providers
        .iter()
        .find(|p| p.name() == payment.provider)
        .ok_or_else(|| ApiError::invalid_field("payment.provider", "unknown_provider", "unknown payment provider"))
}

/// Asks the provider to pay an order waiting for payment (its payment row
/// started) and moves the order on according to the answer. A payment that
/// succeeds stores the checkout's answer under its key in the same transaction.
async fn charge(
    ctx: &CheckoutContext<'_>,
    mut order: Order,
    payment: &PaymentInput,
    (scope, key): (&str, &str),
) -> ApiResult<Answered> {
    let provider = provider(ctx, payment)?;
    let system = Actor { kind: "provider", id: None, request_id: None };
    if order.grand_total == 0 {
        // Discounted to nothing: there is nothing to charge, and providers refuse
        // zero amounts, so the provider is not asked.
        let paid = ready_answer(ctx, &order, provider.name(), ("succeeded", None))?;
        let keyed = paid.keyed(scope, key);
        let settled = ctx
            .store
            .settle_payment(order.id, ("succeeded", None), OrderEvent::PaymentSucceeded, &system, "nothing to pay", Some(&keyed))
            .await
            .map_err(|e| match e {
                // Expired or cancelled meanwhile: no money moved, nothing to give back.
                OrderError::Transition(_) => {
                    ApiError::conflict("order_closed", None, format!("order {} is no longer waiting for payment", order.number))
                }
                e => order_error(e),
            })?;
        // Settled is paid (the only way out of pending_payment on a success): the
        // answer went in with it.
        debug_assert_eq!(settled, keyed.when);
        return Ok(Answered { status: StatusCode::CREATED, body: paid.body, stored: true });
    }
    let request = PaymentRequest {
        order_id: order.id,
        amount: order.grand_total,
        currency: order.currency.clone(),
        token: payment.token.clone(),
    };
    // The provider is guarded (timeout, retries, circuit breaker): an answer here is final for this request.
    let started = match provider.start(&request).await {
        Ok(started) => started,
        Err(ProviderError::InvalidToken) => invalid_token(),
        Err(ProviderError::Unavailable(why)) => {
            tracing::warn!(order.id = %order.id, provider = provider.name(), error = %why, "payment provider unavailable");
            return match ctx.payment_unavailable {
                PaymentUnavailable::Fail => {
                    // The order first: if the success webhook paid it meanwhile, the
                    // payment row must stay `succeeded`.
                    match ctx.store.apply_order_event(order.id, OrderEvent::PaymentFailed, &system, "provider unavailable").await
                    {
                        Ok(_) => {
                            ctx.store.set_payment_status(order.id, "failed", None).await?;
                            Err(ApiError::PaymentUnavailable)
                        }
                        // The call timed out here, yet the payment went through and its
                        // webhook paid the order first: the shopper has bought it.
                        Err(OrderError::Transition(t)) if t.from == OrderStatus::Paid => {
                            order.status = OrderStatus::Paid;
                            let reference = ctx.store.payment_of(order.id).await?.and_then(|p| p.provider_ref);
                            answer(ctx, order, provider.name(), ("succeeded", reference), StatusCode::CREATED)
                        }
                        Err(e) => Err(order_error(e)),
                    }
                }
                PaymentUnavailable::Queue => {
                    // The stock stays held while a job asks the provider again with the
                    // same key; the reservation's expiry bounds how long.
                    let retry = RetryPayment { order_id: order.id, provider: provider.name().to_owned(), token: request.token };
                    ctx.store
                        .queue_payment_retry(order.id, RETRY_PAYMENT, serde_json::to_value(&retry).map_err(anyhow::Error::from)?)
                        .await?;
                    answer(ctx, order, provider.name(), ("pending", None), StatusCode::ACCEPTED)
                }
            };
        }
    };
    let outcome = Outcome::of(started);
    // The answer a success gives, ready before the transaction that records it.
    let paid = match outcome.event {
        Some(OrderEvent::PaymentSucceeded) => {
            Some(ready_answer(ctx, &order, provider.name(), (outcome.status, outcome.reference.clone()))?)
        }
        _ => None,
    };
    let keyed = paid.as_ref().map(|p| p.keyed(scope, key));
    if let (Some(paid), Some(keyed)) = (&paid, &keyed) {
        // Recorded with the payments answered at the same moment. An order that
        // moved on meanwhile (expired, paid by its webhook) takes the single
        // path below, which judges each case.
        let accepted = Accepted {
            order_id: order.id,
            status: outcome.status,
            reference: outcome.reference.as_deref(),
            reason: &outcome.reason,
        };
        if ctx.payments.pay(accepted, keyed).await? {
            return Ok(Answered { status: StatusCode::CREATED, body: paid.body.clone(), stored: true });
        }
    }
    let (status, reference, stored) = settle(ctx.store, &mut order, provider.name(), outcome, keyed.as_ref()).await?;
    if status == "declined" {
        return Err(ApiError::PaymentDeclined(order.number));
    }
    match paid {
        Some(paid) if stored => Ok(Answered { status: StatusCode::CREATED, body: paid.body, stored }),
        _ => answer(ctx, order, provider.name(), (status, reference), StatusCode::CREATED),
    }
}

/// The answer to a checkout whose order gets paid, written before the payment is settled.
struct PaidAnswer {
    body: String,
}

impl PaidAnswer {
    fn keyed<'a>(&'a self, scope: &'a str, key: &'a str) -> KeyAnswer<'a> {
        KeyAnswer { scope, key, when: OrderStatus::Paid, status: StatusCode::CREATED.as_u16(), body: &self.body }
    }
}

fn ready_answer(
    ctx: &CheckoutContext<'_>,
    order: &Order,
    provider: &str,
    payment: (&'static str, Option<String>),
) -> ApiResult<PaidAnswer> {
    let paid = Order { status: OrderStatus::Paid, ..order.clone() };
    Ok(PaidAnswer { body: answer(ctx, paid, provider, payment, StatusCode::CREATED)?.body })
}

/// An unknown payment token refuses the payment like a decline does.
fn invalid_token() -> PaymentStart {
    PaymentStart::Declined { reference: String::new(), reason: "invalid payment token".into() }
}

/// What a provider's answer means for the order: the event to apply (none
/// while it is pending), the payment's status and reference, and why.
struct Outcome {
    event: Option<OrderEvent>,
    status: &'static str,
    /// None when the provider refused before creating anything.
    reference: Option<String>,
    reason: String,
}

impl Outcome {
    fn of(started: PaymentStart) -> Self {
        let (event, status, reference, reason) = match started {
            PaymentStart::Succeeded { reference } => {
                (Some(OrderEvent::PaymentSucceeded), "succeeded", reference, "payment succeeded".to_owned())
            }
            PaymentStart::Pending { reference } => (None, "pending", reference, String::new()),
            PaymentStart::Declined { reference, reason } => (Some(OrderEvent::PaymentFailed), "declined", reference, reason),
            // Held on the card: the order is paid for (its stock is sold); the money is
            // taken when it ships.
            PaymentStart::Authorized { reference } => {
                (Some(OrderEvent::PaymentSucceeded), "authorized", reference, "payment authorized".to_owned())
            }
        };
        Self { event, status, reference: Some(reference).filter(|r| !r.is_empty()), reason }
    }
}

/// Records a provider's definite answer and moves the order on: paid (stock
/// committed), payment_failed (stock released) or still pending (a webhook
/// settles it), with `answer` stored under its key when the order gets to its
/// status. Returns the payment's status and reference, and whether `answer` was stored.
async fn settle(
    store: &Store,
    order: &mut Order,
    provider: &str,
    outcome: Outcome,
    answer: Option<&KeyAnswer<'_>>,
) -> ApiResult<(&'static str, Option<String>, bool)> {
    let system = Actor { kind: "provider", id: None, request_id: None };
    let Outcome { event, status, reference, reason } = outcome;
    let Some(event) = event else {
        store.set_payment_status(order.id, status, reference.as_deref()).await?;
        return Ok((status, reference, false));
    };
    let settled = store.settle_payment(order.id, (status, reference.as_deref()), event, &system, &reason, answer).await;
    if matches!(settled, Err(OrderError::Transition(_))) {
        // The order moved on: the provider's answer is still recorded.
        store.set_payment_status(order.id, status, reference.as_deref()).await?;
    }
    match settled {
        Ok(new_status) => {
            order.status = new_status;
            return Ok((status, reference, answer.is_some_and(|a| a.when == new_status)));
        }
        // The provider's webhook got there first and did the same.
        Err(OrderError::Transition(t)) if transition(OrderStatus::PendingPayment, event).ok() == Some(t.from) => {
            order.status = t.from;
        }
        Err(OrderError::Transition(t)) if status == "authorized" => {
            // The order moved on (its reservation expired) while the card was being
            // authorized: release the hold.
            crate::ops::holds::queue_void(store, order.id).await?;
            tracing::warn!(order.id = %order.id, error = %t, "payment authorized for an order that moved on; releasing the hold");
            return Err(order_error(OrderError::Transition(t)));
        }
        Err(OrderError::Transition(t)) if event == OrderEvent::PaymentSucceeded => {
            // The order moved on (its reservation expired) while its payment was
            // being asked for: the money must go back, as for a late webhook.
            let event_id = format!("start:{}", order.id);
            let inbox = InboxEntry { provider, event_id: &event_id, event_type: "payment.start.succeeded", payload: "{}" };
            if store.record_late_payment_event(order.id, true, inbox).await? == Some(false) {
                // Paid before (by its webhook) and moved on since: the shopper has bought it.
                order.status = t.from;
                return Ok((status, reference, false));
            }
            tracing::warn!(order.id = %order.id, error = %t, "payment succeeded for an order that moved on; refund required");
            return Err(order_error(OrderError::Transition(t)));
        }
        Err(e) => return Err(order_error(e)),
    }
    Ok((status, reference, false))
}

/// The job kind that asks a provider again about a payment whose outcome was unknown.
pub const RETRY_PAYMENT: &str = "payment.retry";

/// The payload of a `payment.retry` job.
#[derive(Debug, Serialize, Deserialize)]
pub struct RetryPayment {
    pub order_id: Uuid,
    pub provider: String,
    /// The payment method token the shopper gave (never card data).
    pub token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// The provider still cannot say: the queue retries later, with backoff.
    #[error("the payment provider is still unavailable: {0}")]
    Unavailable(String),
    #[error("no payment provider `{0}` is configured")]
    UnknownProvider(String),
    #[error(transparent)]
    Failed(#[from] ApiError),
}

/// Asks the provider again, with the same idempotency key, about the payment of an
/// order still waiting for it, and applies the answer as checkout would have. An
/// order that is no longer waiting (expired, cancelled, settled by webhook) is left
/// alone: its job is done.
pub async fn retry_payment(
    store: &Store,
    providers: &[Arc<dyn PaymentProvider>],
    retry: &RetryPayment,
) -> Result<(), RetryError> {
    let Some(mut order) = store.order(retry.order_id).await.map_err(ApiError::from)? else {
        return Ok(());
    };
    if order.status != OrderStatus::PendingPayment {
        return Ok(());
    }
    let provider = providers
        .iter()
        .find(|p| p.name() == retry.provider)
        .ok_or_else(|| RetryError::UnknownProvider(retry.provider.clone()))?;
    let request = PaymentRequest {
        order_id: order.id,
        amount: order.grand_total,
        currency: order.currency.clone(),
        token: retry.token.clone(),
    };
    let started = match provider.start(&request).await {
        Ok(started) => started,
        Err(ProviderError::InvalidToken) => invalid_token(),
        Err(ProviderError::Unavailable(why)) => return Err(RetryError::Unavailable(why)),
    };
    match settle(store, &mut order, provider.name(), Outcome::of(started), None).await {
        Ok((status, _, _)) => {
            tracing::info!(order.id = %order.id, payment = status, "queued payment answered");
            Ok(())
        }
        // Settled meanwhile by a webhook or the expiry sweep: nothing left to do here.
        Err(ApiError::Conflict { code: "invalid_transition", .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn answer(
    ctx: &CheckoutContext<'_>,
    order: Order,
    provider: &str,
    (status, reference): (&'static str, Option<String>),
    code: StatusCode,
) -> ApiResult<Answered> {
    let body = CheckoutAnswer {
        order_token: order_token(ctx.secret, order.id),
        order,
        payment: PaymentView { provider: provider.to_owned(), status, reference },
    };
    Ok(Answered { status: code, body: serde_json::to_string(&body).map_err(anyhow::Error::from)?, stored: false })
}

pub fn order_error(e: crate::store::orders::OrderError) -> ApiError {
    match e {
        crate::store::orders::OrderError::Transition(t) => ApiError::InvalidTransition(t),
        crate::store::orders::OrderError::Store(s) => s.into(),
    }
}

/// Releases the stock of orders whose reservation ran out before payment. An
/// order whose payment is recorded as succeeded (its request died before moving
/// it on) is completed instead: money taken means goods sold.
pub async fn expire_due(store: &Store, now: &str) -> anyhow::Result<usize> {
    let system = Actor { kind: "system", id: None, request_id: None };
    let mut expired = 0;
    for order_id in store.orders_due_for_expiry(now, 500).await? {
        let paid = store.payment_of(order_id).await?.is_some_and(|p| matches!(p.status.as_str(), "succeeded" | "authorized"));
        let (event, reason) = if paid {
            (OrderEvent::PaymentSucceeded, "payment had succeeded")
        } else {
            (OrderEvent::ReservationExpired, "reservation expired")
        };
        match store.apply_order_event(order_id, event, &system, reason).await {
            Ok(_) => expired += usize::from(!paid),
            // Paid or cancelled in the meantime: nothing to release.
            Err(crate::store::orders::OrderError::Transition(_)) => {}
            Err(crate::store::orders::OrderError::Store(e)) => return Err(e.into()),
        }
    }
    Ok(expired)
}
