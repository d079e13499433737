//! Prices of every currency in one integer index field: the currency's code in
//! the high bits, the amount (minor units) in the low 40. Within one currency the
//! encoding keeps the order of amounts, so a price range or sort in a currency is
//! a range or sort over its band, and a shop's new currency needs no new field.

use super::money::{Currency, MAX_PRICE_MINOR};

const AMOUNT_BITS: u32 = 40;
const AMOUNT_MASK: u64 = (1 << AMOUNT_BITS) - 1;

const _: () = assert!(MAX_PRICE_MINOR as u64 <= AMOUNT_MASK, "every valid price fits in a band");

/// The band number of a currency: its three letters in base 26.
fn band(currency: Currency) -> u64 {
    currency.as_str().bytes().fold(0, |acc, b| acc * 26 + u64::from(b - b'A'))
}

/// The encoded value of `amount` (clamped to the valid price range) in `currency`.
pub fn encode(currency: Currency, amount: i64) -> u64 {
    let amount = amount.clamp(0, MAX_PRICE_MINOR) as u64;
    (band(currency) << AMOUNT_BITS) | amount
}

/// The encoded values from `min` to `max` (inclusive) in `currency`.
pub fn range(currency: Currency, min: Option<i64>, max: Option<i64>) -> (u64, u64) {
    (encode(currency, min.unwrap_or(0)), encode(currency, max.unwrap_or(MAX_PRICE_MINOR)))
}

/// Whether two encoded values are prices in the same currency.
pub fn same_currency(a: u64, b: u64) -> bool {
    a >> AMOUNT_BITS == b >> AMOUNT_BITS
}

/// The amount of `value` if it is a price in `currency`.
pub fn decode_in(currency: Currency, value: u64) -> Option<i64> {
    (value >> AMOUNT_BITS == band(currency)).then_some((value & AMOUNT_MASK) as i64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn currency() -> impl Strategy<Value = Currency> {
        "[A-Z]{3}".prop_map(|c| Currency::parse(&c).expect("three upper-case letters"))
    }

    proptest! {
        #[test]
        fn order_is_kept_within_a_currency(c in currency(), a in 0..=MAX_PRICE_MINOR, b in 0..=MAX_PRICE_MINOR) {
            prop_assert_eq!(a.cmp(&b), encode(c, a).cmp(&encode(c, b)));
            prop_assert_eq!(decode_in(c, encode(c, a)), Some(a));
        }

        #[test]
        fn bands_never_overlap(c in currency(), d in currency(), a in 0..=MAX_PRICE_MINOR) {
            prop_assume!(c != d);
            let (lo, hi) = range(d, None, None);
            prop_assert!(!(lo..=hi).contains(&encode(c, a)));
            prop_assert_eq!(decode_in(d, encode(c, a)), None);
        }
    }

    #[test]
    fn a_range_covers_its_bounds_only() {
        let eur = Currency::parse("EUR").unwrap();
        let (lo, hi) = range(eur, Some(1000), Some(2000));
        assert!((lo..=hi).contains(&encode(eur, 1000)));
        assert!((lo..=hi).contains(&encode(eur, 2000)));
        assert!(!(lo..=hi).contains(&encode(eur, 999)));
        assert!(!(lo..=hi).contains(&encode(eur, 2001)));
    }
}
