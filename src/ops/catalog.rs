//! Catalog use cases: parse input into domain values, then one store call.

use std::collections::BTreeMap;

use serde::Deserialize;
use uuid::Uuid;

use crate::domain::catalog::{
    self as rules, AttributeValue, ImageInput, NewProduct, ProductInput, ProductStatus, Sku, VariantInput,
};
use crate::domain::category_tree;
use crate::domain::cursor;
use crate::domain::money::Currency;
use crate::domain::slug::Slug;
use crate::domain::validation::{FieldError, FieldErrors, required_text};
use crate::domain::variant_matrix::{self, ProductOption};
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crate::store::audit::Actor;
use crate::store::catalog::{
    After, CatalogError, Category, CategoryPatch, NewCategory, Product, ProductListQuery, ProductPatch, ProductSort,
    ProductSummary, VariantPatch,
};

pub const DEFAULT_PAGE: i64 = 24;
pub const MAX_PAGE: i64 = 100;

pub async fn create_product(store: &Store, input: &ProductInput, actor: &Actor) -> ApiResult<Product> {
    let product = NewProduct::parse(input).map_err(ApiError::Validation)?;
    store.create_product(&product, actor).await.map_err(|e| with_sku_fields(e, &input.variants))
}

/// Names the exact `variants[i].sku` fields whose SKUs are taken.
fn with_sku_fields(err: CatalogError, variants: &[VariantInput]) -> ApiError {
    match err {
        CatalogError::SkusTaken(skus) => {
            let errors: Vec<FieldError> = variants
                .iter()
                .enumerate()
                .filter(|(_, v)| skus.iter().any(|s| s == v.sku.trim()))
                .map(|(i, v)| FieldError {
                    field: format!("variants[{i}].sku"),
                    code: "duplicate_sku".into(),
                    message: format!("SKU {} is already in use", v.sku.trim()),
                })
                .collect();
            ApiError::Conflict { code: "duplicate_sku", detail: format!("{} SKU(s) already in use", errors.len()), errors }
        }
        other => other.into(),
    }
}

/// A partial update of a product. Absent fields are left alone; `brand: null` clears it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatchInput {
    pub title: Option<String>,
    pub slug: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub brand: Option<Option<String>>,
    pub status: Option<ProductStatus>,
    pub attributes: Option<BTreeMap<String, AttributeValue>>,
    pub category_ids: Option<Vec<Uuid>>,
    pub images: Option<Vec<ImageInput>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

pub async fn update_product(store: &Store, product_id: Uuid, input: &ProductPatchInput, actor: &Actor) -> ApiResult<Product> {
    let mut errors = FieldErrors::new();
    let patch = ProductPatch {
        title: input.title.as_deref().and_then(|t| errors.check("title", required_text(t, rules::MAX_TITLE))),
        slug: input.slug.as_deref().and_then(|s| errors.check("slug", Slug::parse(s))),
        description: input
            .description
            .as_deref()
            .and_then(|d| errors.check("description", rules::optional_text(d, rules::MAX_DESCRIPTION))),
        brand: input.brand.as_ref().map(|b| rules::parse_brand(b.as_deref(), &mut errors)),
        status: input.status,
        attributes: input.attributes.as_ref().map(|a| rules::parse_attributes(a, &mut errors)),
        category_ids: input.category_ids.as_ref().map(|c| rules::parse_category_ids(c, &mut errors)),
        images: input.images.as_ref().map(|i| rules::parse_images(i, &mut errors)),
        options: None,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors.into_vec()));
    }
    Ok(store.update_product(product_id, &patch, actor).await?)
}

