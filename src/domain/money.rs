//! Money is an integer count of minor units (cents, pence, yen) plus an ISO 4217
//! currency. Floats never touch an amount; arithmetic is checked so an absurd
//! total is an error, not a wrapped number.

use std::fmt;

use super::validation::Invalid;

/// The largest single price accepted: 1 billion major units of a 2-decimal currency.
/// Anything above is a typo, and keeping amounts far from `i64::MAX` means sums of
/// many lines cannot overflow.
pub const MAX_PRICE_MINOR: i64 = 100_000_000_000;

/// An ISO 4217 alphabetic code, upper case, e.g. `EUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, Invalid> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(Invalid::new("invalid_currency", "must be a three-letter upper-case ISO 4217 code"));
        }
        Ok(Self([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        // The constructor only admits ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Number of minor-unit digits, for display. ISO 4217 exponents for the
    /// currencies that differ from 2; everything else uses 2.
    pub fn exponent(&self) -> u32 {
        match self.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND" | "VUV"
            | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("cannot combine {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount out of range")]
    Overflow,
}

impl Money {
    /// A price as set by staff: never negative and never absurd.
    pub fn price(minor: i64, currency: Currency) -> Result<Self, Invalid> {
        if minor < 0 {
            return Err(Invalid::new("negative", "must not be negative"));
        }
        if minor > MAX_PRICE_MINOR {
            return Err(Invalid::new("too_large", format!("must be at most {MAX_PRICE_MINOR} minor units")));
        }
        Ok(Self { minor, currency })
    }

    pub fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }

    pub fn checked_mul(self, quantity: i64) -> Result<Money, MoneyError> {
        let minor = self.minor.checked_mul(quantity).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_amount(self.minor, self.currency))
    }
}

/// `12.50 EUR`, `1500 JPY`: any amount in minor units (a price, a total, a
/// refund) as the decimal string of its currency, never through a float.
pub fn format_amount(minor: i64, currency: Currency) -> String {
    let exp = currency.exponent();
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if exp == 0 {
        return format!("{sign}{abs} {currency}");
    }
    let div = 10u64.pow(exp);
    format!("{sign}{}.{:0width$} {currency}", abs / div, abs % div, width = exp as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn currency_codes_are_three_upper_case_letters() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EU", "EURO", "E1R", "", "ÉUR"] {
            assert!(Currency::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn prices_are_bounded() {
        assert!(Money::price(-1, eur()).is_err());
        assert!(Money::price(MAX_PRICE_MINOR + 1, eur()).is_err());
        assert!(Money::price(0, eur()).is_ok());
    }

    #[test]
    fn display_uses_the_currency_exponent() {
        assert_eq!(Money::price(1250, eur()).unwrap().to_string(), "12.50 EUR");
        assert_eq!(Money::price(5, eur()).unwrap().to_string(), "0.05 EUR");
        assert_eq!(Money::price(1500, Currency::parse("JPY").unwrap()).unwrap().to_string(), "1500 JPY");
        assert_eq!(Money::price(1500, Currency::parse("KWD").unwrap()).unwrap().to_string(), "1.500 KWD");
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let usd = Currency::parse("USD").unwrap();
        let err = Money::zero(eur()).checked_add(Money::zero(usd)).unwrap_err();
        assert_eq!(err, MoneyError::CurrencyMismatch(eur(), usd));
    }

    proptest! {
        #[test]
        fn addition_is_exact_and_commutative(a in 0..=MAX_PRICE_MINOR, b in 0..=MAX_PRICE_MINOR) {
            let x = Money::price(a, eur()).unwrap();
            let y = Money::price(b, eur()).unwrap();
            prop_assert_eq!(x.checked_add(y).unwrap().minor(), a + b);
            prop_assert_eq!(x.checked_add(y), y.checked_add(x));
        }

        #[test]
        fn multiplication_never_wraps(a in 0..=i64::MAX, q in 0..=i64::MAX) {
            let m = Money { minor: a, currency: eur() };
            match m.checked_mul(q) {
                Ok(r) => prop_assert_eq!(Some(r.minor()), a.checked_mul(q)),
                Err(e) => prop_assert_eq!(e, MoneyError::Overflow),
            }
        }

        #[test]
        fn display_round_trips_the_minor_units(a in 0..=MAX_PRICE_MINOR) {
            let shown = Money::price(a, eur()).unwrap().to_string();
            let digits: String = shown.chars().filter(char::is_ascii_digit).collect();
            prop_assert_eq!(digits.parse::<i64>().unwrap(), a);
        }
    }
}
