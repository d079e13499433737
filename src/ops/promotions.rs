//! Promotions: staff define them and their codes; shoppers put codes on carts;
//! carts and checkout are priced through the pure evaluator
//! (`domain::promotions::evaluate`) with what the store says is on offer.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::promotions::codes;
use crate::domain::promotions::evaluate::{self, Buyer, Evaluation, Line, Offer, Reason, Target};
use crate::domain::promotions::rules::PromotionRules;
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crate::store::audit::Actor;
use crate::store::carts::{CartLine, CartRecord};
use crate::store::promotions::{NewDiscount, PromotionRecord, PromotionWriteError, StoredOffer};

/// Codes one cart may carry at once.
pub const MAX_CART_CODES: usize = 5;
/// Single-use codes made by one request.
pub const MAX_GENERATED: i64 = 10_000;

/// Who is buying, for customer conditions and per-customer limits.
#[derive(Debug, Clone, Default)]
pub struct PromotionContext {
    pub customer_id: Option<Uuid>,
    /// The customer id, or `email:` and a guest's address once checkout knows it.
    pub customer_key: Option<String>,
    /// Promotions to leave out (ran out during a checkout that asked to go on without them).
    pub excluded: BTreeSet<Uuid>,
}

impl PromotionContext {
    pub fn of_cart(cart: &CartRecord) -> Self {
        Self { customer_id: cart.customer_id, customer_key: cart.customer_id.map(|c| c.to_string()), excluded: BTreeSet::new() }
    }
}

/// A cart's promotions, evaluated.
#[derive(Debug, Clone)]
pub struct CartPromotions {
    pub evaluation: Evaluation,
    pub offers: Vec<StoredOffer>,
}

impl CartPromotions {
    pub fn none(lines: usize) -> Self {
        Self {
            evaluation: Evaluation {
                applied: Vec::new(),
                refused: Vec::new(),
                line_discounts: vec![0; lines],
                shipping_discount: 0,
                total: 0,
            },
            offers: Vec::new(),
        }
    }

    fn offer(&self, promotion_id: Uuid) -> Option<&StoredOffer> {
        self.offers.iter().find(|o| o.promotion.id == promotion_id)
    }

    pub fn name_of(&self, promotion_id: Uuid) -> String {
        self.offer(promotion_id).map(|o| o.promotion.rules.name.clone()).unwrap_or_default()
    }

    /// The discounts an order placed now carries.
    pub fn discounts(&self) -> Vec<NewDiscount> {
        self.evaluation
            .applied
            .iter()
            .filter_map(|a| {
                let offer = self.offer(a.promotion_id)?;
                let r = &offer.promotion.rules;
                Some(NewDiscount {
                    promotion_id: a.promotion_id,
                    code: a.code.clone(),
                    name: r.name.clone(),
                    target: target_name(a.target),
                    amount: a.amount,
                    limited: r.usage_limit.is_some() || r.per_customer_limit.is_some() || r.conditions.first_order_only,
                    single_use: a.code.is_some() && offer.single_use,
                    version: offer.version.clone(),
                })
            })
            .collect()
    }

    pub fn views(&self) -> (Vec<DiscountView>, Vec<CodeView>) {
        let discounts = self
            .evaluation
            .applied
            .iter()
            .map(|a| DiscountView {
                promotion_id: a.promotion_id,
                name: self.name_of(a.promotion_id),
                code: a.code.clone(),
                target: a.target,
                amount: a.amount,
            })
            .collect();
        let codes = self
            .offers
            .iter()
            .filter_map(|o| o.code.as_ref().map(|c| (o, c)))
            .map(|(o, code)| {
                let reason = self.evaluation.refused.iter().find(|r| r.code.as_ref() == Some(code)).map(|r| r.reason);
                CodeView {
                    code: code.clone(),
                    promotion_id: o.promotion.id,
                    name: o.promotion.rules.name.clone(),
                    applies: reason.is_none(),
                    reason,
                    message: reason.map(Reason::message),
                }
            })
            .collect();
        (discounts, codes)
    }
}

fn target_name(t: Target) -> &'static str {
    match t {
        Target::Order => "order",
        Target::Lines => "lines",
        Target::Shipping => "shipping",
    }
}

/// A discount a cart gets, for display.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DiscountView {
    pub promotion_id: Uuid,
    pub name: String,
    pub code: Option<String>,
    /// `order` (spread over the lines), `lines` or `shipping`.
    pub target: Target,
    pub amount: i64,
}

