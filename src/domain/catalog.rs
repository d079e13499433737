//! Catalog input rules: what a product, its variants and their prices must look
//! like before anything is stored. `ProductInput` is what a client (or an import
//! line) sends; `NewProduct::parse` turns it into a value that is valid by
//! construction, or into the list of every offending field.
//!
//! The input types derive `ToSchema` so the API reference documents exactly the
//! shape this module parses; they carry no behaviour beyond that.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::money::{Currency, Money};
use super::slug::Slug;
use super::validation::{FieldError, FieldErrors, Invalid, required_text};
use super::variant_matrix::{self, ProductOption, Selection};

pub const MAX_TITLE: usize = 200;
pub const MAX_DESCRIPTION: usize = 20_000;
pub const MAX_IMAGES: usize = 50;
pub const MAX_ATTRIBUTES: usize = 50;
pub const MAX_CATEGORIES: usize = 20;
pub const MAX_WEIGHT_GRAMS: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    /// Visible to staff only.
    #[default]
    Draft,
    /// Visible in the storefront.
    Published,
    /// Withdrawn; kept for order history.
    Archived,
}

impl ProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Draft => "draft",
            ProductStatus::Published => "published",
            ProductStatus::Archived => "archived",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Draft, Self::Published, Self::Archived].into_iter().find(|s| s.as_str() == value)
    }
}

/// A stock-keeping unit: the identifier warehouses, feeds and imports agree on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sku(String);

impl Sku {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let v = value.trim();
        if v.is_empty() {
            return Err(Invalid::new("required", "must not be empty"));
        }
        if v.len() > 64 {
            return Err(Invalid::new("too_long", "must be at most 64 characters"));
        }
        if !v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
            return Err(Invalid::new("invalid_sku", "may contain only letters, digits, '-', '_' and '.'"));
        }
        Ok(Self(v.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A GTIN (EAN-8, UPC-A, EAN-13, GTIN-14) with a correct check digit.
pub fn parse_barcode(value: &str) -> Result<String, Invalid> {
    let v = value.trim();
    if !matches!(v.len(), 8 | 12 | 13 | 14) || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::new("invalid_barcode", "must be a GTIN of 8, 12, 13 or 14 digits"));
    }
    if gtin_check_digit(&v[..v.len() - 1]) != v.as_bytes()[v.len() - 1] - b'0' {
        return Err(Invalid::new("invalid_barcode", "the GTIN check digit is wrong"));
    }
    Ok(v.to_owned())
}

/// The GS1 check digit of the digits before it.
pub fn gtin_check_digit(body: &str) -> u8 {
    let sum: u32 = body.bytes().rev().enumerate().map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 }).sum();
    ((10 - sum % 10) % 10) as u8
}

/// An attribute is one value or a list (`material: cotton`, `features: [waterproof, vegan]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum AttributeValue {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// Integer minor units (cents): `1999` is 19.99 EUR.
    pub amount: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    pub url: String,
    #[serde(default)]
    pub alt: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantInput {
    pub sku: String,
    /// One value of every product option, e.g. `{"size": "M", "colour": "red"}`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// At least one price; one per currency.
    pub prices: Vec<PriceInput>,
    #[serde(default)]
    pub weight_grams: Option<i64>,
    /// GTIN with a valid check digit.
    #[serde(default)]
    pub barcode: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    pub title: String,
    /// Derived from the title when absent.
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub status: ProductStatus,
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeValue>,
    /// The option matrix, e.g. `[{"name": "size", "values": ["S", "M"]}]`.
    #[serde(default)]
    #[schema(value_type = Vec<OptionSchema>)]
    pub options: Vec<ProductOption>,
    pub variants: Vec<VariantInput>,
    #[serde(default)]
    pub category_ids: Vec<Uuid>,
    #[serde(default)]
    pub images: Vec<ImageInput>,
}

