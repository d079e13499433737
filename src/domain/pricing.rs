//! Cart and order totals. Everything is integer minor units of one currency.
//!
//! Rounding rules (the ones a shop's accountant will ask about):
//! - Tax is computed per line on the line total (unit price × quantity), and on
//!   the shipping amount, each rounded half away from zero to the minor unit;
//!   the order's tax is the sum of those roundings, so lines always add up.
//! - With tax-exclusive prices, tax = amount × rate; the grand total is
//!   subtotal + shipping + tax.
//! - With tax-inclusive prices, the tax contained in an amount is
//!   amount × rate / (1 + rate); the grand total is subtotal + shipping.
//! - Rates are basis points (2000 = 20 %), so no float is involved anywhere.
//! - Discounts (see `promotions::evaluate`) come as a share per line and one on
//!   shipping; tax is computed on what is left of each, and the grand total is
//!   subtotal + shipping − discount total (+ tax when exclusive).

use serde::Serialize;

use super::money::MoneyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaxMode {
    Inclusive,
    Exclusive,
}

/// Divides rounding half away from zero. `den` must be positive.
pub fn div_round(num: i128, den: i128) -> i128 {
    if num >= 0 { (2 * num + den) / (2 * den) } else { -((2 * -num + den) / (2 * den)) }
}

