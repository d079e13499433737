//! Shipping rates: flat or by weight tiers, optionally free above a subtotal,
//! limited to a set of countries. Picking "the cheapest option that ships there"
//! is a pure function of the options, the destination, the subtotal and the weight.

use serde::{Deserialize, Serialize};

use super::validation::{FieldErrors, Invalid};

/// A weight tier: parcels up to `up_to_grams` (inclusive) cost `amount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightTier {
    pub up_to_grams: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rate {
    /// One price whatever the weight.
    Flat { amount: i64 },
    /// The first tier whose limit the parcel's weight does not exceed; heavier parcels cannot ship.
    Weight { tiers: Vec<WeightTier> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippingRule {
    pub countries: Vec<String>,
    pub rate: Rate,
    /// Free when the subtotal reaches this amount.
    pub free_over: Option<i64>,
}

impl ShippingRule {
    pub fn ships_to(&self, country: &str) -> bool {
        self.countries.is_empty() || self.countries.iter().any(|c| c == country)
    }

    /// The price for a parcel, or `None` when it cannot be shipped with this rule.
    pub fn quote(&self, country: &str, subtotal: i64, weight_grams: i64) -> Option<i64> {
        if !self.ships_to(country) {
            return None;
        }
        let base = match &self.rate {
            Rate::Flat { amount } => *amount,
            Rate::Weight { tiers } => tiers.iter().find(|t| weight_grams <= t.up_to_grams)?.amount,
        };
        match self.free_over {
            Some(threshold) if subtotal >= threshold => Some(0),
            _ => Some(base),
        }
    }
}

/// Validates a rate: amounts non-negative, tiers strictly increasing.
pub fn check_rate(rate: &Rate, errors: &mut FieldErrors) {
    match rate {
        Rate::Flat { amount } => {
            if *amount < 0 {
                errors.push("rate.amount", "negative", "must not be negative");
            }
        }
        Rate::Weight { tiers } => {
            if tiers.is_empty() {
                errors.push("rate.tiers", "required", "at least one tier");
            }
            for (i, t) in tiers.iter().enumerate() {
                if t.amount < 0 {
                    errors.push(format!("rate.tiers[{i}].amount"), "negative", "must not be negative");
                }
                if t.up_to_grams <= 0 || (i > 0 && t.up_to_grams <= tiers[i - 1].up_to_grams) {
                    errors.push(format!("rate.tiers[{i}].up_to_grams"), "invalid", "tiers must have increasing positive limits");
                }
            }
        }
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case.
pub fn parse_country(value: &str) -> Result<String, Invalid> {
    let v = value.trim();
    if v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(v.to_owned())
    } else {
        Err(Invalid::new("invalid_country", "must be an ISO 3166-1 alpha-2 code such as DE or US"))
    }
}

/// The cheapest of `options` that ships the parcel; ties go to the earlier option.
pub fn cheapest<'a, K>(options: &'a [(K, ShippingRule)], country: &str, subtotal: i64, weight: i64) -> Option<(&'a K, i64)> {
    options
        .iter()
        .filter_map(|(k, rule)| rule.quote(country, subtotal, weight).map(|price| (k, price)))
        .min_by_key(|(_, price)| *price)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn flat(amount: i64, free_over: Option<i64>, countries: &[&str]) -> ShippingRule {
        ShippingRule { countries: countries.iter().map(|c| c.to_string()).collect(), rate: Rate::Flat { amount }, free_over }
    }

    fn by_weight() -> ShippingRule {
        ShippingRule {
            countries: vec![],
            rate: Rate::Weight {
                tiers: vec![WeightTier { up_to_grams: 1000, amount: 500 }, WeightTier { up_to_grams: 5000, amount: 900 }],
            },
            free_over: None,
        }
    }

    #[test]
    fn weight_tiers_and_limits() {
        assert_eq!(by_weight().quote("DE", 0, 0), Some(500));
        assert_eq!(by_weight().quote("DE", 0, 1000), Some(500));
        assert_eq!(by_weight().quote("DE", 0, 1001), Some(900));
        assert_eq!(by_weight().quote("DE", 0, 5001), None);
    }

    #[test]
    fn free_over_a_threshold_and_only_where_it_ships() {
        let rule = flat(495, Some(5000), &["DE", "AT"]);
        assert_eq!(rule.quote("DE", 4999, 0), Some(495));
        assert_eq!(rule.quote("DE", 5000, 0), Some(0));
        assert_eq!(rule.quote("FR", 9999, 0), None);
    }

    #[test]
    fn the_cheapest_that_ships_is_chosen() {
        let options = vec![("express", flat(1500, None, &[])), ("standard", flat(495, None, &["DE"])), ("heavy", by_weight())];
        assert_eq!(cheapest(&options, "DE", 0, 100), Some((&"standard", 495)));
        assert_eq!(cheapest(&options, "FR", 0, 100), Some((&"heavy", 500)));
        assert_eq!(cheapest(&options, "FR", 0, 9000), Some((&"express", 1500)));
    }

    #[test]
    fn bad_tiers_are_named() {
        let mut errors = FieldErrors::new();
        check_rate(
            &Rate::Weight {
                tiers: vec![WeightTier { up_to_grams: 500, amount: 1 }, WeightTier { up_to_grams: 500, amount: -1 }],
            },
            &mut errors,
        );
        let fields: Vec<_> = errors.into_vec().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["rate.tiers[1].amount", "rate.tiers[1].up_to_grams"]);
    }

    proptest! {
        #[test]
        fn the_cheapest_is_no_dearer_than_any_option_that_ships(
            amounts in proptest::collection::vec(0i64..10_000, 1..6), subtotal in 0i64..20_000, free in proptest::option::of(0i64..20_000)
        ) {
            let options: Vec<_> = amounts.iter().enumerate().map(|(i, a)| (i, flat(*a, if i == 0 { free } else { None }, &[]))).collect();
            let (_, best) = cheapest(&options, "DE", subtotal, 0).unwrap();
            for (_, rule) in &options {
                prop_assert!(best <= rule.quote("DE", subtotal, 0).unwrap());
            }
        }
    }
}