/// Schema of a product option as documented in the API.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "documentation-only mirror of `ProductOption`")]
pub struct OptionSchema {
    name: String,
    values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Image {
    pub url: String,
    pub alt: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewVariant {
    pub sku: Sku,
    pub options: Selection,
    pub prices: Vec<Money>,
    pub weight_grams: Option<i64>,
    pub barcode: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewProduct {
    pub title: String,
    pub slug: Slug,
    pub description: String,
    pub brand: Option<String>,
    pub status: ProductStatus,
    /// Flattened `(name, value)` pairs, unique.
    pub attributes: Vec<(String, String)>,
    pub options: Vec<ProductOption>,
    pub variants: Vec<NewVariant>,
    pub category_ids: Vec<Uuid>,
    pub images: Vec<Image>,
}

impl NewProduct {
    pub fn parse(input: &ProductInput) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let title = errors.check("title", required_text(&input.title, MAX_TITLE));
        let slug = match &input.slug {
            Some(s) => errors.check("slug", Slug::parse(s)),
            None => title.as_deref().and_then(|t| errors.check("slug", Slug::from_title(t))),
        };
        let description = errors.check("description", optional_text(&input.description, MAX_DESCRIPTION));
        let brand = parse_brand(input.brand.as_deref(), &mut errors);
        let attributes = parse_attributes(&input.attributes, &mut errors);
        let options = variant_matrix::parse_options(&input.options, &mut errors);
        let selections: Vec<Selection> = input.variants.iter().map(|v| v.options.clone()).collect();
        variant_matrix::check_variants(&options, &selections, &mut errors);
        let mut skus = HashSet::new();
        let variants: Vec<NewVariant> = input
            .variants
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let parsed = parse_variant_fields(v, &format!("variants[{i}]"), &mut errors)?;
                if !skus.insert(parsed.sku.clone()) {
                    errors.push(format!("variants[{i}].sku"), "duplicate", "SKUs must be unique");
                }
                Some(parsed)
            })
            .collect();
        let category_ids = parse_category_ids(&input.category_ids, &mut errors);
        let images = parse_images(&input.images, &mut errors);
        match (title, slug, description) {
            (Some(title), Some(slug), Some(description)) if errors.is_empty() => Ok(NewProduct {
                title,
                slug,
                description,
                brand,
                status: input.status,
                attributes,
                options,
                variants,
                category_ids,
                images,
            }),
            // Every `None` above recorded its error, so the list is never empty here.
            _ => Err(errors.into_vec()),
        }
    }
}

/// Parses the fields of one variant (not its option selection, which needs the
/// whole matrix). Errors are recorded under `prefix`.
pub fn parse_variant_fields(v: &VariantInput, prefix: &str, errors: &mut FieldErrors) -> Option<NewVariant> {
    let sku = errors.check(format!("{prefix}.sku"), Sku::parse(&v.sku));
    let prices = parse_prices(&v.prices, &format!("{prefix}.prices"), errors);
    let weight_grams = v.weight_grams.and_then(|w| errors.check(format!("{prefix}.weight_grams"), parse_weight(w)));
    let barcode = v.barcode.as_deref().and_then(|b| errors.check(format!("{prefix}.barcode"), parse_barcode(b)));
    Some(NewVariant { sku: sku?, options: v.options.clone(), prices, weight_grams, barcode })
}

pub fn parse_prices(raw: &[PriceInput], prefix: &str, errors: &mut FieldErrors) -> Vec<Money> {
    if raw.is_empty() {
        errors.push(prefix, "required", "at least one price is required");
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (j, p) in raw.iter().enumerate() {
        let Some(currency) = errors.check(format!("{prefix}[{j}].currency"), Currency::parse(&p.currency)) else {
            // Still judge the amount, so both mistakes are reported at once.
            if let Ok(placeholder) = Currency::parse("XXX") {
                errors.check(format!("{prefix}[{j}].amount"), Money::price(p.amount, placeholder));
            }
            continue;
        };
        if !seen.insert(currency) {
            errors.push(format!("{prefix}[{j}].currency"), "duplicate", "one price per currency");
        }
        if let Some(m) = errors.check(format!("{prefix}[{j}].amount"), Money::price(p.amount, currency)) {
            out.push(m);
        }
    }
    out
}

pub fn parse_weight(grams: i64) -> Result<i64, Invalid> {
    if !(0..=MAX_WEIGHT_GRAMS).contains(&grams) {
        return Err(Invalid::new("out_of_range", format!("must be between 0 and {MAX_WEIGHT_GRAMS} grams")));
    }
    Ok(grams)
}

pub fn optional_text(value: &str, max_chars: usize) -> Result<String, Invalid> {
    if value.trim().is_empty() { Ok(String::new()) } else { required_text(value, max_chars) }
}

pub fn parse_brand(brand: Option<&str>, errors: &mut FieldErrors) -> Option<String> {
    brand.filter(|b| !b.trim().is_empty()).and_then(|b| errors.check("brand", required_text(b, 100)))
}

pub fn parse_attributes(raw: &BTreeMap<String, AttributeValue>, errors: &mut FieldErrors) -> Vec<(String, String)> {
    if raw.len() > MAX_ATTRIBUTES {
        errors.push("attributes", "too_many", format!("at most {MAX_ATTRIBUTES} attributes"));
    }
    let mut out = Vec::new();
    for (name, value) in raw {
        let field = format!("attributes.{name}");
        let Some(name) = errors.check(field.clone(), attribute_name(name)) else { continue };
        let values: Vec<&String> = match value {
            AttributeValue::One(v) => vec![v],
            AttributeValue::Many(vs) => vs.iter().collect(),
        };
        if values.is_empty() || values.len() > 50 {
            errors.push(field.clone(), "invalid", "between 1 and 50 values");
        }
        let mut seen = HashSet::new();
        for v in values {
            if let Some(v) = errors.check(field.clone(), required_text(v, 100))
                && seen.insert(v.clone())
            {
                out.push((name.clone(), v));
            }
        }
    }
    out
}

fn attribute_name(name: &str) -> Result<String, Invalid> {
    let ok =
        !name.is_empty() && name.len() <= 40 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Invalid::new("invalid_name", "attribute names are lower-case letters, digits and '_', up to 40"))
    }
}