/// Adds a variant to an existing product; its options must fit the product's matrix.
pub async fn add_variant(store: &Store, product_id: Uuid, input: &VariantInput, actor: &Actor) -> ApiResult<Product> {
    let product = store.product(product_id).await?.ok_or(ApiError::NotFound("product"))?;
    let options: Vec<ProductOption> =
        product.options.iter().map(|o| ProductOption { name: o.name.clone(), values: o.values.clone() }).collect();
    let mut errors = FieldErrors::new();
    let variant = rules::parse_variant_fields(input, "", &mut errors);
    errors.check("options", variant_matrix::check_selection(&options, &input.options));
    if product.variants.iter().any(|v| v.options == input.options) {
        errors.push("options", "duplicate", "another variant already has these option values");
    }
    if product.variants.len() >= variant_matrix::MAX_VARIANTS {
        errors.push("options", "too_many", format!("a product has at most {} variants", variant_matrix::MAX_VARIANTS));
    }
    let fields: Vec<FieldError> =
        errors.into_vec().into_iter().map(|e| FieldError { field: e.field.trim_start_matches('.').to_owned(), ..e }).collect();
    match variant {
        Some(v) if fields.is_empty() => Ok(store.add_variant(product_id, &v, actor).await?),
        _ => Err(ApiError::Validation(fields)),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantPatchInput {
    pub sku: Option<String>,
    /// Replaces every price of the variant.
    pub prices: Option<Vec<rules::PriceInput>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub weight_grams: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub barcode: Option<Option<String>>,
}

pub async fn update_variant(store: &Store, variant_id: Uuid, input: &VariantPatchInput, actor: &Actor) -> ApiResult<Product> {
    let mut errors = FieldErrors::new();
    let patch = VariantPatch {
        sku: input.sku.as_deref().and_then(|s| errors.check("sku", Sku::parse(s))),
        prices: input.prices.as_ref().map(|p| rules::parse_prices(p, "prices", &mut errors)),
        weight_grams: input.weight_grams.map(|w| w.and_then(|w| errors.check("weight_grams", rules::parse_weight(w)))),
        barcode: input.barcode.as_ref().map(|b| b.as_deref().and_then(|b| errors.check("barcode", rules::parse_barcode(b)))),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors.into_vec()));
    }
    Ok(store.update_variant(variant_id, &patch, actor).await?)
}

/// Finds a product by id or slug.
/// The storefront list parameters, parsed from the raw query string so that
/// repeated keys (`attr.colour=red&attr.colour=blue`) and unknown keys can be handled.
#[derive(Debug, Clone)]
pub struct ListParams {
    pub category: Option<String>,
    pub currency: Option<String>,
    pub price_min: Option<String>,
    pub price_max: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub status: Option<String>,
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl ListParams {
    /// `allow_status` is true for the admin list only.
    pub fn parse(raw: Option<&str>, allow_status: bool) -> ApiResult<Self> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|_| ApiError::bad_request("invalid_query", "the query string is not valid URL encoding"))?;
        let mut p = ListParams {
            category: None,
            currency: None,
            price_min: None,
            price_max: None,
            sort: None,
            limit: None,
            cursor: None,
            status: None,
            attributes: BTreeMap::new(),
        };
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "category" => &mut p.category,
                "currency" => &mut p.currency,
                "price_min" => &mut p.price_min,
                "price_max" => &mut p.price_max,
                "sort" => &mut p.sort,
                "limit" => &mut p.limit,
                "cursor" => &mut p.cursor,
                "status" if allow_status => &mut p.status,
                _ => {
                    if let Some(name) = k.strip_prefix("attr.") {
                        p.attributes.entry(name.to_owned()).or_default().push(v);
                        continue;
                    }
                    return Err(ApiError::bad_field("unknown_parameter", &k, format!("`{k}` is not a filter of this list")));
                }
            };
            *slot = Some(v);
        }
        Ok(p)
    }
}

pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Cursor key: (price, title, id) with the component of the sort in use filled in.
type CursorKey = (Option<i64>, Option<String>, Uuid);

