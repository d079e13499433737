//! What a promotion is: what it gives (its action), when it applies (its
//! conditions and window) and how it combines with others (stacking). Staff send
//! exactly this shape; [`PromotionRules::validate`] names every offending field.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::money::{Currency, MAX_PRICE_MINOR};
use crate::domain::validation::{FieldErrors, required_text};

/// 100 % in basis points.
pub const FULL_BP: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// `percent_bp` basis points (1500 = 15 %) off the order (its matching lines).
    OrderPercent { percent_bp: u32 },
    /// `amount` (minor units) off the order (its matching lines), spread over them.
    OrderFixed { amount: i64 },
    /// `percent_bp` basis points off each matching line.
    LinesPercent { percent_bp: u32 },
    /// `amount` (minor units) off each matching unit.
    LinesFixed { amount: i64 },
    /// The shipping is free.
    FreeShipping,
    /// For every `buy` matching units, `get` more are `percent_bp` off (10000 =
    /// free); the cheapest units are the discounted ones.
    BuyXGetY {
        buy: i64,
        get: i64,
        #[serde(default = "full")]
        percent_bp: u32,
    },
    /// The highest tier whose `min_subtotal` the matching lines reach gives its
    /// `amount_off` (spend 100 save 10, spend 200 save 30).
    Tiered { tiers: Vec<Tier> },
}

fn full() -> u32 {
    FULL_BP
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub min_subtotal: i64,
    pub amount_off: i64,
}

/// When a promotion applies. Empty lists do not restrict. A line matches when
/// it is one of `products`, in the branch of one of `categories` or in one of
/// `collections` (any line when all three are empty), and is neither an excluded
/// product nor in an excluded branch or collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Conditions {
    /// Minimum total of the matching lines, before any discount.
    pub min_subtotal: Option<i64>,
    /// Minimum number of matching units.
    pub min_quantity: Option<i64>,
    pub products: Vec<Uuid>,
    pub exclude_products: Vec<Uuid>,
    pub categories: Vec<Uuid>,
    pub exclude_categories: Vec<Uuid>,
    /// Collections (hand-picked product sets, `/v1/admin/collections`).
    pub collections: Vec<Uuid>,
    pub exclude_collections: Vec<Uuid>,
    /// Only these signed-in customers.
    pub customers: Vec<Uuid>,
    /// Only signed-in customers in one of these segments (set by staff on customers).
    pub segments: Vec<String>,
    /// Only signed-in customers without an order placed before.
    pub first_order_only: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stacking {
    /// Combines with other combinable promotions, in priority order.
    #[default]
    Combinable,
    /// Applies alone: when it is the first that applies, nothing else does.
    Exclusive,
}

/// A promotion's rules, as staff write them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionRules {
    pub name: String,
    /// `true`: applies by itself to every cart that meets the conditions;
    /// `false`: only to carts that carry one of its codes.
    #[serde(default)]
    pub automatic: bool,
    pub action: Action,
    #[serde(default)]
    pub conditions: Conditions,
    #[serde(default)]
    pub stacking: Stacking,
    /// Higher first; ties by id.
    #[serde(default)]
    pub priority: i32,
    /// The most this promotion takes off one order (minor units).
    pub max_discount: Option<i64>,
    /// Carts of other currencies are not eligible; required by fixed amounts.
    #[schema(value_type = Option<String>)]
    pub currency: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<OffsetDateTime>,
    /// Orders that may use it in all; absent: no limit.
    pub usage_limit: Option<i64>,
    /// Orders one customer (or guest e-mail address) may use it on.
    pub per_customer_limit: Option<i64>,
    /// Staff switch; a switched-off promotion applies nowhere.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// The most any one list in the conditions may hold.
pub const MAX_LIST: usize = 1_000;

impl PromotionRules {
    /// An active, automatic, combinable promotion without conditions, limits,
    /// currency or window: the defaults a staff request starts from.
    pub fn automatic(name: impl Into<String>, action: Action) -> Self {
        Self {
            name: name.into(),
            automatic: true,
            action,
            conditions: Conditions::default(),
            stacking: Stacking::Combinable,
            priority: 0,
            max_discount: None,
            currency: None,
            starts_at: None,
            ends_at: None,
            usage_limit: None,
            per_customer_limit: None,
            active: true,
        }
    }

