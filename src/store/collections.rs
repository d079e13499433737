//! Collections: named sets of products staff pick by hand, for promotions.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use uuid::Uuid;

use super::audit::{self, Actor, Change};
use super::rows::{id, text};
use super::{SqlBuilder, Store, StoreError, StoreResult, Tx, new_id, now};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Collection {
    pub id: Uuid,
    pub name: String,
    pub product_ids: Vec<Uuid>,
    pub updated_at: String,
}

impl Store {
    pub async fn collections(&self) -> StoreResult<Vec<Collection>> {
        let rows = sqlx::query("SELECT id, name, updated_at FROM collections ORDER BY name, id").fetch_all(&self.pool).await?;
        let members = sqlx::query("SELECT collection_id, product_id FROM collection_products ORDER BY product_id")
            .fetch_all(&self.pool)
            .await?;
        let mut products: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
        for m in &members {
            products.entry(id(m, "collection_id")?).or_default().push(id(m, "product_id")?);
        }
        rows.iter()
            .map(|r| {
                let collection_id = id(r, "id")?;
                Ok(Collection {
                    id: collection_id,
                    name: text(r, "name")?,
                    product_ids: products.remove(&collection_id).unwrap_or_default(),
                    updated_at: text(r, "updated_at")?,
                })
            })
            .collect()
    }

    pub async fn collection(&self, collection_id: Uuid) -> StoreResult<Option<Collection>> {
        Ok(self.collections().await?.into_iter().find(|c| c.id == collection_id))
    }

    /// Creates (`None`) or replaces a collection; `Ok(None)` when the one to replace does not exist.
    pub async fn put_collection(
        &self,
        collection_id: Option<Uuid>,
        name: &str,
        products: &[Uuid],
        actor: &Actor,
    ) -> StoreResult<Option<Collection>> {
        let mut tx = self.begin().await?;
        let ts = now();
        let (collection_id, action) = match collection_id {
            None => {
                let fresh = new_id();
                sqlx::query("INSERT INTO collections (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)")
                    .bind(fresh.to_string())
                    .bind(name)
                    .bind(ts.as_str())
                    .execute(&mut *tx)
                    .await?;
                (fresh, "collection.create")
            }
            Some(existing) => {
                let updated = sqlx::query("UPDATE collections SET name = $1, updated_at = $2 WHERE id = $3")
                    .bind(name)
                    .bind(ts.as_str())
                    .bind(existing.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if updated == 0 {
                    return Ok(None);
                }
                (existing, "collection.update")
            }
        };
        set_products(&mut tx, collection_id, products).await?;
        audit::record(
            &mut tx,
            actor,
            Change {
                action,
                entity_type: "collection",
                entity_id: collection_id,
                before: None,
                after: Some(serde_json::json!({"name": name, "product_ids": products})),
            },
        )
        .await?;
        tx.commit().await?;
        self.collection(collection_id).await
    }

    /// The collections each of `products` is in.
    pub async fn product_collections(&self, products: &[Uuid]) -> StoreResult<BTreeMap<Uuid, Vec<Uuid>>> {
        let mut out: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
        if products.is_empty() {
            return Ok(out);
        }
        let mut q = SqlBuilder::new("SELECT product_id, collection_id FROM collection_products WHERE product_id IN (");
        q.bind_list(products.iter().map(Uuid::to_string)).push(")");
        for r in q.build().fetch_all(&self.pool).await? {
            out.entry(id(&r, "product_id")?).or_default().push(id(&r, "collection_id")?);
        }
        Ok(out)
    }

    /// Of `ids`, the collections that exist.
    pub async fn existing_collections(&self, ids: &[Uuid]) -> StoreResult<BTreeSet<Uuid>> {
        if ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let mut q = SqlBuilder::new("SELECT id FROM collections WHERE id IN (");
        q.bind_list(ids.iter().map(Uuid::to_string)).push(")");
        q.build().fetch_all(&self.pool).await?.iter().map(|r| id(r, "id")).collect()
    }
}

async fn set_products(tx: &mut Tx, collection_id: Uuid, products: &[Uuid]) -> StoreResult<()> {
    sqlx::query("DELETE FROM collection_products WHERE collection_id = $1")
        .bind(collection_id.to_string())
        .execute(&mut **tx)
        .await?;
    for chunk in products.chunks(1_000) {
        let mut q = SqlBuilder::new("INSERT INTO collection_products (collection_id, product_id) VALUES ");
        q.bind_rows(chunk.iter().map(|p| vec![collection_id.to_string().into(), p.to_string().into()]));
        q.build().execute(&mut **tx).await.map_err(StoreError::from_db)?;
    }
    Ok(())
}