pub async fn list_products(
    store: &Store,
    params: &ListParams,
    default_currency: Currency,
    storefront: bool,
) -> ApiResult<Page<ProductSummary>> {
    let query = product_query(store, params, default_currency, storefront).await?;
    let (limit, sort) = (query.limit - 1, query.sort);
    let mut items = store.list_products(&query).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|last| {
            let key: CursorKey = match sort {
                ProductSort::Newest => (None, None, last.id),
                ProductSort::PriceAsc | ProductSort::PriceDesc => (last.price.as_ref().map(|p| p.min), None, last.id),
                ProductSort::TitleAsc => (None, Some(last.title.clone()), last.id),
            };
            cursor::encode(sort.as_str(), &key)
        })
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// Parses list parameters into the store query. Its `limit` is one more than the
/// page size, to learn whether another page follows.
pub async fn product_query(
    store: &Store,
    params: &ListParams,
    default_currency: Currency,
    storefront: bool,
) -> ApiResult<ProductListQuery> {
    let sort = match params.sort.as_deref() {
        None => ProductSort::Newest,
        Some(s) => ProductSort::parse(s).ok_or_else(|| {
            ApiError::bad_field("invalid_sort", "sort", "sort must be one of newest, price_asc, price_desc, title_asc")
        })?,
    };
    let currency = match params.currency.as_deref() {
        None => default_currency,
        Some(c) => Currency::parse(c).map_err(|e| ApiError::bad_field("invalid_currency", "currency", e.message))?,
    };
    let limit =
        match params.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(l) => l.parse::<i64>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
                ApiError::bad_field("invalid_limit", "limit", format!("limit must be between 1 and {MAX_PAGE}"))
            })?,
        };
    let price = |name: &str, v: Option<&str>| -> ApiResult<Option<i64>> {
        v.map(|v| {
            v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad_field("invalid_price", name, format!("{name} must be a non-negative integer in minor units"))
            })
        })
        .transpose()
    };
    let price_min = price("price_min", params.price_min.as_deref())?;
    let price_max = price("price_max", params.price_max.as_deref())?;
    let statuses =
        if storefront {
            vec![ProductStatus::Published]
        } else {
            match params.status.as_deref() {
                None => vec![ProductStatus::Draft, ProductStatus::Published, ProductStatus::Archived],
                Some(s) => vec![ProductStatus::parse(s).ok_or_else(|| {
                    ApiError::bad_field("invalid_status", "status", "status must be draft, published or archived")
                })?],
            }
        };
    let category = match params.category.as_deref() {
        None => None,
        Some(c) => Some(match Uuid::parse_str(c) {
            Ok(id) => id,
            Err(_) => store.category_by_slug(c).await?.ok_or(ApiError::NotFound("category"))?.id,
        }),
    };
    for (name, values) in &params.attributes {
        if name.is_empty() || values.len() > 20 {
            return Err(ApiError::bad_field("invalid_filter", &format!("attr.{name}"), "between 1 and 20 values per attribute"));
        }
    }
    let after = match params.cursor.as_deref() {
        None => None,
        Some(c) => {
            let (p, t, id): CursorKey = cursor::decode(sort.as_str(), c)
                .map_err(|_| ApiError::bad_field("invalid_cursor", "cursor", "the cursor is not valid for this list"))?;
            Some(match (sort, p, t) {
                (ProductSort::Newest, _, _) => After::Id(id),
                (ProductSort::PriceAsc | ProductSort::PriceDesc, Some(p), _) => After::Price(p, id),
                (ProductSort::TitleAsc, _, Some(t)) => After::Title(t, id),
                _ => return Err(ApiError::bad_field("invalid_cursor", "cursor", "the cursor is not valid for this list")),
            })
        }
    };
    Ok(ProductListQuery {
        statuses,
        category,
        currency,
        price_min,
        price_max,
        attributes: params.attributes.clone(),
        sort,
        after,
        limit: limit + 1,
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryInput {
    pub name: String,
    /// Derived from the name when absent.
    pub slug: Option<String>,
    pub parent_id: Option<Uuid>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub position: i64,
}

pub async fn create_category(store: &Store, input: &CategoryInput, actor: &Actor) -> ApiResult<Category> {
    let mut errors = FieldErrors::new();
    let name = errors.check("name", required_text(&input.name, 100));
    let slug = match &input.slug {
        Some(s) => errors.check("slug", Slug::parse(s)),
        None => name.as_deref().and_then(|n| errors.check("slug", Slug::from_title(n))),
    };
    let description = errors.check("description", rules::optional_text(&input.description, 5000));
    match (name, slug, description) {
        (Some(name), Some(slug), Some(description)) if errors.is_empty() => Ok(store
            .create_category(
                &NewCategory { parent_id: input.parent_id, name, slug, description, position: input.position },
                actor,
            )
            .await?),
        _ => Err(ApiError::Validation(errors.into_vec())),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryPatchInput {
    pub name: Option<String>,
    pub slug: Option<String>,
    /// Moves the category; `null` makes it a root.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
    pub parent_id: Option<Option<Uuid>>,
    pub description: Option<String>,
    pub position: Option<i64>,
}

pub async fn update_category(store: &Store, category_id: Uuid, input: &CategoryPatchInput, actor: &Actor) -> ApiResult<Category> {
    let mut errors = FieldErrors::new();
    let patch = CategoryPatch {
        name: input.name.as_deref().and_then(|n| errors.check("name", required_text(n, 100))),
        slug: input.slug.as_deref().and_then(|s| errors.check("slug", Slug::parse(s))),
        parent_id: input.parent_id,
        description: input.description.as_deref().and_then(|d| errors.check("description", rules::optional_text(d, 5000))),
        position: input.position,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors.into_vec()));
    }
    Ok(store.update_category(category_id, &patch, actor).await?)
}

/// A category with its children, for the storefront menu.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CategoryNode {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: String,
    #[schema(no_recursion)]
    pub children: Vec<CategoryNode>,
}

pub fn category_tree(categories: &[Category]) -> Vec<CategoryNode> {
    fn build(parent: Option<Uuid>, all: &[Category], depth: usize) -> Vec<CategoryNode> {
        if depth > category_tree::MAX_DEPTH {
            return Vec::new();
        }
        all.iter()
            .filter(|c| c.parent_id == parent)
            .map(|c| CategoryNode {
                id: c.id,
                name: c.name.clone(),
                slug: c.slug.clone(),
                description: c.description.clone(),
                children: build(Some(c.id), all, depth + 1),
            })
            .collect()
    }
    build(None, categories, 1)
}