/// A code on a cart and whether it does anything.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CodeView {
    pub code: String,
    pub promotion_id: Uuid,
    pub name: String,
    pub applies: bool,
    /// Why not: `expired`, `minimum_not_met`, `not_for_these_products`, `already_used`, ...
    pub reason: Option<Reason>,
    pub message: Option<&'static str>,
}

/// Evaluates the promotions on offer to `cart` for its buyable `lines` and the quoted shipping.
pub async fn evaluate_cart(
    store: &Store,
    cart: &CartRecord,
    lines: &[&CartLine],
    shipping: i64,
    who: &PromotionContext,
) -> ApiResult<CartPromotions> {
    let now = time::OffsetDateTime::now_utc();
    let mut offers = store.promotion_offers(cart.id, who.customer_key.as_deref(), &crate::store::format_time(now)).await?;
    offers.retain(|o| !who.excluded.contains(&o.promotion.id));
    if offers.is_empty() {
        return Ok(CartPromotions::none(lines.len()));
    }
    let by_category = offers.iter().any(|o| {
        let c = &o.promotion.rules.conditions;
        !c.categories.is_empty() || !c.exclude_categories.is_empty()
    });
    let categories = if by_category {
        let products: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect::<BTreeSet<_>>().into_iter().collect();
        store.product_category_branches(&products).await?
    } else {
        BTreeMap::new()
    };
    let collections = if offers.iter().any(|o| {
        let c = &o.promotion.rules.conditions;
        !c.collections.is_empty() || !c.exclude_collections.is_empty()
    }) {
        let products: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect::<BTreeSet<_>>().into_iter().collect();
        store.product_collections(&products).await?
    } else {
        BTreeMap::new()
    };
    let previous_orders = match who.customer_id {
        Some(c) if offers.iter().any(|o| o.promotion.rules.conditions.first_order_only) => store.previous_orders(c).await?,
        _ => 0,
    };
    let segments = match who.customer_id {
        Some(c) if offers.iter().any(|o| !o.promotion.rules.conditions.segments.is_empty()) => store.customer_segments(c).await?,
        _ => Vec::new(),
    };
    let buyer = Buyer { customer_id: who.customer_id, previous_orders, segments };
    let inputs: Vec<Line> = lines
        .iter()
        .map(|l| Line {
            product_id: l.product_id,
            categories: categories.get(&l.product_id).cloned().unwrap_or_default(),
            collections: collections.get(&l.product_id).cloned().unwrap_or_default(),
            unit_price: l.unit_price.unwrap_or(0),
            quantity: l.quantity,
        })
        .collect();
    let currency = crate::domain::money::Currency::parse(&cart.currency)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("cart {} has currency {}", cart.id, cart.currency)))?;
    let on_offer: Vec<Offer<'_>> =
        offers.iter().map(|o| Offer { promotion: &o.promotion, code: o.code.as_deref(), blocked: o.blocked }).collect();
    let evaluation = evaluate::evaluate(&evaluate::Cart { currency, lines: &inputs, shipping, buyer: &buyer, now }, &on_offer);
    Ok(CartPromotions { evaluation, offers })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyCodeInput {
    pub code: String,
}

/// Puts a code on an open cart. Unknown codes, codes for another currency and
/// codes already there are refused; a code that exists but does not apply yet
/// (minimum not met, not started) stays on the cart with the reason shown.
pub async fn apply_code(store: &Store, cart: &CartRecord, input: &ApplyCodeInput) -> ApiResult<()> {
    let code = codes::normalize(&input.code).map_err(|e| ApiError::invalid_field("code", e.code, e.message))?;
    let promotion = store
        .promotion_of_code(&code)
        .await?
        .ok_or_else(|| ApiError::invalid_field("code", "unknown_code", "no promotion has this code"))?;
    if let Some(currency) = &promotion.rules.currency
        && *currency != cart.currency
    {
        return Err(ApiError::invalid_field(
            "code",
            "currency_mismatch",
            format!("this code is for {currency} carts; this cart is in {}", cart.currency),
        ));
    }
    let on_cart = store.cart_codes(cart.id).await?;
    if on_cart.contains(&code) {
        return Err(ApiError::conflict("code_already_applied", Some("code"), "this code is already on the cart"));
    }
    if on_cart.len() >= MAX_CART_CODES {
        return Err(ApiError::conflict("too_many_codes", Some("code"), format!("a cart carries at most {MAX_CART_CODES} codes")));
    }
    for other in &on_cart {
        if store.promotion_of_code(other).await?.is_some_and(|p| p.id == promotion.id) {
            return Err(ApiError::conflict(
                "promotion_already_applied",
                Some("code"),
                format!("code {other} of the same promotion is already on the cart"),
            ));
        }
    }
    if !store.add_cart_code(cart.id, &code).await? {
        return Err(ApiError::conflict("code_already_applied", Some("code"), "this code is already on the cart"));
    }
    Ok(())
}

