//! Products, variants, prices and categories.
//!
//! `product_prices` (the "from" price per product and currency) is derived data:
//! every write that touches variant prices recomputes it in the same transaction,
//! so list filters and price sorts never aggregate variants at read time.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::audit::{self, Actor, Change};
use super::rows::{id, int, json, opt_id, opt_int, opt_text, text, to_json};
use super::{Arg, SqlBuilder, Store, StoreError, StoreResult, Tx, new_id, now};
use crate::domain::catalog::{Image, NewProduct, NewVariant, ProductStatus, Sku};
use crate::domain::category_tree::Tree;
use crate::domain::money::{Currency, Money};
use crate::domain::slug::Slug;
use crate::domain::validation::{FieldError, FieldErrors};
use crate::domain::variant_matrix::{self, ProductOption, Selection};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Price {
    pub currency: String,
    /// Integer minor units.
    pub amount: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Variant {
    pub id: Uuid,
    pub sku: String,
    pub options: BTreeMap<String, String>,
    pub prices: Vec<Price>,
    pub weight_grams: Option<i64>,
    pub barcode: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProductOptionView {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Product {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub description: String,
    pub brand: Option<String>,
    pub status: ProductStatus,
    /// Attribute name → values.
    pub attributes: BTreeMap<String, Vec<String>>,
    pub options: Vec<ProductOptionView>,
    pub images: Vec<Image>,
    pub category_ids: Vec<Uuid>,
    pub variants: Vec<Variant>,
    /// Increases with every change; the `ETag` of the product.
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PriceRange {
    pub currency: String,
    pub min: i64,
    pub max: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProductSummary {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub brand: Option<String>,
    pub status: ProductStatus,
    /// Lowest and highest variant price in the requested currency; absent when unpriced there.
    pub price: Option<PriceRange>,
    pub image: Option<Image>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Category {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub position: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductSort {
    Newest,
    PriceAsc,
    PriceDesc,
    TitleAsc,
}

impl ProductSort {
    pub const ALL: [ProductSort; 4] = [ProductSort::Newest, ProductSort::PriceAsc, ProductSort::PriceDesc, ProductSort::TitleAsc];

    pub fn as_str(self) -> &'static str {
        match self {
            ProductSort::Newest => "newest",
            ProductSort::PriceAsc => "price_asc",
            ProductSort::PriceDesc => "price_desc",
            ProductSort::TitleAsc => "title_asc",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// Where the previous page ended, for the sort in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Id(Uuid),
    Price(i64, Uuid),
    Title(String, Uuid),
}

#[derive(Debug, Clone)]
pub struct ProductListQuery {
    pub statuses: Vec<ProductStatus>,
    /// A category; its whole branch matches.
    pub category: Option<Uuid>,
    pub currency: Currency,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    /// Attribute name → accepted values (any of them); all names must match.
    pub attributes: BTreeMap<String, Vec<String>>,
    pub sort: ProductSort,
    pub after: Option<After>,
    pub limit: i64,
}

/// A validated change to a product's own fields; `None` leaves a field alone.
#[derive(Debug, Default, Clone)]
pub struct ProductPatch {
    pub title: Option<String>,
    pub slug: Option<Slug>,
    pub description: Option<String>,
    pub brand: Option<Option<String>>,
    pub status: Option<ProductStatus>,
    pub attributes: Option<Vec<(String, String)>>,
    pub category_ids: Option<Vec<Uuid>>,
    pub images: Option<Vec<Image>>,
    pub options: Option<Vec<ProductOption>>,
}

#[derive(Debug, Default, Clone)]
pub struct VariantPatch {
    pub sku: Option<Sku>,
    pub prices: Option<Vec<Money>>,
    pub weight_grams: Option<Option<i64>>,
    pub barcode: Option<Option<String>>,
}

#[derive(Debug, Clone)]
pub struct NewCategory {
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub slug: Slug,
    pub description: String,
    pub position: i64,
}

#[derive(Debug, Default, Clone)]
pub struct CategoryPatch {
    pub parent_id: Option<Option<Uuid>>,
    pub name: Option<String>,
    pub slug: Option<Slug>,
    pub description: Option<String>,
    pub position: Option<i64>,
}

/// Why a catalog write was refused by the stored state.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown categories")]
    UnknownCategories(Vec<Uuid>),
    #[error("SKUs already in use")]
    SkusTaken(Vec<String>),
    #[error(transparent)]
    Move(#[from] crate::domain::category_tree::MoveError),
    #[error("category has children or products")]
    CategoryInUse,
    /// The change is invalid given what is stored (e.g. a variant selection already taken).
    #[error("invalid change")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CatalogError {
    fn from(e: sqlx::Error) -> Self {
        CatalogError::Store(StoreError::from_db(e))
    }
}

const SELECT_PRODUCT: &str =
    "SELECT id, slug, title, description, brand, status, options, images, version, created_at, updated_at FROM products";

fn status_of(raw: &str) -> StoreResult<ProductStatus> {
    ProductStatus::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("unknown product status {raw}")))
}

fn options_view(options: Vec<ProductOption>) -> Vec<ProductOptionView> {
    options.into_iter().map(|o| ProductOptionView { name: o.name, values: o.values }).collect()
}

impl Store {
    /// Creates a product with its variants and prices in one transaction.
    pub async fn create_product(&self, p: &NewProduct, actor: &Actor) -> Result<Product, CatalogError> {
        let mut tx = self.begin().await?;
        let product_id = insert_product(&mut tx, p).await?;
        finish_product_change(tx, actor, "product.create", product_id, None).await
    }

    /// Creates the product, or — when any of its SKUs already exists — updates the
    /// product owning them: fields replaced, variants matched by SKU, new ones added.
    /// An update that would change nothing is rolled back, so running the same import
    /// twice leaves the catalog, its versions and the audit log as they were.
    pub async fn upsert_product_by_sku(&self, p: &NewProduct, actor: &Actor) -> Result<Upsert, CatalogError> {
        let mut tx = self.begin().await?;
        let skus: Vec<&str> = p.variants.iter().map(|v| v.sku.as_str()).collect();
        let mut q = SqlBuilder::new("SELECT DISTINCT product_id FROM variants WHERE sku IN (");
        q.bind_list(skus.iter().copied()).push(")");
        let owners = q.build().fetch_all(&mut *tx).await?;
        let owners: Vec<Uuid> = owners.iter().map(|r| id(r, "product_id")).collect::<StoreResult<_>>()?;
        let (product_id, before, outcome) = match owners.as_slice() {
            [] => (insert_product(&mut tx, p).await?, None, Upsert::Created),
            [existing] => {
                let before = lock_product(&mut tx, self.dialect, *existing).await?;
                replace_product(&mut tx, *existing, p).await?;
                (*existing, Some(before), Upsert::Updated)
            }
            _ => return Err(CatalogError::SkusTaken(skus.iter().map(|s| s.to_string()).collect())),
        };
        let after = load_product(&mut tx, product_id).await?.ok_or(StoreError::NotFound("product"))?;
        // Variants the line did not mention are kept; together with the new ones they
        // must still form a valid matrix under the (possibly new) options.
        let options: Vec<ProductOption> =
            after.options.iter().map(|o| ProductOption { name: o.name.clone(), values: o.values.clone() }).collect();
        let selections: Vec<Selection> = after.variants.iter().map(|v| v.options.clone()).collect();
        let mut errors = FieldErrors::new();
        variant_matrix::check_variants(&options, &selections, &mut errors);
        if !errors.is_empty() {
            return Err(CatalogError::Invalid(errors.into_vec()));
        }
        if before.as_ref().is_some_and(|b| same_content(b, &after)) {
            tx.rollback().await?;
            return Ok(Upsert::Unchanged);
        }
        let action = if outcome == Upsert::Created { "product.import_create" } else { "product.import_update" };
        tx.product_changed(product_id);
        audit::record(
            &mut tx,
            actor,
            Change {
                action,
                entity_type: "product",
                entity_id: product_id,
                before: before.as_ref().map(to_value),
                after: Some(to_value(&after)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Inserts many products in one transaction, with multi-row statements and no
    /// audit rows: for seeding an empty shop from the CLI, not for admin writes.
    /// The products must not collide with stored SKUs or slugs (the constraints
    /// still refuse them, failing the whole batch).
    pub async fn insert_products_unaudited(&self, products: &[NewProduct]) -> Result<(), CatalogError> {
        let ts = now();
        let mut product_rows = Vec::new();
        let mut attribute_rows = Vec::new();
        let mut category_rows = Vec::new();
        let mut variant_rows = Vec::new();
        let mut price_rows = Vec::new();
        let mut from_price_rows = Vec::new();
        for p in products {
            let pid = new_id().to_string();
            product_rows.push(vec![
                Arg::from(pid.as_str()),
                p.slug.as_str().into(),
                p.title.as_str().into(),
                p.description.as_str().into(),
                p.brand.clone().into(),
                p.status.as_str().into(),
                to_json(&p.options).into(),
                to_json(&p.images).into(),
                ts.as_str().into(),
                ts.as_str().into(),
            ]);
            attribute_rows
                .extend(p.attributes.iter().map(|(n, v)| vec![Arg::from(pid.as_str()), n.as_str().into(), v.as_str().into()]));
            category_rows.extend(p.category_ids.iter().map(|c| vec![Arg::from(pid.as_str()), c.to_string().into()]));
            let mut range: BTreeMap<Currency, (i64, i64)> = BTreeMap::new();
            for (position, v) in p.variants.iter().enumerate() {
                let vid = new_id().to_string();
                variant_rows.push(vec![
                    Arg::from(vid.as_str()),
                    pid.as_str().into(),
                    v.sku.as_str().into(),
                    to_json(&v.options).into(),
                    v.barcode.clone().into(),
                    v.weight_grams.into(),
                    (position as i64).into(),
                    ts.as_str().into(),
                    ts.as_str().into(),
                ]);
                for m in &v.prices {
                    price_rows.push(vec![Arg::from(vid.as_str()), m.currency().as_str().into(), m.minor().into()]);
                    let r = range.entry(m.currency()).or_insert((m.minor(), m.minor()));
                    *r = (r.0.min(m.minor()), r.1.max(m.minor()));
                }
            }
            from_price_rows.extend(
                range.into_iter().map(|(c, (min, max))| vec![Arg::from(pid.as_str()), c.as_str().into(), min.into(), max.into()]),
            );
        }
        let mut tx = self.begin().await?;
        for row in &product_rows {
            if let Some(Arg::Text(pid)) = row.first() {
                tx.product_changed(Uuid::parse_str(pid).map_err(|e| StoreError::Corrupt(e.to_string()))?);
            }
        }
        insert_rows(
            &mut tx,
            "INSERT INTO products (id, slug, title, description, brand, status, options, images, created_at, updated_at) VALUES ",
            "",
            product_rows,
        )
        .await?;
        insert_rows(&mut tx, "INSERT INTO product_attributes (product_id, name, value) VALUES ", "", attribute_rows).await?;
        insert_rows(&mut tx, "INSERT INTO product_categories (product_id, category_id) VALUES ", "", category_rows).await?;
        insert_rows(&mut tx, "INSERT INTO variants (id, product_id, sku, options, barcode, weight_grams, position, created_at, updated_at) VALUES ", "", variant_rows).await?;
        insert_rows(&mut tx, "INSERT INTO variant_prices (variant_id, currency, amount_minor) VALUES ", "", price_rows).await?;
        insert_rows(
            &mut tx,
            "INSERT INTO product_prices (product_id, currency, min_minor, max_minor) VALUES ",
            "",
            from_price_rows,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn product(&self, product_id: Uuid) -> StoreResult<Option<Product>> {
        let mut conn = self.pool.acquire().await?;
        load_product(&mut conn, product_id).await
    }

    pub async fn product_id_by_slug(&self, slug: &str) -> StoreResult<Option<Uuid>> {
        let row = sqlx::query("SELECT id FROM products WHERE slug = $1").bind(slug).fetch_optional(&self.pool).await?;
        row.map(|r| id(&r, "id")).transpose()
    }

    pub async fn update_product(&self, product_id: Uuid, patch: &ProductPatch, actor: &Actor) -> Result<Product, CatalogError> {
        let mut tx = self.begin().await?;
        let before = lock_product(&mut tx, self.dialect, product_id).await?;
        if let Some(ids) = &patch.category_ids {
            check_categories_exist(&mut tx, ids).await?;
        }
        let ts = now();
        let options_json = patch.options.as_ref().map(to_json);
        let images_json = patch.images.as_ref().map(to_json);
        sqlx::query(
            "UPDATE products SET
                title = COALESCE($1, title),
                slug = COALESCE($2, slug),
                description = COALESCE($3, description),
                brand = CASE WHEN $4 = 1 THEN $5 ELSE brand END,
                status = COALESCE($6, status),
                images = COALESCE($7, images),
                options = COALESCE($8, options),
                version = version + 1,
                updated_at = $9
             WHERE id = $10",
        )
        .bind(patch.title.clone())
        .bind(patch.slug.as_ref().map(|s| s.as_str().to_owned()))
        .bind(patch.description.clone())
        .bind(i64::from(patch.brand.is_some()))
        .bind(patch.brand.clone().flatten())
        .bind(patch.status.map(|s| s.as_str()))
        .bind(images_json)
        .bind(options_json)
        .bind(ts.as_str())
        .bind(product_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_db)?;
        if let Some(attrs) = &patch.attributes {
            replace_attributes(&mut tx, product_id, attrs).await?;
        }
        if let Some(ids) = &patch.category_ids {
            replace_categories(&mut tx, product_id, ids).await?;
        }
        finish_product_change(tx, actor, "product.update", product_id, Some(&before)).await
    }

    /// Adds a variant. Its option selection is checked against the product's matrix
    /// and its other variants under the product lock, so two concurrent additions
    /// cannot both take the same selection.
    pub async fn add_variant(&self, product_id: Uuid, v: &NewVariant, actor: &Actor) -> Result<Product, CatalogError> {
        let mut tx = self.begin().await?;
        let before = lock_product(&mut tx, self.dialect, product_id).await?;
        let options: Vec<ProductOption> =
            before.options.iter().map(|o| ProductOption { name: o.name.clone(), values: o.values.clone() }).collect();
        let mut selections: Vec<Selection> = before.variants.iter().map(|v| v.options.clone()).collect();
        selections.push(v.options.clone());
        let mut errors = FieldErrors::new();
        variant_matrix::check_variants(&options, &selections, &mut errors);
        let new_index = format!("variants[{}].options", selections.len() - 1);
        let errors: Vec<FieldError> = errors
            .into_vec()
            .into_iter()
            .map(|e| FieldError {
                field: if e.field == new_index || e.field == "variants" { "options".into() } else { e.field },
                ..e
            })
            .collect();
        if !errors.is_empty() {
            return Err(CatalogError::Invalid(errors));
        }
        check_skus_free(&mut tx, &[v.sku.as_str()], None).await?;
        let position = before.variants.len() as i64;
        insert_variant(&mut tx, product_id, v, position).await?;
        refresh_product_prices(&mut tx, product_id).await?;
        bump_version(&mut tx, product_id).await?;
        finish_product_change(tx, actor, "variant.create", product_id, Some(&before)).await
    }

    pub async fn update_variant(&self, variant_id: Uuid, patch: &VariantPatch, actor: &Actor) -> Result<Product, CatalogError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT product_id FROM variants WHERE id = $1")
            .bind(variant_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("variant"))?;
        let product_id = id(&row, "product_id")?;
        let before = lock_product(&mut tx, self.dialect, product_id).await?;
        if let Some(sku) = &patch.sku {
            check_skus_free(&mut tx, &[sku.as_str()], Some(variant_id)).await?;
        }
        sqlx::query(
            "UPDATE variants SET
                sku = COALESCE($1, sku),
                weight_grams = CASE WHEN $2 = 1 THEN $3 ELSE weight_grams END,
                barcode = CASE WHEN $4 = 1 THEN $5 ELSE barcode END,
                updated_at = $6
             WHERE id = $7",
        )
        .bind(patch.sku.as_ref().map(|s| s.as_str().to_owned()))
        .bind(i64::from(patch.weight_grams.is_some()))
        .bind(patch.weight_grams.flatten())
        .bind(i64::from(patch.barcode.is_some()))
        .bind(patch.barcode.clone().flatten())
        .bind(now())
        .bind(variant_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_db)?;
        if let Some(prices) = &patch.prices {
            replace_variant_prices(&mut tx, variant_id, prices).await?;
            refresh_product_prices(&mut tx, product_id).await?;
        }
        bump_version(&mut tx, product_id).await?;
        finish_product_change(tx, actor, "variant.update", product_id, Some(&before)).await
    }

    pub async fn count_products(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM products").fetch_one(&self.pool).await?;
        int(&row, "n")
    }

    /// One page of products. Returns at most `limit` rows; the caller asks for one
    /// more than it shows to learn whether another page exists.
    pub async fn list_products(&self, q: &ProductListQuery) -> StoreResult<Vec<ProductSummary>> {
        let rows = product_list_sql(q, self.dialect).build().fetch_all(&self.pool).await?;
        rows.iter().map(summary_row).collect()
    }

    /// The plan the database chooses for a list query ([`Store::explain`]).
    pub async fn explain_product_list(&self, q: &ProductListQuery) -> StoreResult<Vec<String>> {
        self.explain(product_list_sql(q, self.dialect)).await
    }

    pub async fn categories(&self) -> StoreResult<Vec<Category>> {
        let rows = sqlx::query("SELECT id, parent_id, name, slug, description, position FROM categories ORDER BY position, name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(category_row).collect()
    }

    pub async fn category_by_slug(&self, slug: &str) -> StoreResult<Option<Category>> {
        let row = sqlx::query("SELECT id, parent_id, name, slug, description, position FROM categories WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(category_row).transpose()
    }

    pub async fn create_category(&self, c: &NewCategory, actor: &Actor) -> Result<Category, CatalogError> {
        let mut tx = self.begin().await?;
        lock_category_tree(&mut tx, self.dialect).await?;
        let category_id = new_id();
        load_tree(&mut tx).await?.can_move(category_id, c.parent_id)?;
        let ts = now();
        sqlx::query(
            "INSERT INTO categories (id, parent_id, name, slug, description, position, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(category_id.to_string())
        .bind(c.parent_id.map(|p| p.to_string()))
        .bind(c.name.as_str())
        .bind(c.slug.as_str())
        .bind(c.description.as_str())
        .bind(c.position)
        .bind(ts)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_db)?;
        let category = load_category(&mut tx, category_id).await?;
        tx.catalog_changed();
        audit::record(
            &mut tx,
            actor,
            Change {
                action: "category.create",
                entity_type: "category",
                entity_id: category_id,
                before: None,
                after: Some(to_value(&category)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(category)
    }

    /// Renames or moves a category. The tree is read and checked inside the write
    /// transaction, so two concurrent moves cannot combine into a cycle.
    pub async fn update_category(
        &self,
        category_id: Uuid,
        patch: &CategoryPatch,
        actor: &Actor,
    ) -> Result<Category, CatalogError> {
        let mut tx = self.begin().await?;
        lock_category_tree(&mut tx, self.dialect).await?;
        let before = load_category(&mut tx, category_id).await?;
        if let Some(parent) = patch.parent_id {
            load_tree(&mut tx).await?.can_move(category_id, parent)?;
        }
        sqlx::query(
            "UPDATE categories SET
                parent_id = CASE WHEN $1 = 1 THEN $2 ELSE parent_id END,
                name = COALESCE($3, name),
                slug = COALESCE($4, slug),
                description = COALESCE($5, description),
                position = COALESCE($6, position),
                updated_at = $7
             WHERE id = $8",
        )
        .bind(i64::from(patch.parent_id.is_some()))
        .bind(patch.parent_id.flatten().map(|p| p.to_string()))
        .bind(patch.name.clone())
        .bind(patch.slug.as_ref().map(|s| s.as_str().to_owned()))
        .bind(patch.description.clone())
        .bind(patch.position)
        .bind(now())
        .bind(category_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_db)?;
        let after = load_category(&mut tx, category_id).await?;
        tx.catalog_changed();
        if after.parent_id != before.parent_id {
            // Search files products under their categories' ancestors too.
            let branch = load_tree(&mut tx).await?.descendants(category_id);
            let mut q = SqlBuilder::new("SELECT DISTINCT product_id FROM product_categories WHERE category_id IN (");
            q.bind_list(branch.iter().map(|c| c.to_string())).push(")");
            for row in q.build().fetch_all(&mut *tx).await? {
                tx.product_changed(id(&row, "product_id")?);
            }
        }
        audit::record(
            &mut tx,
            actor,
            Change {
                action: "category.update",
                entity_type: "category",
                entity_id: category_id,
                before: Some(to_value(&before)),
                after: Some(to_value(&after)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deletes an empty leaf category.
    pub async fn delete_category(&self, category_id: Uuid, actor: &Actor) -> Result<(), CatalogError> {
        let mut tx = self.begin().await?;
        lock_category_tree(&mut tx, self.dialect).await?;
        let before = load_category(&mut tx, category_id).await?;
        let used = sqlx::query(
            "SELECT 1 AS one FROM categories WHERE parent_id = $1
             UNION ALL SELECT 1 AS one FROM product_categories WHERE category_id = $1 LIMIT 1",
        )
        .bind(category_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if used.is_some() {
            return Err(CatalogError::CategoryInUse);
        }
        sqlx::query("DELETE FROM categories WHERE id = $1").bind(category_id.to_string()).execute(&mut *tx).await?;
        tx.catalog_changed();
        audit::record(
            &mut tx,
            actor,
            Change {
                action: "category.delete",
                entity_type: "category",
                entity_id: category_id,
                before: Some(to_value(&before)),
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Updated,
    Unchanged,
}

/// Equal apart from the bookkeeping that every write bumps.
fn same_content(a: &Product, b: &Product) -> bool {
    let strip = |p: &Product| Product { version: 0, updated_at: String::new(), ..p.clone() };
    to_value(&strip(a)) == to_value(&strip(b))
}

/// Loads the product as it now stands, records the change with its before and
/// after, and commits: the tail every product write shares.
async fn finish_product_change(
    mut tx: Tx,
    actor: &Actor,
    action: &str,
    product_id: Uuid,
    before: Option<&Product>,
) -> Result<Product, CatalogError> {
    let after = load_product(&mut tx, product_id).await?.ok_or(StoreError::NotFound("product"))?;
    tx.product_changed(product_id);
    audit::record(
        &mut tx,
        actor,
        Change {
            action,
            entity_type: "product",
            entity_id: product_id,
            before: before.map(to_value),
            after: Some(to_value(&after)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

async fn insert_product(tx: &mut Tx, p: &NewProduct) -> Result<Uuid, CatalogError> {
    check_categories_exist(tx, &p.category_ids).await?;
    let skus: Vec<&str> = p.variants.iter().map(|v| v.sku.as_str()).collect();
    check_skus_free(tx, &skus, None).await?;
    let product_id = new_id();
    let ts = now();
    sqlx::query(
        "INSERT INTO products (id, slug, title, description, brand, status, options, images, version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)",
    )
    .bind(product_id.to_string())
    .bind(p.slug.as_str())
    .bind(p.title.as_str())
    .bind(p.description.as_str())
    .bind(p.brand.clone())
    .bind(p.status.as_str())
    .bind(to_json(&p.options))
    .bind(to_json(&p.images))
    .bind(ts.as_str())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_db)?;
    replace_attributes(tx, product_id, &p.attributes).await?;
    replace_categories(tx, product_id, &p.category_ids).await?;
    for (position, v) in p.variants.iter().enumerate() {
        insert_variant(tx, product_id, v, position as i64).await?;
    }
    refresh_product_prices(tx, product_id).await?;
    Ok(product_id)
}

/// Import update: the product's fields become those of `p`; variants are matched by SKU.
async fn replace_product(tx: &mut Tx, product_id: Uuid, p: &NewProduct) -> Result<(), CatalogError> {
    check_categories_exist(tx, &p.category_ids).await?;
    sqlx::query(
        "UPDATE products SET slug = $1, title = $2, description = $3, brand = $4, status = $5, options = $6, images = $7,
            version = version + 1, updated_at = $8
         WHERE id = $9",
    )
    .bind(p.slug.as_str())
    .bind(p.title.as_str())
    .bind(p.description.as_str())
    .bind(p.brand.clone())
    .bind(p.status.as_str())
    .bind(to_json(&p.options))
    .bind(to_json(&p.images))
    .bind(now())
    .bind(product_id.to_string())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_db)?;
    replace_attributes(tx, product_id, &p.attributes).await?;
    replace_categories(tx, product_id, &p.category_ids).await?;
    for (position, v) in p.variants.iter().enumerate() {
        let existing =
            sqlx::query("SELECT id FROM variants WHERE sku = $1").bind(v.sku.as_str()).fetch_optional(&mut **tx).await?;
        match existing {
            Some(row) => {
                let variant_id = id(&row, "id")?;
                sqlx::query(
                    "UPDATE variants SET options = $1, barcode = $2, weight_grams = $3, position = $4, updated_at = $5 WHERE id = $6",
                )
                .bind(to_json(&v.options))
                .bind(v.barcode.clone())
                .bind(v.weight_grams)
                .bind(position as i64)
                .bind(now())
                .bind(variant_id.to_string())
                .execute(&mut **tx)
                .await?;
                replace_variant_prices(tx, variant_id, &v.prices).await?;
            }
            None => {
                insert_variant(tx, product_id, v, position as i64).await?;
            }
        }
    }
    refresh_product_prices(tx, product_id).await?;
    Ok(())
}

/// Rows per multi-row statement: large enough to save round trips, small enough
/// that statements with thousands of placeholders (slow to prepare on SQLite)
/// never happen.
const ROWS_PER_STATEMENT: usize = 200;

/// Multi-row insert in chunks that also stay under the bound-parameter limits
/// (SQLite 32,766, PostgreSQL 65,535).
async fn insert_rows(tx: &mut Tx, head: &'static str, tail: &'static str, rows: Vec<Vec<Arg>>) -> Result<(), CatalogError> {
    let width = rows.first().map_or(1, Vec::len);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Arg>> = rows.by_ref().take((30_000 / width).min(ROWS_PER_STATEMENT)).collect();
        let mut q = SqlBuilder::new(head);
        q.bind_rows(chunk).push(tail);
        q.build().execute(&mut **tx).await.map_err(StoreError::from_db)?;
    }
    Ok(())
}

async fn bump_version(tx: &mut Tx, product_id: Uuid) -> StoreResult<()> {
    sqlx::query("UPDATE products SET version = version + 1, updated_at = $1 WHERE id = $2")
        .bind(now())
        .bind(product_id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn check_categories_exist(tx: &mut Tx, ids: &[Uuid]) -> Result<(), CatalogError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut q = SqlBuilder::new("SELECT id FROM categories WHERE id IN (");
    q.bind_list(ids.iter().map(|i| i.to_string())).push(")");
    let found: Vec<Uuid> = q.build().fetch_all(&mut **tx).await?.iter().map(|r| id(r, "id")).collect::<StoreResult<_>>()?;
    let missing: Vec<Uuid> = ids.iter().copied().filter(|i| !found.contains(i)).collect();
    if missing.is_empty() { Ok(()) } else { Err(CatalogError::UnknownCategories(missing)) }
}

/// Reports every SKU already used by another variant, so a client learns all of
/// them at once. The unique constraint stays the guard against races.
async fn check_skus_free(tx: &mut Tx, skus: &[&str], except_variant: Option<Uuid>) -> Result<(), CatalogError> {
    let mut q = SqlBuilder::new("SELECT sku FROM variants WHERE sku IN (");
    q.bind_list(skus.iter().copied()).push(")");
    if let Some(v) = except_variant {
        q.push(" AND id <> ").bind(v.to_string());
    }
    let taken: Vec<String> = q.build().fetch_all(&mut **tx).await?.iter().map(|r| text(r, "sku")).collect::<StoreResult<_>>()?;
    if taken.is_empty() { Ok(()) } else { Err(CatalogError::SkusTaken(taken)) }
}

async fn insert_variant(tx: &mut Tx, product_id: Uuid, v: &NewVariant, position: i64) -> Result<Uuid, CatalogError> {
    let variant_id = new_id();
    let ts = now();
    sqlx::query(
        "INSERT INTO variants (id, product_id, sku, options, barcode, weight_grams, position, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(variant_id.to_string())
    .bind(product_id.to_string())
    .bind(v.sku.as_str())
    .bind(to_json(&v.options))
    .bind(v.barcode.clone())
    .bind(v.weight_grams)
    .bind(position)
    .bind(ts)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_db)?;
    replace_variant_prices(tx, variant_id, &v.prices).await?;
    Ok(variant_id)
}

async fn replace_variant_prices(tx: &mut Tx, variant_id: Uuid, prices: &[Money]) -> StoreResult<()> {
    sqlx::query("DELETE FROM variant_prices WHERE variant_id = $1").bind(variant_id.to_string()).execute(&mut **tx).await?;
    for m in prices {
        sqlx::query("INSERT INTO variant_prices (variant_id, currency, amount_minor) VALUES ($1, $2, $3)")
            .bind(variant_id.to_string())
            .bind(m.currency().as_str())
            .bind(m.minor())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn refresh_product_prices(tx: &mut Tx, product_id: Uuid) -> StoreResult<()> {
    sqlx::query("DELETE FROM product_prices WHERE product_id = $1").bind(product_id.to_string()).execute(&mut **tx).await?;
    sqlx::query(
        "INSERT INTO product_prices (product_id, currency, min_minor, max_minor)
         SELECT v.product_id, vp.currency, MIN(vp.amount_minor), MAX(vp.amount_minor)
         FROM variants v JOIN variant_prices vp ON vp.variant_id = v.id
         WHERE v.product_id = $1
         GROUP BY v.product_id, vp.currency",
    )
    .bind(product_id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn replace_attributes(tx: &mut Tx, product_id: Uuid, attrs: &[(String, String)]) -> StoreResult<()> {
    sqlx::query("DELETE FROM product_attributes WHERE product_id = $1").bind(product_id.to_string()).execute(&mut **tx).await?;
    for (name, value) in attrs {
        sqlx::query("INSERT INTO product_attributes (product_id, name, value) VALUES ($1, $2, $3)")
            .bind(product_id.to_string())
            .bind(name.as_str())
            .bind(value.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn replace_categories(tx: &mut Tx, product_id: Uuid, ids: &[Uuid]) -> StoreResult<()> {
    sqlx::query("DELETE FROM product_categories WHERE product_id = $1").bind(product_id.to_string()).execute(&mut **tx).await?;
    for c in ids {
        sqlx::query("INSERT INTO product_categories (product_id, category_id) VALUES ($1, $2)")
            .bind(product_id.to_string())
            .bind(c.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn load_product(conn: &mut sqlx::AnyConnection, product_id: Uuid) -> StoreResult<Option<Product>> {
    let pid = product_id.to_string();
    let mut q = SqlBuilder::new(SELECT_PRODUCT);
    q.push(" WHERE id = ").bind(pid.as_str());
    let Some(row) = q.build().fetch_optional(&mut *conn).await? else { return Ok(None) };

    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in sqlx::query("SELECT name, value FROM product_attributes WHERE product_id = $1 ORDER BY name, value")
        .bind(pid.as_str())
        .fetch_all(&mut *conn)
        .await?
    {
        attributes.entry(text(&r, "name")?).or_default().push(text(&r, "value")?);
    }
    let category_ids = sqlx::query("SELECT category_id FROM product_categories WHERE product_id = $1 ORDER BY category_id")
        .bind(pid.as_str())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| id(r, "category_id"))
        .collect::<StoreResult<Vec<_>>>()?;
    let price_rows = sqlx::query(
        "SELECT vp.variant_id, vp.currency, vp.amount_minor FROM variant_prices vp
         JOIN variants v ON v.id = vp.variant_id WHERE v.product_id = $1 ORDER BY vp.currency",
    )
    .bind(pid.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut prices: BTreeMap<Uuid, Vec<Price>> = BTreeMap::new();
    for r in &price_rows {
        prices
            .entry(id(r, "variant_id")?)
            .or_default()
            .push(Price { currency: text(r, "currency")?, amount: int(r, "amount_minor")? });
    }
    let variants =
        sqlx::query("SELECT id, sku, options, barcode, weight_grams FROM variants WHERE product_id = $1 ORDER BY position, id")
            .bind(pid.as_str())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                let vid = id(r, "id")?;
                Ok(Variant {
                    id: vid,
                    sku: text(r, "sku")?,
                    options: json::<Selection>(r, "options")?,
                    prices: prices.remove(&vid).unwrap_or_default(),
                    weight_grams: opt_int(r, "weight_grams")?,
                    barcode: opt_text(r, "barcode")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;

    Ok(Some(Product {
        id: product_id,
        slug: text(&row, "slug")?,
        title: text(&row, "title")?,
        description: text(&row, "description")?,
        brand: opt_text(&row, "brand")?,
        status: status_of(&text(&row, "status")?)?,
        attributes,
        options: options_view(json(&row, "options")?),
        images: json::<Vec<ImageRow>>(&row, "images")?.into_iter().map(Image::from).collect(),
        category_ids,
        variants,
        version: int(&row, "version")?,
        created_at: text(&row, "created_at")?,
        updated_at: text(&row, "updated_at")?,
    }))
}

#[derive(serde::Deserialize)]
struct ImageRow {
    url: String,
    alt: Option<String>,
}

impl From<ImageRow> for Image {
    fn from(r: ImageRow) -> Self {
        Image { url: r.url, alt: r.alt }
    }
}

fn product_list_sql(q: &ProductListQuery, dialect: super::Dialect) -> SqlBuilder {
    // Titles sort by code point on both databases (SQLite's BINARY collation is
    // bytewise; PostgreSQL's default follows the cluster's locale), so keyset
    // pages are the same everywhere.
    let pg = dialect == super::Dialect::Postgres;
    let price_sort = matches!(q.sort, ProductSort::PriceAsc | ProductSort::PriceDesc);
    let price_filter = q.price_min.is_some() || q.price_max.is_some();
    // A price sort or filter only makes sense for products priced in that currency.
    let mut sql = SqlBuilder::new(
        "SELECT p.id, p.slug, p.title, p.brand, p.status, p.images, p.created_at, pp.currency, pp.min_minor, pp.max_minor
         FROM products p ",
    );
    if price_sort || price_filter {
        sql.push("JOIN product_prices pp ON pp.product_id = p.id AND pp.currency = ");
    } else {
        sql.push("LEFT JOIN product_prices pp ON pp.product_id = p.id AND pp.currency = ");
    }
    sql.bind(q.currency.as_str());
    sql.push(" WHERE p.status IN (").bind_list(q.statuses.iter().map(|s| s.as_str())).push(")");
    if let Some(category) = q.category {
        sql.push(
            " AND EXISTS (SELECT 1 FROM product_categories pc WHERE pc.product_id = p.id AND pc.category_id IN (
                WITH RECURSIVE branch(id) AS (
                    SELECT id FROM categories WHERE id = ",
        )
        .bind(category.to_string())
        .push(
            " UNION ALL SELECT c.id FROM categories c JOIN branch b ON c.parent_id = b.id
                ) SELECT id FROM branch))",
        );
    }
    if let Some(min) = q.price_min {
        sql.push(" AND pp.min_minor >= ").bind(min);
    }
    if let Some(max) = q.price_max {
        sql.push(" AND pp.min_minor <= ").bind(max);
    }
    for (name, values) in &q.attributes {
        sql.push(" AND EXISTS (SELECT 1 FROM product_attributes pa WHERE pa.product_id = p.id AND pa.name = ")
            .bind(name.as_str())
            .push(" AND pa.value IN (")
            .bind_list(values.iter().map(String::as_str))
            .push("))");
    }
    match &q.after {
        Some(After::Id(after)) => {
            sql.push(" AND p.id < ").bind(after.to_string());
        }
        Some(After::Price(price, after)) if q.sort == ProductSort::PriceAsc => {
            sql.push(" AND (pp.min_minor, pp.product_id) > (").bind(*price).push(", ").bind(after.to_string()).push(")");
        }
        Some(After::Price(price, after)) => {
            sql.push(" AND (pp.min_minor, pp.product_id) < (").bind(*price).push(", ").bind(after.to_string()).push(")");
        }
        Some(After::Title(title, after)) => {
            sql.push(if pg { " AND (p.title COLLATE \"C\", p.id) > (" } else { " AND (p.title, p.id) > (" })
                .bind(title.as_str())
                .push(", ")
                .bind(after.to_string())
                .push(")");
        }
        None => {}
    }
    sql.push(match q.sort {
        ProductSort::Newest => " ORDER BY p.id DESC",
        // By `pp.product_id` rather than the equal `p.id`, so the price index
        // (currency, min_minor, product_id) delivers rows already in order.
        ProductSort::PriceAsc => " ORDER BY pp.min_minor ASC, pp.product_id ASC",
        ProductSort::PriceDesc => " ORDER BY pp.min_minor DESC, pp.product_id DESC",
        ProductSort::TitleAsc if pg => " ORDER BY p.title COLLATE \"C\" ASC, p.id ASC",
        ProductSort::TitleAsc => " ORDER BY p.title ASC, p.id ASC",
    });
    sql.push(" LIMIT ").bind(q.limit);
    sql
}

fn summary_row(r: &AnyRow) -> StoreResult<ProductSummary> {
    let images: Vec<ImageRow> = json(r, "images")?;
    let price = match (opt_text(r, "currency")?, opt_int(r, "min_minor")?, opt_int(r, "max_minor")?) {
        (Some(currency), Some(min), Some(max)) => Some(PriceRange { currency, min, max }),
        _ => None,
    };
    Ok(ProductSummary {
        id: id(r, "id")?,
        slug: text(r, "slug")?,
        title: text(r, "title")?,
        brand: opt_text(r, "brand")?,
        status: status_of(&text(r, "status")?)?,
        price,
        image: images.into_iter().next().map(Image::from),
        created_at: text(r, "created_at")?,
    })
}

fn category_row(r: &AnyRow) -> StoreResult<Category> {
    Ok(Category {
        id: id(r, "id")?,
        parent_id: opt_id(r, "parent_id")?,
        name: text(r, "name")?,
        slug: text(r, "slug")?,
        description: text(r, "description")?,
        position: int(r, "position")?,
    })
}

async fn load_category(tx: &mut Tx, category_id: Uuid) -> StoreResult<Category> {
    let row = sqlx::query("SELECT id, parent_id, name, slug, description, position FROM categories WHERE id = $1")
        .bind(category_id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("category"))?;
    category_row(&row)
}

/// Serialises changes to the category tree across instances on PostgreSQL, so two
/// moves checked separately cannot combine into a cycle or an over-deep branch.
/// SQLite's `BEGIN IMMEDIATE` write lock already does this.
async fn lock_category_tree(tx: &mut Tx, dialect: super::Dialect) -> StoreResult<()> {
    if dialect == super::Dialect::Postgres {
        sqlx::query("LOCK TABLE categories IN SHARE ROW EXCLUSIVE MODE").execute(&mut **tx).await?;
    }
    Ok(())
}

/// Locks one product for the rest of the transaction, so concurrent writes to it
/// queue instead of interleaving (and each audit row sees the true `before`).
async fn lock_product(tx: &mut Tx, dialect: super::Dialect, product_id: Uuid) -> StoreResult<Product> {
    if dialect == super::Dialect::Postgres {
        sqlx::query("SELECT id FROM products WHERE id = $1 FOR UPDATE").bind(product_id.to_string()).execute(&mut **tx).await?;
    }
    load_product(tx, product_id).await?.ok_or(StoreError::NotFound("product"))
}

async fn load_tree(tx: &mut Tx) -> StoreResult<Tree> {
    let rows = sqlx::query("SELECT id, parent_id FROM categories").fetch_all(&mut **tx).await?;
    let links = rows.iter().map(|r| Ok((id(r, "id")?, opt_id(r, "parent_id")?))).collect::<StoreResult<Vec<_>>>()?;
    Ok(Tree::new(links))
}