pub fn parse_category_ids(raw: &[Uuid], errors: &mut FieldErrors) -> Vec<Uuid> {
    if raw.len() > MAX_CATEGORIES {
        errors.push("category_ids", "too_many", format!("at most {MAX_CATEGORIES} categories"));
    }
    let mut seen = HashSet::new();
    raw.iter().copied().filter(|id| seen.insert(*id)).collect()
}

pub fn parse_images(raw: &[ImageInput], errors: &mut FieldErrors) -> Vec<Image> {
    if raw.len() > MAX_IMAGES {
        errors.push("images", "too_many", format!("at most {MAX_IMAGES} images"));
    }
    raw.iter()
        .enumerate()
        .filter_map(|(i, img)| {
            let url = errors.check(format!("images[{i}].url"), parse_image_url(&img.url))?;
            let alt = img.alt.as_deref().filter(|a| !a.trim().is_empty());
            let alt = match alt {
                Some(a) => Some(errors.check(format!("images[{i}].alt"), required_text(a, 300))?),
                None => None,
            };
            Some(Image { url, alt })
        })
        .collect()
}

fn parse_image_url(url: &str) -> Result<String, Invalid> {
    let u = url.trim();
    let ok = (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= 2048
        && u.len() > "https://".len()
        && !u.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(u.to_owned()) } else { Err(Invalid::new("invalid_url", "must be an http(s) URL of at most 2048 characters")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(json: serde_json::Value) -> ProductInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_product_with_a_size_by_colour_matrix_parses() {
        let p = NewProduct::parse(&input(serde_json::json!({
            "title": "Linen Shirt",
            "options": [{"name": "size", "values": ["S", "M"]}, {"name": "colour", "values": ["white"]}],
            "variants": [
                {"sku": "LS-S-W", "options": {"size": "S", "colour": "white"}, "prices": [{"currency": "EUR", "amount": 4900}]},
                {"sku": "LS-M-W", "options": {"size": "M", "colour": "white"}, "prices": [{"currency": "EUR", "amount": 4900}], "barcode": "4006381333931"}
            ],
            "attributes": {"material": "linen", "care": ["hand wash", "line dry"]}
        })))
        .unwrap();
        assert_eq!(p.slug.as_str(), "linen-shirt");
        assert_eq!(p.variants.len(), 2);
        assert_eq!(p.attributes.len(), 3);
        assert_eq!(p.status, ProductStatus::Draft);
    }

    #[test]
    fn every_bad_field_is_named() {
        let errors = NewProduct::parse(&input(serde_json::json!({
            "title": "",
            "slug": "Bad Slug",
            "options": [{"name": "size", "values": ["S"]}],
            "variants": [
                {"sku": "A 1", "options": {"size": "XL"}, "prices": [{"currency": "eur", "amount": -5}]},
                {"sku": "B", "options": {"size": "S"}, "prices": [], "barcode": "4006381333932", "weight_grams": -1}
            ],
            "images": [{"url": "ftp://x"}]
        })))
        .unwrap_err();
        let fields: HashSet<_> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "title",
            "slug",
            "variants[0].options",
            "variants[0].sku",
            "variants[0].prices[0].currency",
            "variants[0].prices[0].amount",
            "variants[1].prices",
            "variants[1].barcode",
            "variants[1].weight_grams",
            "images[0].url",
        ] {
            assert!(fields.contains(f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn duplicate_skus_and_currencies_are_rejected() {
        let errors = NewProduct::parse(&input(serde_json::json!({
            "title": "Mug",
            "options": [{"name": "colour", "values": ["red", "blue"]}],
            "variants": [
                {"sku": "MUG", "options": {"colour": "red"}, "prices": [{"currency": "EUR", "amount": 1}, {"currency": "EUR", "amount": 2}]},
                {"sku": "MUG", "options": {"colour": "blue"}, "prices": [{"currency": "EUR", "amount": 1}]}
            ]
        })))
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code.as_str())).collect();
        assert!(fields.contains(&("variants[0].prices[1].currency", "duplicate")));
        assert!(fields.contains(&("variants[1].sku", "duplicate")));
    }

    #[test]
    fn barcodes_need_a_valid_check_digit() {
        assert!(parse_barcode("4006381333931").is_ok());
        assert!(parse_barcode("036000291452").is_ok());
        assert!(parse_barcode("4006381333932").is_err());
        assert!(parse_barcode("12345").is_err());
    }

    proptest! {
        #[test]
        fn a_computed_check_digit_always_validates(body in "[0-9]{12}") {
            let code = format!("{body}{}", gtin_check_digit(&body));
            prop_assert!(parse_barcode(&code).is_ok());
        }

        #[test]
        fn skus_keep_their_alphabet(s in "[A-Za-z0-9._-]{1,64}") {
            let sku = Sku::parse(&s).unwrap();
            prop_assert_eq!(sku.as_str(), s.as_str());
        }
    }
}