    /// Every offending field, or the rules with the name trimmed.
    pub fn validate(mut self) -> Result<Self, FieldErrors> {
        let mut e = FieldErrors::new();
        if let Some(name) = e.check("name", required_text(&self.name, 200)) {
            self.name = name;
        }
        let currency = self.currency.as_deref().map(|c| e.check("currency", Currency::parse(c)));
        let needs_currency = |what: &str, e: &mut FieldErrors| {
            if currency.is_none() {
                e.push("currency", "required", format!("{what} is an amount of money: give the promotion a currency"));
            }
        };
        let amount = |field: &str, value: i64, e: &mut FieldErrors| {
            if !(1..=MAX_PRICE_MINOR).contains(&value) {
                e.push(field, "out_of_range", format!("must be between 1 and {MAX_PRICE_MINOR} minor units"));
            }
            needs_currency(field, e);
        };
        let percent = |field: &str, bp: u32, e: &mut FieldErrors| {
            if !(1..=FULL_BP).contains(&bp) {
                e.push(field, "out_of_range", "must be between 1 and 10000 basis points (0.01 % to 100 %)");
            }
        };
        match &self.action {
            Action::OrderPercent { percent_bp } | Action::LinesPercent { percent_bp } => {
                percent("action.percent_bp", *percent_bp, &mut e)
            }
            Action::OrderFixed { amount: a } | Action::LinesFixed { amount: a } => amount("action.amount", *a, &mut e),
            Action::FreeShipping => {}
            Action::BuyXGetY { buy, get, percent_bp } => {
                for (field, n) in [("action.buy", buy), ("action.get", get)] {
                    if !(1..=100).contains(n) {
                        e.push(field, "out_of_range", "must be between 1 and 100 units");
                    }
                }
                percent("action.percent_bp", *percent_bp, &mut e);
            }
            Action::Tiered { tiers } => {
                if tiers.is_empty() || tiers.len() > 20 {
                    e.push("action.tiers", "out_of_range", "give between 1 and 20 tiers");
                }
                for (i, t) in tiers.iter().enumerate() {
                    amount(&format!("action.tiers[{i}].min_subtotal"), t.min_subtotal, &mut e);
                    amount(&format!("action.tiers[{i}].amount_off"), t.amount_off, &mut e);
                    if t.amount_off > t.min_subtotal {
                        e.push(
                            format!("action.tiers[{i}].amount_off"),
                            "exceeds_threshold",
                            "a tier cannot take off more than the spend that reaches it",
                        );
                    }
                    if let Some(prev) = i.checked_sub(1).map(|p| tiers[p])
                        && (t.min_subtotal <= prev.min_subtotal || t.amount_off <= prev.amount_off)
                    {
                        e.push(
                            format!("action.tiers[{i}]"),
                            "not_increasing",
                            "each tier must need a higher spend and give more than the one before",
                        );
                    }
                }
            }
        }
        let c = &self.conditions;
        if let Some(min) = c.min_subtotal {
            amount("conditions.min_subtotal", min, &mut e);
        }
        if let Some(q) = c.min_quantity
            && !(1..=10_000).contains(&q)
        {
            e.push("conditions.min_quantity", "out_of_range", "must be between 1 and 10000");
        }
        for (field, list) in [
            ("conditions.products", &c.products),
            ("conditions.exclude_products", &c.exclude_products),
            ("conditions.categories", &c.categories),
            ("conditions.exclude_categories", &c.exclude_categories),
            ("conditions.collections", &c.collections),
            ("conditions.exclude_collections", &c.exclude_collections),
            ("conditions.customers", &c.customers),
        ] {
            if list.len() > MAX_LIST {
                e.push(field, "too_many", format!("at most {MAX_LIST} entries"));
            }
        }
        if c.segments.len() > 50 {
            e.push("conditions.segments", "too_many", "at most 50 segments");
        }
        for (i, name) in c.segments.iter().enumerate() {
            e.check(format!("conditions.segments[{i}]"), parse_segment(name));
        }
        for (field, included, excluded) in [
            ("conditions.exclude_products", &c.products, &c.exclude_products),
            ("conditions.exclude_categories", &c.categories, &c.exclude_categories),
            ("conditions.exclude_collections", &c.collections, &c.exclude_collections),
        ] {
            let included: BTreeSet<&Uuid> = included.iter().collect();
            for (i, id) in excluded.iter().enumerate() {
                if included.contains(id) {
                    e.push(format!("{field}[{i}]"), "contradictory", "this id is both included and excluded");
                }
            }
        }
        if let Some(max) = self.max_discount {
            amount("max_discount", max, &mut e);
        }
        for (field, limit) in [("usage_limit", self.usage_limit), ("per_customer_limit", self.per_customer_limit)] {
            if limit.is_some_and(|l| !(1..=1_000_000_000).contains(&l)) {
                e.push(field, "out_of_range", "must be between 1 and 1000000000");
            }
        }
        if !(-1000..=1000).contains(&self.priority) {
            e.push("priority", "out_of_range", "must be between -1000 and 1000");
        }
        if let (Some(start), Some(end)) = (self.starts_at, self.ends_at)
            && end <= start
        {
            e.push("ends_at", "before_start", "the end must come after the start");
        }
        if e.is_empty() { Ok(self) } else { Err(e) }
    }

