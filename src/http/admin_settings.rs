//! Shop settings that checkout prices with: shipping options and tax rates.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::extract::{ApiJson, Staff, perm};
use crate::domain::money::Currency;
use crate::domain::shipping::{Rate, check_rate, parse_country};
use crate::domain::validation::{FieldErrors, required_text};
use crate::error::{ApiError, ApiResult, Problem};
use crate::store::rates::{NewShippingOption, ShippingOption, TaxRate};

#[derive(Serialize, utoipa::ToSchema)]
pub struct ShippingOptionList {
    pub items: Vec<ShippingOption>,
}

/// Every shipping option.
#[utoipa::path(get, path = "/v1/admin/shipping-options", tag = "admin-settings",
    responses((status = 200, body = ShippingOptionList)), security(("staff_token" = ["settings:manage"])))]
pub async fn list_shipping(
    _staff: Staff<perm::SettingsManage>,
    State(state): State<AppState>,
) -> ApiResult<Json<ShippingOptionList>> {
    Ok(Json(ShippingOptionList { items: state.store.shipping_options().await? }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingOptionInput {
    pub name: String,
    pub currency: String,
    /// ISO country codes; empty or absent ships everywhere.
    #[serde(default)]
    pub countries: Vec<String>,
    pub rate: Rate,
    pub free_over: Option<i64>,
}

/// Adds a shipping option (flat or by weight, optionally free over a subtotal).
#[utoipa::path(post, path = "/v1/admin/shipping-options", tag = "admin-settings", request_body = ShippingOptionInput,
    responses((status = 201, body = ShippingOption), (status = 422, body = Problem)), security(("staff_token" = ["settings:manage"])))]
pub async fn create_shipping(
    staff: Staff<perm::SettingsManage>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<ShippingOptionInput>,
) -> ApiResult<(StatusCode, Json<ShippingOption>)> {
    let mut errors = FieldErrors::new();
    let name = errors.check("name", required_text(&input.name, 100));
    let currency = errors.check("currency", Currency::parse(&input.currency));
    let countries: Vec<String> = input
        .countries
        .iter()
        .enumerate()
        .filter_map(|(i, c)| errors.check(format!("countries[{i}]"), parse_country(c)))
        .collect();
    check_rate(&input.rate, &mut errors);
    if input.free_over.is_some_and(|f| f < 0) {
        errors.push("free_over", "negative", "must not be negative");
    }
    let (Some(name), Some(currency)) = (name, currency) else { return Err(ApiError::Validation(errors.into_vec())) };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors.into_vec()));
    }
    let new = NewShippingOption {
        name,
        currency: currency.as_str().to_owned(),
        countries,
        rate: input.rate,
        free_over: input.free_over,
    };
    Ok((StatusCode::CREATED, Json(state.store.create_shipping_option(&new, &staff.actor()).await?)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TaxRateList {
    pub items: Vec<TaxRate>,
}

/// Every tax rate.
#[utoipa::path(get, path = "/v1/admin/tax-rates", tag = "admin-settings",
    responses((status = 200, body = TaxRateList)), security(("staff_token" = ["settings:manage"])))]
pub async fn list_tax(_staff: Staff<perm::SettingsManage>, State(state): State<AppState>) -> ApiResult<Json<TaxRateList>> {
    Ok(Json(TaxRateList { items: state.store.tax_rates().await? }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxRateInput {
    pub country: String,
    /// A region with its own rate; absent for the whole country.
    #[serde(default)]
    pub region: String,
    /// Basis points: 1900 is 19 %.
    pub rate_bp: i64,
    pub name: String,
}

/// Sets the tax rate of a country (or one of its regions).
#[utoipa::path(put, path = "/v1/admin/tax-rates", tag = "admin-settings", request_body = TaxRateInput,
    responses((status = 200, body = TaxRate), (status = 422, body = Problem)), security(("staff_token" = ["settings:manage"])))]
pub async fn put_tax(
    staff: Staff<perm::SettingsManage>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<TaxRateInput>,
) -> ApiResult<Json<TaxRate>> {
    let mut errors = FieldErrors::new();
    let country = errors.check("country", parse_country(&input.country));
    let region = errors.check("region", crate::domain::catalog::optional_text(&input.region, 100));
    let name = errors.check("name", required_text(&input.name, 100));
    if !(0..=10_000).contains(&input.rate_bp) {
        errors.push("rate_bp", "out_of_range", "between 0 and 10000 basis points");
    }
    match (country, region, name) {
        (Some(c), Some(r), Some(n)) if errors.is_empty() => {
            Ok(Json(state.store.put_tax_rate(&c, &r, input.rate_bp, &n, &staff.actor()).await?))
        }
        _ => Err(ApiError::Validation(errors.into_vec())),
    }
}
