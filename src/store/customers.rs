//! Customer accounts and their address books.

use serde::Serialize;
use uuid::Uuid;

use super::rows::{id, text};
use super::{SqlBuilder, Store, StoreError, StoreResult, new_id, now};
use crate::domain::address::Address;
use crate::domain::email::Email;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Customer {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub created_at: String,
}

pub struct CustomerCredentials {
    pub customer: Customer,
    pub password_hash: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SavedAddress {
    pub id: Uuid,
    #[serde(flatten)]
    pub address: Address,
}

const SELECT_CUSTOMER: &str = "SELECT id, email, name, created_at, password_hash FROM customers";
const SELECT_ADDRESS: &str = "SELECT id, name, line1, line2, city, region, postal_code, country, phone FROM addresses";

fn customer_row(r: &sqlx::any::AnyRow) -> StoreResult<CustomerCredentials> {
    Ok(CustomerCredentials {
        customer: Customer {
            id: id(r, "id")?,
            email: text(r, "email")?,
            name: text(r, "name")?,
            created_at: text(r, "created_at")?,
        },
        password_hash: text(r, "password_hash")?,
    })
}

fn address_row(r: &sqlx::any::AnyRow) -> StoreResult<SavedAddress> {
    Ok(SavedAddress {
        id: id(r, "id")?,
        address: Address {
            name: text(r, "name")?,
            line1: text(r, "line1")?,
            line2: text(r, "line2")?,
            city: text(r, "city")?,
            region: text(r, "region")?,
            postal_code: text(r, "postal_code")?,
            country: text(r, "country")?,
            phone: text(r, "phone")?,
        },
    })
}

/// At most this many saved addresses per customer.
pub const MAX_ADDRESSES: i64 = 50;

impl Store {
    pub async fn create_customer(&self, email: &Email, name: &str, password_hash: &str) -> StoreResult<Customer> {
        let customer_id = new_id();
        let ts = now();
        sqlx::query(
            "INSERT INTO customers (id, email, name, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(customer_id.to_string())
        .bind(email.as_str())
        .bind(name)
        .bind(password_hash)
        .bind(ts.as_str())
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_db)?;
        Ok(Customer { id: customer_id, email: email.as_str().to_owned(), name: name.to_owned(), created_at: ts })
    }

    pub async fn customer_by_email(&self, email: &Email) -> StoreResult<Option<CustomerCredentials>> {
        let mut q = SqlBuilder::new(SELECT_CUSTOMER);
        q.push(" WHERE email = ").bind(email.as_str());
        q.build().fetch_optional(&self.pool).await?.as_ref().map(customer_row).transpose()
    }

    pub async fn customer_by_id(&self, customer_id: Uuid) -> StoreResult<Option<Customer>> {
        let mut q = SqlBuilder::new(SELECT_CUSTOMER);
        q.push(" WHERE id = ").bind(customer_id.to_string());
        Ok(q.build().fetch_optional(&self.pool).await?.as_ref().map(customer_row).transpose()?.map(|c| c.customer))
    }

    pub async fn customer_segments(&self, customer_id: Uuid) -> StoreResult<Vec<String>> {
        let row = sqlx::query("SELECT segments FROM customers WHERE id = $1")
            .bind(customer_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|r| super::rows::json(r, "segments")).transpose().map(Option::unwrap_or_default)
    }

    /// Replaces a customer's segments; `false` when there is no such customer.
    pub async fn set_customer_segments(
        &self,
        customer_id: Uuid,
        segments: &[String],
        actor: &super::audit::Actor,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let before = sqlx::query("SELECT segments FROM customers WHERE id = $1")
            .bind(customer_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(before) = before else { return Ok(false) };
        sqlx::query("UPDATE customers SET segments = $1, updated_at = $2 WHERE id = $3")
            .bind(super::rows::to_json(&segments))
            .bind(now())
            .bind(customer_id.to_string())
            .execute(&mut *tx)
            .await?;
        super::audit::record(
            &mut tx,
            actor,
            super::audit::Change {
                action: "customer.segments",
                entity_type: "customer",
                entity_id: customer_id,
                before: super::rows::opt_json(&before, "segments")?,
                after: Some(serde_json::json!(segments)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn addresses(&self, customer_id: Uuid) -> StoreResult<Vec<SavedAddress>> {
        let mut q = SqlBuilder::new(SELECT_ADDRESS);
        q.push(" WHERE customer_id = ").bind(customer_id.to_string()).push(" ORDER BY id");
        q.build().fetch_all(&self.pool).await?.iter().map(address_row).collect()
    }

    /// Saves an address; `None` when the address book is full.
    pub async fn add_address(&self, customer_id: Uuid, a: &Address) -> StoreResult<Option<SavedAddress>> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM addresses WHERE customer_id = $1")
            .bind(customer_id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if super::rows::int(&row, "n")? >= MAX_ADDRESSES {
            return Ok(None);
        }
        let address_id = new_id();
        sqlx::query(
            "INSERT INTO addresses (id, customer_id, name, line1, line2, city, region, postal_code, country, phone, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(address_id.to_string())
        .bind(customer_id.to_string())
        .bind(a.name.as_str())
        .bind(a.line1.as_str())
        .bind(a.line2.as_str())
        .bind(a.city.as_str())
        .bind(a.region.as_str())
        .bind(a.postal_code.as_str())
        .bind(a.country.as_str())
        .bind(a.phone.as_str())
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(SavedAddress { id: address_id, address: a.clone() }))
    }

    /// Deletes one of the customer's addresses; false when it is not theirs or unknown.
    pub async fn delete_address(&self, customer_id: Uuid, address_id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM addresses WHERE id = $1 AND customer_id = $2")
            .bind(address_id.to_string())
            .bind(customer_id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(done == 1)
    }
}