    pub fn currency(&self) -> Option<Currency> {
        self.currency.as_deref().and_then(|c| Currency::parse(c).ok())
    }
}

/// A customer segment's name: 1 to 50 lower-case letters, digits, `-` or `_`.
pub fn parse_segment(name: &str) -> Result<String, crate::domain::validation::Invalid> {
    let valid = (1..=50).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(crate::domain::validation::Invalid::new("invalid_segment", "1 to 50 lower-case letters, digits, '-' or '_'"))
    }
}

/// A stored promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub id: Uuid,
    pub rules: PromotionRules,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(action: Action) -> PromotionRules {
        PromotionRules { currency: Some("EUR".into()), ..PromotionRules::automatic("Sale", action) }
    }

    fn fields(r: PromotionRules) -> Vec<(String, String)> {
        r.validate().unwrap_err().into_vec().into_iter().map(|e| (e.field, e.code)).collect()
    }

    #[test]
    fn percentages_are_basis_points_within_0_to_100_percent() {
        assert!(rules(Action::OrderPercent { percent_bp: 10_000 }).validate().is_ok());
        for bad in [0, 10_001] {
            assert_eq!(
                fields(rules(Action::LinesPercent { percent_bp: bad })),
                [("action.percent_bp".into(), "out_of_range".into())]
            );
        }
    }

    #[test]
    fn money_needs_a_currency() {
        let mut r = rules(Action::OrderFixed { amount: 500 });
        r.currency = None;
        assert_eq!(fields(r), [("currency".into(), "required".into())]);
        let mut r = rules(Action::OrderPercent { percent_bp: 100 });
        r.currency = Some("eur".into());
        assert_eq!(fields(r)[0].0, "currency");
    }

    #[test]
    fn contradictions_are_named() {
        let p = Uuid::from_u128(7);
        let mut r = rules(Action::FreeShipping);
        r.conditions.products = vec![p];
        r.conditions.exclude_products = vec![Uuid::from_u128(8), p];
        r.starts_at = Some(time::macros::datetime!(2026-11-27 00:00 UTC));
        r.ends_at = Some(time::macros::datetime!(2026-11-26 00:00 UTC));
        assert_eq!(
            fields(r),
            [("conditions.exclude_products[1]".into(), "contradictory".into()), ("ends_at".into(), "before_start".into())]
        );
    }

    #[test]
    fn segments_are_plain_names() {
        let mut r = rules(Action::FreeShipping);
        r.conditions.segments = vec!["vip".into(), "VIP Club".into()];
        assert_eq!(fields(r), [("conditions.segments[1]".into(), "invalid_segment".into())]);
    }

    #[test]
    fn tiers_must_climb() {
        let r = rules(Action::Tiered {
            tiers: vec![
                Tier { min_subtotal: 10_000, amount_off: 1_000 },
                Tier { min_subtotal: 10_000, amount_off: 3_000 },
                Tier { min_subtotal: 20_000, amount_off: 25_000 },
            ],
        });
        assert_eq!(
            fields(r),
            [
                ("action.tiers[1]".into(), "not_increasing".into()),
                ("action.tiers[2].amount_off".into(), "exceeds_threshold".into())
            ]
        );
    }

    #[test]
    fn the_wire_shape_is_tagged_by_type() {
        let r: PromotionRules = serde_json::from_value(serde_json::json!({
            "name": "3 for 2", "action": {"type": "buy_x_get_y", "buy": 2, "get": 1}
        }))
        .unwrap();
        assert_eq!(r.action, Action::BuyXGetY { buy: 2, get: 1, percent_bp: FULL_BP });
        assert!(!r.automatic);
        assert!(serde_json::from_value::<PromotionRules>(serde_json::json!({"name": "x", "action": {"type": "bogus"}})).is_err());
    }
}
