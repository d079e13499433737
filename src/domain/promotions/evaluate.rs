//! The evaluator: a cart and the promotions on offer in, discounts with their
//! explanations out. Deterministic and free of I/O; checkout and the cart page
//! call the same function, so what the shopper saw is what they pay.
//!
//! Rules, in minor units (the ones a shop's accountant will ask about):
//! - Eligible promotions apply in priority order (higher first, then by id). If
//!   the first is exclusive it applies alone; otherwise every combinable one
//!   applies in turn and exclusive ones are refused as `not_combinable`.
//! - Each applies to what earlier ones left of the lines and the shipping, so no
//!   line and no shipping charge ever goes below zero.
//! - Percentages are rounded down to the minor unit: a discount never exceeds its
//!   exact percentage.
//! - An order-level amount (order percent, fixed, tiered, or a cap) is spread
//!   over the matching lines in proportion to what is left of each, by largest
//!   remainder (ties to the earlier line), so the line shares add up to it exactly
//!   and tax can be computed per discounted line.
//! - Minimums and tiers look at the matching lines' totals before any discount.

use std::collections::BTreeSet;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::rules::{Action, FULL_BP, Promotion, Stacking};
use crate::domain::money::Currency;

/// One cart line, as the evaluator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub product_id: Uuid,
    /// The product's categories and all their ancestors.
    pub categories: Vec<Uuid>,
    /// The collections the product is in.
    pub collections: Vec<Uuid>,
    pub unit_price: i64,
    pub quantity: i64,
}

impl Line {
    fn total(&self) -> i64 {
        self.unit_price.saturating_mul(self.quantity)
    }
}

/// Who is buying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buyer {
    pub customer_id: Option<Uuid>,
    /// Orders the customer placed before (not counting failed or expired ones).
    pub previous_orders: i64,
    /// The customer's segments.
    pub segments: Vec<String>,
}

pub struct Cart<'a> {
    pub currency: Currency,
    pub lines: &'a [Line],
    pub shipping: i64,
    pub buyer: &'a Buyer,
    pub now: OffsetDateTime,
}

/// A promotion on offer to this cart: automatic, or through a code the cart
/// carries. `blocked` is what the usage counters say (limit reached, code used).
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    pub promotion: &'a Promotion,
    pub code: Option<&'a str>,
    pub blocked: Option<Reason>,
}

/// Why a promotion does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Inactive,
    NotStarted,
    Expired,
    CurrencyMismatch,
    MinimumNotMet,
    NotForTheseProducts,
    CustomerNotEligible,
    NotFirstOrder,
    /// Its total usage limit is reached.
    Exhausted,
    /// This customer used it as often as allowed, or this single-use code was used.
    AlreadyUsed,
    /// Another code of the same promotion is already applied.
    DuplicatePromotion,
    NotCombinable,
    /// Staff changed it after the cart was priced.
    Changed,
}

impl Reason {
    pub fn message(self) -> &'static str {
        match self {
            Reason::Inactive => "this promotion is switched off",
            Reason::NotStarted => "this promotion has not started yet",
            Reason::Expired => "this promotion has ended",
            Reason::CurrencyMismatch => "this promotion is for another currency",
            Reason::MinimumNotMet => "the cart does not reach this promotion's minimum",
            Reason::NotForTheseProducts => "this promotion is not for the products in the cart",
            Reason::CustomerNotEligible => "this promotion is not available to this customer",
            Reason::NotFirstOrder => "this promotion is for a first order only",
            Reason::Exhausted => "this promotion has been used up",
            Reason::AlreadyUsed => "this code has already been used",
            Reason::DuplicatePromotion => "another code of this promotion is already applied",
            Reason::NotCombinable => "this promotion cannot be combined with the others applied",
            Reason::Changed => "this promotion was changed; review the cart",
        }
    }
}

/// Where a discount shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Order,
    Lines,
    Shipping,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub promotion_id: Uuid,
    pub code: Option<String>,
    pub target: Target,
    /// Lines' shares plus shipping.
    pub amount: i64,
    /// Share of each cart line (same order as the input).
    pub lines: Vec<i64>,
    pub shipping: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub promotion_id: Uuid,
    pub code: Option<String>,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub applied: Vec<Applied>,
    /// Offers that do not apply, with why (automatic promotions whose conditions
    /// are simply not met are left out: they were never asked for; used-up ones
    /// are not).
    pub refused: Vec<Refused>,
    /// Discount on each line (sum of the applied shares).
    pub line_discounts: Vec<i64>,
    pub shipping_discount: i64,
    pub total: i64,
}

