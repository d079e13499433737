//! What the search index holds of each published product, read in pages.

use std::collections::HashMap;

use uuid::Uuid;

use super::rows::{flag, id, int, json, opt_text, text};
use super::{SqlBuilder, Store, StoreResult};
use crate::domain::catalog::Image;

const SELECT_DOCUMENT: &str = "SELECT id, slug, title, description, brand, images, in_stock, created_at FROM products";

/// One published product as the index sees it.
#[derive(Debug, Clone)]
pub struct SearchDocument {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub description: String,
    pub brand: Option<String>,
    /// The categories it is filed under (not their ancestors).
    pub category_ids: Vec<Uuid>,
    /// (name, value) pairs.
    pub attributes: Vec<(String, String)>,
    /// (currency, lowest, highest) variant price.
    pub prices: Vec<(String, i64, i64)>,
    /// Some variant has stock at some location.
    pub in_stock: bool,
    pub image: Option<Image>,
    pub created_at: String,
}

impl Store {
    /// The documents of those `products` that are published (the others are
    /// missing from the answer: unpublished or deleted).
    pub async fn search_documents(&self, products: &[Uuid]) -> StoreResult<Vec<SearchDocument>> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = SqlBuilder::new(SELECT_DOCUMENT);
        q.push(" WHERE status = 'published' AND id IN (");
        q.bind_list(products.iter().map(|p| p.to_string())).push(") ORDER BY id");
        let rows = q.build().fetch_all(&self.pool).await?;
        self.complete(rows).await
    }

    /// Up to `limit` published products after `after`, in id order (for rebuilding the index).
    pub async fn search_documents_page(&self, after: Option<Uuid>, limit: i64) -> StoreResult<Vec<SearchDocument>> {
        let mut q = SqlBuilder::new(SELECT_DOCUMENT);
        q.push(" WHERE status = 'published' AND id > ");
        q.bind(after.map(|a| a.to_string()).unwrap_or_default()).push(" ORDER BY id LIMIT ").bind(limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        self.complete(rows).await
    }

    /// How many products are published (the size of a full index).
    pub async fn count_published_products(&self) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM products WHERE status = 'published'").fetch_one(&self.pool).await?;
        Ok(u64::try_from(int(&row, "n")?).unwrap_or(0))
    }

    async fn complete(&self, rows: Vec<sqlx::any::AnyRow>) -> StoreResult<Vec<SearchDocument>> {
        let mut docs = Vec::with_capacity(rows.len());
        for r in &rows {
            let images: Vec<Image> = json(r, "images")?;
            docs.push(SearchDocument {
                id: id(r, "id")?,
                slug: text(r, "slug")?,
                title: text(r, "title")?,
                description: text(r, "description")?,
                brand: opt_text(r, "brand")?,
                category_ids: Vec::new(),
                attributes: Vec::new(),
                prices: Vec::new(),
                in_stock: flag(r, "in_stock")?,
                image: images.into_iter().next(),
                created_at: text(r, "created_at")?,
            });
        }
        if docs.is_empty() {
            return Ok(docs);
        }
        let ids: Vec<String> = docs.iter().map(|d| d.id.to_string()).collect();
        let at: HashMap<Uuid, usize> = docs.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
        let related = |sql: &'static str| {
            let mut q = SqlBuilder::new(sql);
            q.bind_list(ids.iter().cloned()).push(")");
            q
        };
        let mut conn = self.pool.acquire().await?;
        for r in related("SELECT product_id, category_id FROM product_categories WHERE product_id IN (")
            .build()
            .fetch_all(&mut *conn)
            .await?
        {
            docs[slot(&at, &r)?].category_ids.push(id(&r, "category_id")?);
        }
        for r in related("SELECT product_id, name, value FROM product_attributes WHERE product_id IN (")
            .build()
            .fetch_all(&mut *conn)
            .await?
        {
            docs[slot(&at, &r)?].attributes.push((text(&r, "name")?, text(&r, "value")?));
        }
        for r in related("SELECT product_id, currency, min_minor, max_minor FROM product_prices WHERE product_id IN (")
            .build()
            .fetch_all(&mut *conn)
            .await?
        {
            docs[slot(&at, &r)?].prices.push((text(&r, "currency")?, int(&r, "min_minor")?, int(&r, "max_minor")?));
        }
        Ok(docs)
    }
}

/// The position of the row's product among the documents (every row comes from
/// a query over exactly those products).
fn slot(at: &HashMap<Uuid, usize>, row: &sqlx::any::AnyRow) -> StoreResult<usize> {
    let product = id(row, "product_id")?;
    at.get(&product).copied().ok_or_else(|| super::StoreError::Corrupt(format!("row of unrequested product {product}")))
}