/// The tax in (inclusive) or on top of (exclusive) `amount` at `rate_bp` basis points.
pub fn tax_for(amount: i64, rate_bp: u32, mode: TaxMode) -> i64 {
    let (a, r) = (i128::from(amount), i128::from(rate_bp));
    let tax = match mode {
        TaxMode::Exclusive => div_round(a * r, 10_000),
        TaxMode::Inclusive => div_round(a * r, 10_000 + r),
    };
    // |tax| <= |amount| for any rate, so this always fits.
    tax as i64
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInput {
    pub unit_price: i64,
    pub quantity: i64,
    /// This line's share of the discounts, at most its total.
    pub discount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineTotals {
    pub unit_price: i64,
    pub quantity: i64,
    pub line_total: i64,
    pub discount: i64,
    pub tax: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub lines: Vec<LineTotals>,
    /// Sum of line totals, as displayed (tax included when prices include it).
    pub subtotal: i64,
    pub shipping: i64,
    /// Line discounts plus the shipping discount.
    pub discount_total: i64,
    pub shipping_discount: i64,
    pub tax: i64,
    pub grand_total: i64,
}

pub fn totals(
    lines: &[LineInput],
    (shipping, shipping_discount): (i64, i64),
    rate_bp: u32,
    mode: TaxMode,
) -> Result<Totals, MoneyError> {
    let mut out = Vec::with_capacity(lines.len());
    let mut subtotal: i64 = 0;
    let mut discount_total = shipping_discount.clamp(0, shipping.max(0));
    let mut tax: i64 = 0;
    for l in lines {
        let line_total = l.unit_price.checked_mul(l.quantity).ok_or(MoneyError::Overflow)?;
        let discount = l.discount.clamp(0, line_total.max(0));
        let line_tax = tax_for(line_total - discount, rate_bp, mode);
        subtotal = subtotal.checked_add(line_total).ok_or(MoneyError::Overflow)?;
        discount_total += discount;
        tax = tax.checked_add(line_tax).ok_or(MoneyError::Overflow)?;
        out.push(LineTotals { unit_price: l.unit_price, quantity: l.quantity, line_total, discount, tax: line_tax });
    }
    let shipping_discount = shipping_discount.clamp(0, shipping.max(0));
    tax = tax.checked_add(tax_for(shipping - shipping_discount, rate_bp, mode)).ok_or(MoneyError::Overflow)?;
    let mut grand_total = subtotal.checked_add(shipping).ok_or(MoneyError::Overflow)? - discount_total;
    if mode == TaxMode::Exclusive {
        grand_total = grand_total.checked_add(tax).ok_or(MoneyError::Overflow)?;
    }
    Ok(Totals { lines: out, subtotal, shipping, discount_total, shipping_discount, tax, grand_total })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(div_round(5, 10), 1);
        assert_eq!(div_round(4, 10), 0);
        assert_eq!(div_round(15, 10), 2);
        assert_eq!(div_round(-15, 10), -2);
    }

    #[test]
    fn exclusive_and_inclusive_tax_examples() {
        // 19.99 at 20 % on top: 3.998 → 4.00.
        assert_eq!(tax_for(1999, 2000, TaxMode::Exclusive), 400);
        // 23.99 including 20 %: 23.99 × 0.2 / 1.2 = 3.998 → 4.00.
        assert_eq!(tax_for(2399, 2000, TaxMode::Inclusive), 400);
        // 0.05 at 7 %: 0.0035 → 0.00.
        assert_eq!(tax_for(5, 700, TaxMode::Exclusive), 0);
        assert_eq!(tax_for(1000, 0, TaxMode::Inclusive), 0);
    }

    #[test]
    fn an_exclusive_order_adds_tax_and_an_inclusive_one_contains_it() {
        let lines =
            [LineInput { unit_price: 1999, quantity: 3, discount: 0 }, LineInput { unit_price: 500, quantity: 1, discount: 0 }];
        let t = totals(&lines, (495, 0), 2000, TaxMode::Exclusive).unwrap();
        assert_eq!(t.subtotal, 6497);
        assert_eq!(t.tax, 1199 + 100 + 99);
        assert_eq!(t.grand_total, 6497 + 495 + 1398);
        let t = totals(&lines, (495, 0), 2000, TaxMode::Inclusive).unwrap();
        assert_eq!(t.grand_total, 6497 + 495);
        assert_eq!(t.tax, 1000 + 83 + 83);
    }

    #[test]
    fn tax_is_on_the_discounted_amounts() {
        let lines = [LineInput { unit_price: 1000, quantity: 2, discount: 500 }];
        let t = totals(&lines, (495, 495), 2000, TaxMode::Exclusive).unwrap();
        assert_eq!((t.subtotal, t.discount_total, t.tax), (2000, 995, 300));
        assert_eq!(t.grand_total, 2000 + 495 - 995 + 300);
    }

    #[test]
    fn absurd_quantities_overflow_cleanly() {
        let lines = [LineInput { unit_price: i64::MAX / 2, quantity: 3, discount: 0 }];
        assert_eq!(totals(&lines, (0, 0), 0, TaxMode::Exclusive), Err(MoneyError::Overflow));
    }

    proptest! {
        #[test]
        fn line_taxes_add_up_to_the_order_tax(
            lines in proptest::collection::vec((0i64..1_000_000, 1i64..100, 0i64..2_000_000), 1..20),
            shipping in 0i64..10_000,
            shipping_discount in 0i64..10_000,
            rate in 0u32..5_000,
            inclusive in any::<bool>(),
        ) {
            let mode = if inclusive { TaxMode::Inclusive } else { TaxMode::Exclusive };
            let input: Vec<_> = lines
                .iter()
                .map(|(p, q, d)| LineInput { unit_price: *p, quantity: *q, discount: (*d).min(p * q) })
                .collect();
            let shipping_discount = shipping_discount.min(shipping);
            let t = totals(&input, (shipping, shipping_discount), rate, mode).unwrap();
            let line_tax: i64 = t.lines.iter().map(|l| l.tax).sum();
            prop_assert_eq!(t.tax, line_tax + tax_for(shipping - shipping_discount, rate, mode));
            prop_assert_eq!(t.subtotal, t.lines.iter().map(|l| l.line_total).sum::<i64>());
            prop_assert_eq!(t.discount_total, t.lines.iter().map(|l| l.discount).sum::<i64>() + shipping_discount);
            prop_assert!(t.grand_total >= 0);
            match mode {
                TaxMode::Exclusive => prop_assert_eq!(t.grand_total, t.subtotal + shipping - t.discount_total + t.tax),
                TaxMode::Inclusive => prop_assert_eq!(t.grand_total, t.subtotal + shipping - t.discount_total),
            }
        }

        #[test]
        fn tax_never_exceeds_the_amount_and_is_within_half_a_unit(amount in 0i64..10_000_000_000, rate in 0u32..10_000) {
            let ex = tax_for(amount, rate, TaxMode::Exclusive);
            let exact = amount as f64 * rate as f64 / 10_000.0;
            prop_assert!((ex as f64 - exact).abs() <= 0.5 + 1e-6);
            let inc = tax_for(amount, rate, TaxMode::Inclusive);
            prop_assert!(inc <= amount && inc >= 0);
        }
    }
}