pub async fn remove_code(store: &Store, cart: &CartRecord, code: &str) -> ApiResult<()> {
    let code = codes::normalize(code).map_err(|e| ApiError::invalid_field("code", e.code, e.message))?;
    if !store.remove_cart_code(cart.id, &code).await? {
        return Err(ApiError::NotFound("code on this cart"));
    }
    Ok(())
}

/// Validates rules and that the products and categories they name exist.
async fn checked(store: &Store, rules: PromotionRules) -> ApiResult<PromotionRules> {
    let rules = rules.validate().map_err(|e| ApiError::Validation(e.into_vec()))?;
    let c = &rules.conditions;
    let mut errors = crate::domain::validation::FieldErrors::new();
    for (field, ids) in [("conditions.products", &c.products), ("conditions.exclude_products", &c.exclude_products)] {
        let known = store.existing_products(ids).await?;
        for (i, p) in ids.iter().enumerate() {
            if !known.contains(p) {
                errors.push(format!("{field}[{i}]"), "unknown_product", "no such product");
            }
        }
    }
    let categories: BTreeSet<Uuid> = store.categories().await?.into_iter().map(|c| c.id).collect();
    for (field, ids) in [("conditions.categories", &c.categories), ("conditions.exclude_categories", &c.exclude_categories)] {
        for (i, id) in ids.iter().enumerate() {
            if !categories.contains(id) {
                errors.push(format!("{field}[{i}]"), "unknown_category", "no such category");
            }
        }
    }
    for (field, ids) in [("conditions.collections", &c.collections), ("conditions.exclude_collections", &c.exclude_collections)] {
        let known = store.existing_collections(ids).await?;
        for (i, id) in ids.iter().enumerate() {
            if !known.contains(id) {
                errors.push(format!("{field}[{i}]"), "unknown_collection", "no such collection");
            }
        }
    }
    if errors.is_empty() { Ok(rules) } else { Err(ApiError::Validation(errors.into_vec())) }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionInput {
    pub name: String,
    /// The products in it (replaces the list).
    #[serde(default)]
    pub product_ids: Vec<Uuid>,
}

/// Creates (`id` absent) or replaces a collection.
pub async fn put_collection(
    store: &Store,
    id: Option<Uuid>,
    input: &CollectionInput,
    actor: &Actor,
) -> ApiResult<crate::store::collections::Collection> {
    let mut errors = crate::domain::validation::FieldErrors::new();
    let name = errors.check("name", crate::domain::validation::required_text(&input.name, 100));
    let products: Vec<Uuid> = input.product_ids.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    if products.len() > 10_000 {
        errors.push("product_ids", "too_many", "at most 10000 products");
    } else {
        let known = store.existing_products(&input.product_ids).await?;
        for (i, p) in input.product_ids.iter().enumerate() {
            if !known.contains(p) {
                errors.push(format!("product_ids[{i}]"), "unknown_product", "no such product");
            }
        }
    }
    let Some(name) = name.filter(|_| errors.is_empty()) else { return Err(ApiError::Validation(errors.into_vec())) };
    store.put_collection(id, &name, &products, actor).await?.ok_or(ApiError::NotFound("collection"))
}

pub async fn create(store: &Store, rules: PromotionRules, actor: &Actor) -> ApiResult<PromotionRecord> {
    let rules = checked(store, rules).await?;
    Ok(store.create_promotion(&rules, actor).await?)
}

pub async fn update(store: &Store, id: Uuid, rules: PromotionRules, actor: &Actor) -> ApiResult<PromotionRecord> {
    let rules = checked(store, rules).await?;
    store.update_promotion(id, &rules, actor).await.map_err(|e| match e {
        PromotionWriteError::NotFound => ApiError::NotFound("promotion"),
        PromotionWriteError::LimitBelowUses(n) => {
            ApiError::invalid_field("usage_limit", "below_redemptions", format!("{n} orders already redeemed it"))
        }
        PromotionWriteError::Store(s) => s.into(),
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCodesInput {
    /// One shared code, redeemable by many orders (up to the promotion's limits).
    pub code: Option<String>,
    /// Or: this many unique single-use codes, generated.
    pub generate: Option<i64>,
    /// Prefix of generated codes (letters, digits, `-`, `_`).
    pub prefix: Option<String>,
    /// Random characters after the prefix (6 to 20, default 10).
    pub length: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewCodesAnswer {
    pub codes: Vec<String>,
    pub single_use: bool,
}

pub async fn add_codes(store: &Store, id: Uuid, input: &NewCodesInput, actor: &Actor) -> ApiResult<NewCodesAnswer> {
    let promotion = store.promotion(id).await?.ok_or(ApiError::NotFound("promotion"))?;
    if promotion.rules.automatic {
        return Err(ApiError::invalid_field("code", "automatic_promotion", "an automatic promotion applies without codes"));
    }
    match (&input.code, input.generate) {
        (Some(code), None) => {
            if input.prefix.is_some() || input.length.is_some() {
                return Err(ApiError::invalid_field("prefix", "not_allowed", "prefix and length go with generate"));
            }
            let code = codes::normalize(code).map_err(|e| ApiError::invalid_field("code", e.code, e.message))?;
            let added = store.add_promotion_codes(id, std::slice::from_ref(&code), false, actor).await?;
            if added.is_empty() {
                return Err(ApiError::conflict("code_taken", Some("code"), "this code already exists"));
            }
            Ok(NewCodesAnswer { codes: added, single_use: false })
        }
        (None, Some(n)) => {
            if !(1..=MAX_GENERATED).contains(&n) {
                return Err(ApiError::invalid_field("generate", "out_of_range", format!("generate 1 to {MAX_GENERATED} codes")));
            }
            let length = input.length.unwrap_or(10);
            if !(6..=20).contains(&length) {
                return Err(ApiError::invalid_field("length", "out_of_range", "between 6 and 20 characters"));
            }
            let prefix = match input.prefix.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
                None => String::new(),
                Some(p) => {
                    let p = p.to_ascii_uppercase();
                    let valid = p.len() <= 16
                        && p.as_bytes()[0].is_ascii_alphanumeric()
                        && p.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
                    if !valid {
                        return Err(ApiError::invalid_field("prefix", "invalid_code", "up to 16 letters, digits, '-' or '_'"));
                    }
                    p
                }
            };
            let mut made = Vec::with_capacity(n as usize);
            // A clash with an existing code is skipped by the store: draw again for those.
            for _ in 0..5 {
                let missing = n as usize - made.len();
                if missing == 0 {
                    break;
                }
                let batch: Vec<String> = {
                    let mut rng = rand::rng();
                    let fresh: BTreeSet<String> = (0..missing).map(|_| codes::generate(&mut rng, &prefix, length)).collect();
                    fresh.into_iter().collect()
                };
                made.extend(store.add_promotion_codes(id, &batch, true, actor).await?);
            }
            Ok(NewCodesAnswer { codes: made, single_use: true })
        }
        _ => Err(ApiError::invalid_field("code", "required", "give either `code` or `generate`")),
    }
}

/// The codes of a promotion as CSV: `code,single_use,redemptions,created_at`.
pub async fn codes_csv(store: &Store, id: Uuid) -> ApiResult<String> {
    store.promotion(id).await?.ok_or(ApiError::NotFound("promotion"))?;
    let mut out = String::from("code,single_use,redemptions,created_at\n");
    for c in store.promotion_codes(id).await? {
        // Codes are letters, digits, '-' and '_': nothing to quote.
        out.push_str(&format!("{},{},{},{}\n", c.code, c.single_use, c.redemptions, c.created_at));
    }
    Ok(out)
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Segments {
    /// Segment names: lower-case letters, digits, `-`, `_`; replaces the customer's list.
    pub segments: Vec<String>,
}

pub async fn set_segments(store: &Store, customer_id: Uuid, input: &Segments, actor: &Actor) -> ApiResult<Segments> {
    let mut errors = crate::domain::validation::FieldErrors::new();
    if input.segments.len() > 50 {
        errors.push("segments", "too_many", "at most 50 segments");
    }
    let mut names: Vec<String> = input
        .segments
        .iter()
        .enumerate()
        .filter_map(|(i, s)| errors.check(format!("segments[{i}]"), crate::domain::promotions::rules::parse_segment(s)))
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors.into_vec()));
    }
    names.sort();
    names.dedup();
    if !store.set_customer_segments(customer_id, &names, actor).await? {
        return Err(ApiError::NotFound("customer"));
    }
    Ok(Segments { segments: names })
}