pub fn evaluate(cart: &Cart<'_>, offers: &[Offer<'_>]) -> Evaluation {
    let totals: Vec<i64> = cart.lines.iter().map(Line::total).collect();
    let mut refused = Vec::new();
    let mut eligible: Vec<(&Offer<'_>, Vec<bool>)> = Vec::new();
    let mut seen = BTreeSet::new();
    for offer in offers {
        let p = offer.promotion;
        let verdict = if !seen.insert(p.id) { Err(Reason::DuplicatePromotion) } else { eligibility(cart, &totals, offer) };
        match verdict {
            Ok(matching) => eligible.push((offer, matching)),
            // A code was asked for: say why it does nothing. An automatic promotion
            // was not, so its unmet conditions are not news; but one used up (by
            // everyone, or by this buyer) is: the cart may have shown it.
            Err(reason) if offer.code.is_some() || reason == Reason::DuplicatePromotion || offer.blocked == Some(reason) => {
                refused.push(Refused { promotion_id: p.id, code: offer.code.map(str::to_owned), reason })
            }
            Err(_) => {}
        }
    }
    eligible.sort_by(|(a, _), (b, _)| {
        b.promotion.rules.priority.cmp(&a.promotion.rules.priority).then(a.promotion.id.cmp(&b.promotion.id))
    });
    let alone = eligible.first().is_some_and(|(o, _)| o.promotion.rules.stacking == Stacking::Exclusive);

    let mut left = totals.clone();
    let mut shipping_left = cart.shipping;
    let mut applied = Vec::new();
    for (i, (offer, matching)) in eligible.iter().enumerate() {
        let p = offer.promotion;
        let excluded = if alone { i > 0 } else { p.rules.stacking == Stacking::Exclusive };
        if excluded {
            refused.push(Refused { promotion_id: p.id, code: offer.code.map(str::to_owned), reason: Reason::NotCombinable });
            continue;
        }
        let (lines, shipping) = discount(&p.rules.action, cart.lines, &totals, matching, &left, shipping_left);
        let (lines, shipping) = cap(lines, shipping, p.rules.max_discount);
        for (l, d) in left.iter_mut().zip(&lines) {
            *l -= d;
        }
        shipping_left -= shipping;
        let target = match p.rules.action {
            Action::FreeShipping => Target::Shipping,
            Action::OrderPercent { .. } | Action::OrderFixed { .. } | Action::Tiered { .. } => Target::Order,
            Action::LinesPercent { .. } | Action::LinesFixed { .. } | Action::BuyXGetY { .. } => Target::Lines,
        };
        applied.push(Applied {
            promotion_id: p.id,
            code: offer.code.map(str::to_owned),
            target,
            amount: lines.iter().sum::<i64>() + shipping,
            lines,
            shipping,
        });
    }
    let line_discounts: Vec<i64> = totals.iter().zip(&left).map(|(t, l)| t - l).collect();
    let shipping_discount = cart.shipping - shipping_left;
    let total = line_discounts.iter().sum::<i64>() + shipping_discount;
    Evaluation { applied, refused, line_discounts, shipping_discount, total }
}

/// Which lines the promotion covers, or why it does not apply at all.
fn eligibility(cart: &Cart<'_>, totals: &[i64], offer: &Offer<'_>) -> Result<Vec<bool>, Reason> {
    let p = offer.promotion;
    let r = &p.rules;
    if !r.active {
        return Err(Reason::Inactive);
    }
    if r.starts_at.is_some_and(|s| cart.now < s) {
        return Err(Reason::NotStarted);
    }
    if r.ends_at.is_some_and(|e| cart.now >= e) {
        return Err(Reason::Expired);
    }
    if r.currency().is_some_and(|c| c != cart.currency) {
        return Err(Reason::CurrencyMismatch);
    }
    let c = &r.conditions;
    if !c.customers.is_empty() && !cart.buyer.customer_id.is_some_and(|id| c.customers.contains(&id)) {
        return Err(Reason::CustomerNotEligible);
    }
    if !c.segments.is_empty() && !cart.buyer.segments.iter().any(|s| c.segments.contains(s)) {
        return Err(Reason::CustomerNotEligible);
    }
    if c.first_order_only {
        match cart.buyer.customer_id {
            None => return Err(Reason::CustomerNotEligible),
            Some(_) if cart.buyer.previous_orders > 0 => return Err(Reason::NotFirstOrder),
            Some(_) => {}
        }
    }
    let restricted = !c.products.is_empty() || !c.categories.is_empty() || !c.collections.is_empty();
    let matching: Vec<bool> = cart
        .lines
        .iter()
        .map(|l| {
            let included = !restricted
                || c.products.contains(&l.product_id)
                || l.categories.iter().any(|x| c.categories.contains(x))
                || l.collections.iter().any(|x| c.collections.contains(x));
            let excluded = c.exclude_products.contains(&l.product_id)
                || l.categories.iter().any(|x| c.exclude_categories.contains(x))
                || l.collections.iter().any(|x| c.exclude_collections.contains(x));
            included && !excluded
        })
        .collect();
    if !matching.contains(&true) {
        return Err(Reason::NotForTheseProducts);
    }
    let subtotal: i64 = totals.iter().zip(&matching).filter(|(_, m)| **m).map(|(t, _)| *t).sum();
    let units: i64 = cart.lines.iter().zip(&matching).filter(|(_, m)| **m).map(|(l, _)| l.quantity).sum();
    let min_units = match r.action {
        Action::BuyXGetY { buy, get, .. } => buy + get,
        _ => 1,
    };
    let min_tier = match &r.action {
        Action::Tiered { tiers } => tiers.first().map_or(0, |t| t.min_subtotal),
        _ => 0,
    };
    if c.min_subtotal.is_some_and(|m| subtotal < m) || c.min_quantity.is_some_and(|m| units < m) {
        return Err(Reason::MinimumNotMet);
    }
    if units < min_units || subtotal < min_tier {
        return Err(Reason::MinimumNotMet);
    }
    // Used up only matters to a cart it would apply to.
    if let Some(reason) = offer.blocked {
        return Err(reason);
    }
    Ok(matching)
}

fn percent_of(amount: i64, bp: u32) -> i64 {
    // Rounded down; |result| <= |amount|.
    (i128::from(amount) * i128::from(bp) / i128::from(FULL_BP)) as i64
}

/// Each line's share and the shipping's share of one promotion, before its cap.
fn discount(
    action: &Action,
    lines: &[Line],
    totals: &[i64],
    matching: &[bool],
    left: &[i64],
    shipping_left: i64,
) -> (Vec<i64>, i64) {
    let weights: Vec<i64> = left.iter().zip(matching).map(|(l, m)| if *m { *l } else { 0 }).collect();
    let base: i64 = weights.iter().sum();
    let per_line = |f: &dyn Fn(usize) -> i64| -> Vec<i64> { (0..lines.len()).map(|i| f(i).clamp(0, weights[i])).collect() };
    match action {
        Action::OrderPercent { percent_bp } => (spread(percent_of(base, *percent_bp), &weights), 0),
        Action::OrderFixed { amount } => (spread((*amount).min(base), &weights), 0),
        Action::LinesPercent { percent_bp } => (per_line(&|i| percent_of(weights[i], *percent_bp)), 0),
        Action::LinesFixed { amount } => (per_line(&|i| amount.saturating_mul(lines[i].quantity)), 0),
        Action::FreeShipping => (vec![0; lines.len()], shipping_left),
        Action::Tiered { tiers } => {
            let reached: i64 = totals.iter().zip(matching).filter(|(_, m)| **m).map(|(t, _)| *t).sum();
            let off = tiers.iter().rev().find(|t| reached >= t.min_subtotal).map_or(0, |t| t.amount_off);
            (spread(off.min(base), &weights), 0)
        }
        Action::BuyXGetY { buy, get, percent_bp } => {
            let units: i64 = lines.iter().zip(matching).filter(|(_, m)| **m).map(|(l, _)| l.quantity).sum();
            let mut free = units / (buy + get) * get;
            // The cheapest units are the ones given away; ties to the earlier line.
            let mut order: Vec<usize> = (0..lines.len()).filter(|i| matching[*i]).collect();
            order.sort_by_key(|i| (lines[*i].unit_price, *i));
            let mut shares = vec![0; lines.len()];
            for i in order {
                let n = free.min(lines[i].quantity);
                free -= n;
                shares[i] = percent_of(lines[i].unit_price, *percent_bp).saturating_mul(n).min(weights[i]);
            }
            (shares, 0)
        }
    }
}

/// Holds a promotion to its maximum: the shipping share first, then the lines'
/// shares re-spread over what they were.
fn cap(lines: Vec<i64>, shipping: i64, max: Option<i64>) -> (Vec<i64>, i64) {
    let Some(max) = max else { return (lines, shipping) };
    let shipping = shipping.min(max);
    let room = max - shipping;
    if lines.iter().sum::<i64>() <= room {
        return (lines, shipping);
    }
    (spread(room, &lines), shipping)
}

/// Shares `amount` (at most the weights' sum) in proportion to `weights` by
/// largest remainder; no share exceeds its weight and the shares add up to `amount`.
pub fn spread(amount: i64, weights: &[i64]) -> Vec<i64> {
    let sum: i128 = weights.iter().map(|w| i128::from(*w)).sum();
    if amount <= 0 || sum <= 0 {
        return vec![0; weights.len()];
    }
    let amount = i128::from(amount).min(sum);
    let mut shares: Vec<i128> = weights.iter().map(|w| amount * i128::from(*w) / sum).collect();
    let mut rest = amount - shares.iter().sum::<i128>();
    let mut by_remainder: Vec<usize> = (0..weights.len()).collect();
    by_remainder.sort_by_key(|i| (std::cmp::Reverse(amount * i128::from(weights[*i]) % sum), *i));
    for i in by_remainder {
        if rest == 0 {
            break;
        }
        if weights[i] > 0 {
            shares[i] += 1;
            rest -= 1;
        }
    }
    shares.into_iter().map(|s| s as i64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::promotions::rules::{PromotionRules, Tier};
    use proptest::prelude::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    fn promo(n: u128, action: Action) -> Promotion {
        Promotion { id: Uuid::from_u128(n), rules: PromotionRules::automatic(format!("promo {n}"), action) }
    }

    fn line(product: u128, unit_price: i64, quantity: i64) -> Line {
        Line {
            product_id: Uuid::from_u128(product),
            categories: vec![Uuid::from_u128(1000 + product)],
            collections: vec![Uuid::from_u128(2000 + product % 2)],
            unit_price,
            quantity,
        }
    }

    fn run(lines: &[Line], shipping: i64, promos: &[Promotion]) -> Evaluation {
        let offers: Vec<Offer<'_>> = promos.iter().map(|p| Offer { promotion: p, code: None, blocked: None }).collect();
        let buyer = Buyer::default();
        evaluate(
            &Cart { currency: eur(), lines, shipping, buyer: &buyer, now: time::macros::datetime!(2026-11-27 12:00 UTC) },
            &offers,
        )
    }

    #[test]
    fn percent_off_the_order_is_rounded_down_and_spread_exactly() {
        // 15 % of 33.33 = 4.9995 → 4.99, spread 2:1.
        let e = run(&[line(1, 1111, 2), line(2, 1111, 1)], 495, &[promo(1, Action::OrderPercent { percent_bp: 1500 })]);
        assert_eq!(e.total, 499);
        assert_eq!(e.line_discounts, [333, 166]);
        assert_eq!(e.applied[0].target, Target::Order);
    }

    #[test]
    fn fixed_off_never_exceeds_the_order() {
        let e = run(&[line(1, 300, 1)], 495, &[promo(1, Action::OrderFixed { amount: 1000 })]);
        assert_eq!((e.total, e.line_discounts.clone()), (300, vec![300]));
        let e = run(&[line(1, 300, 2)], 0, &[promo(1, Action::LinesFixed { amount: 200 })]);
        assert_eq!(e.total, 400);
    }

    #[test]
    fn buy_two_get_one_gives_the_cheapest_unit() {
        let e = run(
            &[line(1, 2000, 1), line(2, 500, 1), line(3, 1000, 1)],
            0,
            &[promo(1, Action::BuyXGetY { buy: 2, get: 1, percent_bp: FULL_BP })],
        );
        assert_eq!(e.line_discounts, [0, 500, 0]);
        // Two units only: not enough for the offer.
        let e = run(&[line(1, 2000, 2)], 0, &[promo(1, Action::BuyXGetY { buy: 2, get: 1, percent_bp: FULL_BP })]);
        assert_eq!(e.total, 0);
        // Seven units: two groups, two free.
        let e = run(&[line(1, 1000, 7)], 0, &[promo(1, Action::BuyXGetY { buy: 2, get: 1, percent_bp: 5000 })]);
        assert_eq!(e.total, 1000);
    }

    #[test]
    fn tiers_give_the_highest_reached() {
        let tiered = Action::Tiered {
            tiers: vec![Tier { min_subtotal: 10_000, amount_off: 1_000 }, Tier { min_subtotal: 20_000, amount_off: 3_000 }],
        };
        assert_eq!(run(&[line(1, 9_999, 1)], 0, &[promo(1, tiered.clone())]).total, 0);
        assert_eq!(run(&[line(1, 15_000, 1)], 0, &[promo(1, tiered.clone())]).total, 1_000);
        assert_eq!(run(&[line(1, 10_000, 2)], 0, &[promo(1, tiered)]).total, 3_000);
    }

    #[test]
    fn free_shipping_and_caps() {
        let mut p = promo(1, Action::OrderPercent { percent_bp: 5000 });
        p.rules.max_discount = Some(1_000);
        let e = run(&[line(1, 3_000, 1), line(2, 1_000, 1)], 495, &[p, promo(2, Action::FreeShipping)]);
        assert_eq!(e.line_discounts, [750, 250]);
        assert_eq!(e.shipping_discount, 495);
        assert_eq!(e.total, 1_495);
    }

    #[test]
    fn an_exclusive_promotion_first_in_priority_applies_alone() {
        let mut exclusive = promo(1, Action::OrderPercent { percent_bp: 1000 });
        exclusive.rules.stacking = Stacking::Exclusive;
        exclusive.rules.priority = 10;
        let e = run(&[line(1, 1_000, 1)], 500, &[promo(2, Action::FreeShipping), exclusive.clone()]);
        assert_eq!(e.applied.len(), 1);
        assert_eq!(e.total, 100);
        assert_eq!(e.refused.len(), 1);
        assert_eq!(e.refused[0].reason, Reason::NotCombinable);
        // Lower in priority than a combinable one: it is the one left out.
        exclusive.rules.priority = -1;
        let e = run(&[line(1, 1_000, 1)], 500, &[promo(2, Action::FreeShipping), exclusive]);
        assert_eq!((e.total, e.refused[0].promotion_id), (500, Uuid::from_u128(1)));
    }

    #[test]
    fn conditions_filter_lines_and_explain_codes() {
        let mut p = promo(1, Action::LinesPercent { percent_bp: 5000 });
        p.rules.conditions.categories = vec![Uuid::from_u128(1001)];
        p.rules.conditions.exclude_products = vec![Uuid::from_u128(3)];
        let e = run(&[line(1, 1_000, 1), line(2, 1_000, 1)], 0, std::slice::from_ref(&p));
        assert_eq!(e.line_discounts, [500, 0]);
        // Collections include and exclude like categories: product 2 is in collection 2000, 3 in 2001.
        let mut q = promo(2, Action::LinesPercent { percent_bp: 5000 });
        q.rules.conditions.collections = vec![Uuid::from_u128(2000)];
        let e = run(&[line(2, 1_000, 1), line(3, 1_000, 1)], 0, std::slice::from_ref(&q));
        assert_eq!(e.line_discounts, [500, 0]);
        q.rules.conditions.collections.clear();
        q.rules.conditions.exclude_collections = vec![Uuid::from_u128(2001)];
        let e = run(&[line(2, 1_000, 1), line(3, 1_000, 1)], 0, std::slice::from_ref(&q));
        assert_eq!(e.line_discounts, [500, 0]);

        p.rules.conditions.min_subtotal = Some(2_000);
        let buyer = Buyer::default();
        let lines = [line(1, 1_000, 1)];
        let cart = Cart { currency: eur(), lines: &lines, shipping: 0, buyer: &buyer, now: OffsetDateTime::UNIX_EPOCH };
        let e = evaluate(&cart, &[Offer { promotion: &p, code: Some("SAVE"), blocked: None }]);
        assert_eq!(e.refused, [Refused { promotion_id: p.id, code: Some("SAVE".into()), reason: Reason::MinimumNotMet }]);
        // Used up only matters to a cart it would otherwise apply to.
        let e = evaluate(&cart, &[Offer { promotion: &p, code: Some("SAVE"), blocked: Some(Reason::Exhausted) }]);
        assert_eq!(e.refused[0].reason, Reason::MinimumNotMet);
        p.rules.conditions.min_subtotal = None;
        let e = evaluate(&cart, &[Offer { promotion: &p, code: Some("SAVE"), blocked: Some(Reason::Exhausted) }]);
        assert_eq!(e.refused[0].reason, Reason::Exhausted);
        p.rules.ends_at = Some(OffsetDateTime::UNIX_EPOCH);
        let e = evaluate(&cart, &[Offer { promotion: &p, code: Some("SAVE"), blocked: None }]);
        assert_eq!(e.refused[0].reason, Reason::Expired);
        p.rules.ends_at = None;
        p.rules.currency = Some("USD".into());
        let e = evaluate(&cart, &[Offer { promotion: &p, code: Some("SAVE"), blocked: None }]);
        assert_eq!(e.refused[0].reason, Reason::CurrencyMismatch);
    }

    #[test]
    fn a_used_up_automatic_promotion_is_reported_unmet_conditions_are_not() {
        let mut p = promo(1, Action::FreeShipping);
        p.rules.conditions.min_quantity = Some(5);
        let lines = [line(1, 1_000, 1)];
        let buyer = Buyer::default();
        let cart = Cart { currency: eur(), lines: &lines, shipping: 100, buyer: &buyer, now: OffsetDateTime::UNIX_EPOCH };
        assert!(evaluate(&cart, &[Offer { promotion: &p, code: None, blocked: None }]).refused.is_empty());
        p.rules.conditions.min_quantity = None;
        let e = evaluate(&cart, &[Offer { promotion: &p, code: None, blocked: Some(Reason::Exhausted) }]);
        assert_eq!(e.refused, [Refused { promotion_id: p.id, code: None, reason: Reason::Exhausted }]);
    }

    #[test]
    fn first_order_and_named_customers() {
        let mut p = promo(1, Action::FreeShipping);
        p.rules.conditions.first_order_only = true;
        let lines = [line(1, 1_000, 1)];
        let check = |buyer: &Buyer, p: &Promotion| {
            let cart = Cart { currency: eur(), lines: &lines, shipping: 100, buyer, now: OffsetDateTime::UNIX_EPOCH };
            let e = evaluate(&cart, &[Offer { promotion: p, code: Some("X"), blocked: None }]);
            e.refused.first().map(|r| r.reason)
        };
        let me = Uuid::from_u128(9);
        assert_eq!(check(&Buyer::default(), &p), Some(Reason::CustomerNotEligible));
        let buyer = |previous_orders, segments: &[&str]| Buyer {
            customer_id: Some(me),
            previous_orders,
            segments: segments.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(check(&buyer(1, &[]), &p), Some(Reason::NotFirstOrder));
        assert_eq!(check(&buyer(0, &[]), &p), None);
        p.rules.conditions.first_order_only = false;
        p.rules.conditions.segments = vec!["vip".into()];
        assert_eq!(check(&buyer(3, &["newsletter"]), &p), Some(Reason::CustomerNotEligible));
        assert_eq!(check(&buyer(3, &["newsletter", "vip"]), &p), None);
        p.rules.conditions.segments.clear();
        p.rules.conditions.customers = vec![Uuid::from_u128(10)];
        assert_eq!(check(&buyer(0, &[]), &p), Some(Reason::CustomerNotEligible));
    }

    #[test]
    fn spread_examples() {
        assert_eq!(spread(10, &[5, 5, 5]), [4, 3, 3]);
        assert_eq!(spread(10, &[1, 1, 1]), [1, 1, 1]);
        assert_eq!(spread(5, &[0, 10]), [0, 5]);
        assert_eq!(spread(100, &[3, 4]), [3, 4]);
        assert_eq!(spread(0, &[3, 4]), [0, 0]);
    }

    fn any_action() -> impl Strategy<Value = Action> {
        prop_oneof![
            (1u32..=FULL_BP).prop_map(|percent_bp| Action::OrderPercent { percent_bp }),
            (1u32..=FULL_BP).prop_map(|percent_bp| Action::LinesPercent { percent_bp }),
            (1i64..50_000).prop_map(|amount| Action::OrderFixed { amount }),
            (1i64..5_000).prop_map(|amount| Action::LinesFixed { amount }),
            Just(Action::FreeShipping),
            (1i64..4, 1i64..3, 1u32..=FULL_BP).prop_map(|(buy, get, percent_bp)| Action::BuyXGetY { buy, get, percent_bp }),
            (1i64..20_000, 1i64..5_000)
                .prop_map(|(min, off)| Action::Tiered { tiers: vec![Tier { min_subtotal: min, amount_off: off.min(min) }] }),
        ]
    }

    fn any_promotions() -> impl Strategy<Value = Vec<Promotion>> {
        proptest::collection::vec(
            (
                any_action(),
                any::<bool>(),
                -3i32..3,
                proptest::option::of(1i64..10_000),
                proptest::collection::vec(0u128..4, 0..2),
            ),
            0..8,
        )
        .prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(n, (action, exclusive, priority, max, products))| {
                    let mut p = promo(n as u128 + 1, action);
                    p.rules.stacking = if exclusive { Stacking::Exclusive } else { Stacking::Combinable };
                    p.rules.priority = priority;
                    p.rules.max_discount = max;
                    p.rules.conditions.products = products.into_iter().map(Uuid::from_u128).collect();
                    p
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn discounts_never_go_below_zero_exceed_caps_or_fail_to_add_up(
            lines in proptest::collection::vec((0u128..4, 0i64..100_000, 1i64..10), 1..6),
            shipping in 0i64..2_000,
            promos in any_promotions(),
        ) {
            let lines: Vec<Line> = lines.into_iter().map(|(p, price, q)| line(p, price, q)).collect();
            let e = run(&lines, shipping, &promos);
            for (l, d) in lines.iter().zip(&e.line_discounts) {
                prop_assert!(*d >= 0 && *d <= l.total());
            }
            prop_assert!(e.shipping_discount >= 0 && e.shipping_discount <= shipping);
            prop_assert_eq!(e.total, e.line_discounts.iter().sum::<i64>() + e.shipping_discount);
            prop_assert_eq!(e.total, e.applied.iter().map(|a| a.amount).sum::<i64>());
            for (i, d) in e.line_discounts.iter().enumerate() {
                prop_assert_eq!(*d, e.applied.iter().map(|a| a.lines[i]).sum::<i64>());
            }
            for a in &e.applied {
                let p = promos.iter().find(|p| p.id == a.promotion_id).unwrap();
                prop_assert!(p.rules.max_discount.is_none_or(|m| a.amount <= m));
                prop_assert!(a.lines.iter().all(|s| *s >= 0) && a.shipping >= 0);
            }
            if e.applied.iter().any(|a| promos.iter().any(|p| p.id == a.promotion_id && p.rules.stacking == Stacking::Exclusive)) {
                prop_assert_eq!(e.applied.len(), 1);
            }
        }

        #[test]
        fn the_order_of_the_offers_does_not_matter(
            lines in proptest::collection::vec((0u128..4, 0i64..100_000, 1i64..10), 1..6),
            promos in any_promotions(),
        ) {
            let lines: Vec<Line> = lines.into_iter().map(|(p, price, q)| line(p, price, q)).collect();
            let forward = run(&lines, 500, &promos);
            let mut reversed = promos.clone();
            reversed.reverse();
            let backward = run(&lines, 500, &reversed);
            prop_assert_eq!(forward.line_discounts, backward.line_discounts);
            prop_assert_eq!(forward.shipping_discount, backward.shipping_discount);
        }

        #[test]
        fn spread_adds_up_and_respects_weights(amount in 0i64..1_000_000, weights in proptest::collection::vec(0i64..100_000, 1..10)) {
            let shares = spread(amount, &weights);
            let sum: i64 = weights.iter().sum();
            prop_assert_eq!(shares.iter().sum::<i64>(), amount.min(sum));
            for (s, w) in shares.iter().zip(&weights) {
                prop_assert!(*s >= 0 && *s <= *w);
            }
        }
    }
}
