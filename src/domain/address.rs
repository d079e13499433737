//! Postal addresses as checkout and the address book accept them.

use serde::{Deserialize, Serialize};

use super::catalog::optional_text;
use super::shipping::parse_country;
use super::validation::{FieldError, FieldErrors, required_text};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    pub city: String,
    /// State, province or county; required where tax rates differ by region.
    #[serde(default)]
    pub region: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    pub country: String,
    #[serde(default)]
    pub phone: String,
}

impl Address {
    /// A trimmed, checked copy; errors are reported under `prefix`.
    pub fn parse(&self, prefix: &str) -> Result<Address, Vec<FieldError>> {
        let mut e = FieldErrors::new();
        let f = |name: &str| if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") };
        let name = e.check(f("name"), required_text(&self.name, 200));
        let line1 = e.check(f("line1"), required_text(&self.line1, 200));
        let line2 = e.check(f("line2"), optional_text(&self.line2, 200));
        let city = e.check(f("city"), required_text(&self.city, 100));
        let region = e.check(f("region"), optional_text(&self.region, 100));
        let postal_code = e.check(f("postal_code"), required_text(&self.postal_code, 20));
        let country = e.check(f("country"), parse_country(&self.country));
        let phone = e.check(f("phone"), optional_text(&self.phone, 40));
        match (name, line1, line2, city, region, postal_code, country, phone) {
            (Some(name), Some(line1), Some(line2), Some(city), Some(region), Some(postal_code), Some(country), Some(phone))
                if e.is_empty() =>
            {
                Ok(Address { name, line1, line2, city, region, postal_code, country, phone })
            }
            _ => Err(e.into_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Address {
        Address {
            name: " Ann Lee ".into(),
            line1: "1 Main St".into(),
            line2: String::new(),
            city: "Berlin".into(),
            region: String::new(),
            postal_code: "10115".into(),
            country: "DE".into(),
            phone: String::new(),
        }
    }

    #[test]
    fn a_good_address_is_trimmed() {
        assert_eq!(addr().parse("shipping_address").unwrap().name, "Ann Lee");
    }

    #[test]
    fn every_bad_field_is_named_under_its_prefix() {
        let bad = Address { city: " ".into(), country: "Germany".into(), ..addr() };
        let fields: Vec<_> = bad.parse("shipping_address").unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["shipping_address.city", "shipping_address.country"]);
    }
}
