//! Shipping options and tax rates: the store settings checkout prices with.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use uuid::Uuid;

use super::audit::{self, Actor, Change};
use super::read_batches::BatchedRead;
use super::rows::{flag, id, int, json, opt_int, text, to_json};
use super::{SqlBuilder, Store, StoreError, StoreResult, new_id, now};
use crate::domain::shipping::{Rate, ShippingRule};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShippingOption {
    pub id: Uuid,
    pub name: String,
    pub currency: String,
    /// ISO country codes it ships to; empty means everywhere.
    pub countries: Vec<String>,
    pub rate: Rate,
    /// Free when the items' subtotal reaches this amount (minor units).
    pub free_over: Option<i64>,
    pub active: bool,
}

impl ShippingOption {
    pub fn rule(&self) -> ShippingRule {
        ShippingRule { countries: self.countries.clone(), rate: self.rate.clone(), free_over: self.free_over }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TaxRate {
    pub id: Uuid,
    pub country: String,
    /// Empty for the whole country.
    pub region: String,
    /// Basis points: 1900 is 19 %.
    pub rate_bp: i64,
    pub name: String,
}

pub struct NewShippingOption {
    pub name: String,
    pub currency: String,
    pub countries: Vec<String>,
    pub rate: Rate,
    pub free_over: Option<i64>,
}

fn option_row(r: &sqlx::any::AnyRow) -> StoreResult<ShippingOption> {
    Ok(ShippingOption {
        id: id(r, "id")?,
        name: text(r, "name")?,
        currency: text(r, "currency")?,
        countries: json(r, "countries")?,
        rate: json(r, "rate")?,
        free_over: opt_int(r, "free_over")?,
        active: flag(r, "active")?,
    })
}

/// All shipping options, read once for every request waiting.
pub struct ShippingOptions;

impl BatchedRead for ShippingOptions {
    type Key = ();
    type Value = Vec<ShippingOption>;

    async fn read(store: &Store, _: &[()]) -> StoreResult<HashMap<(), Vec<ShippingOption>>> {
        let rows =
            sqlx::query("SELECT id, name, currency, countries, rate, free_over, active FROM shipping_options ORDER BY name, id")
                .fetch_all(&store.pool)
                .await?;
        Ok(HashMap::from([((), rows.iter().map(option_row).collect::<StoreResult<_>>()?)]))
    }
}

/// Tax rates of many (country, region) pairs in one statement.
pub struct TaxRates;

impl BatchedRead for TaxRates {
    type Key = (String, String);
    type Value = i64;

    async fn read(store: &Store, keys: &[(String, String)]) -> StoreResult<HashMap<(String, String), i64>> {
        let mut q = SqlBuilder::new("SELECT country, region, rate_bp FROM tax_rates WHERE country IN (");
        q.bind_list(keys.iter().map(|(c, _)| c.as_str()).collect::<BTreeSet<_>>()).push(")");
        let mut rates: HashMap<(String, String), i64> = HashMap::new();
        for r in &q.build().fetch_all(&store.pool).await? {
            rates.insert((text(r, "country")?, text(r, "region")?), int(r, "rate_bp")?);
        }
        Ok(keys
            .iter()
            .filter_map(|(country, region)| {
                let own = (!region.is_empty()).then(|| rates.get(&(country.clone(), region.clone()))).flatten();
                own.or_else(|| rates.get(&(country.clone(), String::new()))).map(|bp| ((country.clone(), region.clone()), *bp))
            })
            .collect())
    }
}

impl Store {
    /// Every shipping option; concurrent requests share one read ([`ShippingOptions`]).
    pub async fn shipping_options(&self) -> StoreResult<Vec<ShippingOption>> {
        Ok(self.reads.shipping_options.load(self, ()).await?.unwrap_or_default())
    }

    pub async fn create_shipping_option(&self, o: &NewShippingOption, actor: &Actor) -> StoreResult<ShippingOption> {
        let mut tx = self.begin().await?;
        let option = ShippingOption {
            id: new_id(),
            name: o.name.clone(),
            currency: o.currency.clone(),
            countries: o.countries.clone(),
            rate: o.rate.clone(),
            free_over: o.free_over,
            active: true,
        };
        sqlx::query(
            "INSERT INTO shipping_options (id, name, currency, countries, rate, free_over, active, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
        )
        .bind(option.id.to_string())
        .bind(option.name.as_str())
        .bind(option.currency.as_str())
        .bind(to_json(&option.countries))
        .bind(to_json(&option.rate))
        .bind(option.free_over)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            actor,
            Change {
                action: "shipping_option.create",
                entity_type: "shipping_option",
                entity_id: option.id,
                before: None,
                after: serde_json::to_value(&option).ok(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(option)
    }

    pub async fn tax_rates(&self) -> StoreResult<Vec<TaxRate>> {
        let rows = sqlx::query("SELECT id, country, region, rate_bp, name FROM tax_rates ORDER BY country, region")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TaxRate {
                    id: id(r, "id")?,
                    country: text(r, "country")?,
                    region: text(r, "region")?,
                    rate_bp: int(r, "rate_bp")?,
                    name: text(r, "name")?,
                })
            })
            .collect()
    }

    /// Creates or replaces the rate for a country (and region).
    pub async fn put_tax_rate(
        &self,
        country: &str,
        region: &str,
        rate_bp: i64,
        name: &str,
        actor: &Actor,
    ) -> StoreResult<TaxRate> {
        let mut tx = self.begin().await?;
        let rate_id = new_id();
        sqlx::query(
            "INSERT INTO tax_rates (id, country, region, rate_bp, name, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (country, region) DO UPDATE SET rate_bp = excluded.rate_bp, name = excluded.name",
        )
        .bind(rate_id.to_string())
        .bind(country)
        .bind(region)
        .bind(rate_bp)
        .bind(name)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_db)?;
        let row = sqlx::query("SELECT id, country, region, rate_bp, name FROM tax_rates WHERE country = $1 AND region = $2")
            .bind(country)
            .bind(region)
            .fetch_one(&mut *tx)
            .await?;
        let rate = TaxRate {
            id: id(&row, "id")?,
            country: text(&row, "country")?,
            region: text(&row, "region")?,
            rate_bp: int(&row, "rate_bp")?,
            name: text(&row, "name")?,
        };
        audit::record(
            &mut tx,
            actor,
            Change {
                action: "tax_rate.put",
                entity_type: "tax_rate",
                entity_id: rate.id,
                before: None,
                after: serde_json::to_value(&rate).ok(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(rate)
    }

    /// The tax rate (basis points) for a country and region: the region's own
    /// rate, else the country's, else 0. Concurrent requests share one read ([`TaxRates`]).
    pub async fn tax_rate_for(&self, country: &str, region: &str) -> StoreResult<i64> {
        Ok(self.reads.tax_rates.load(self, (country.to_owned(), region.to_owned())).await?.unwrap_or(0))
    }
}
