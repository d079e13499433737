//! Making a shop ready for a run, through its public and admin APIs only: is
//! every target a Mercato shop that answers, are there products, stock, tax and
//! shipping to check out with, and what is there to browse.

use std::time::Duration;

use serde_json::{Value, json};

use super::admin::{Admin, describe_transport};
use super::{Failure, FailureKind};

/// A variant stocked for this run.
#[derive(Clone, Debug)]
pub struct Stocked {
    pub sku: String,
    /// Units available right after stocking.
    pub initial: i64,
}

/// Price of every load-test variant (EUR, minor units).
const PRICE: i64 = 1999;

/// Every target must answer `/healthz` before anything else is sent.
pub async fn check_reachable(client: &reqwest::Client, targets: &[String]) -> Result<(), Failure> {
    for base in targets {
        let res = client.get(format!("{base}/healthz")).timeout(Duration::from_secs(5)).send().await;
        match res {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                return Err(Failure::new(
                    FailureKind::Unreachable,
                    format!("{base}/healthz answered {}: is this a Mercato shop?", r.status().as_u16()),
                ));
            }
            Err(e) => return Err(Failure::new(FailureKind::Unreachable, describe_transport(&e, base))),
        }
    }
    Ok(())
}

/// Creates this run's products (one option value per variant, 100 variants per
/// product) with `stock` units each, and the German tax and EUR shipping to
/// check out with when the shop has none.
pub async fn stock_products(admin: &Admin, run: &str, variants: usize, stock: i64) -> Result<Vec<Stocked>, Failure> {
    let setup = |what: &'static str| move |e: super::admin::AdminError| e.during(FailureKind::Setup, what);
    let locations = admin.get("/v1/admin/inventory/locations").await.map_err(setup("listing stock locations"))?;
    let Some(location) = locations["items"].as_array().and_then(|l| l.first()).and_then(|l| l["code"].as_str()) else {
        return Err(Failure::new(
            FailureKind::Setup,
            "the shop has no stock location to receive the test stock: create one with POST /v1/admin/inventory/locations",
        ));
    };
    let location = location.to_owned();

    let taxes = admin.get("/v1/admin/tax-rates").await.map_err(setup("reading tax rates"))?;
    if !items(&taxes).iter().any(|t| t["country"] == "DE") {
        let body = json!({"country": "DE", "rate_bp": 1900, "name": "MwSt."});
        admin.put("/v1/admin/tax-rates", &body).await.map_err(setup("setting German VAT"))?;
    }
    let shipping = admin.get("/v1/admin/shipping-options").await.map_err(setup("reading shipping options"))?;
    let ships_to_germany = items(&shipping).iter().any(|o| {
        o["active"] != false
            && o["currency"] == "EUR"
            && o["countries"].as_array().is_none_or(|c| c.is_empty() || c.iter().any(|c| c == "DE"))
    });
    if !ships_to_germany {
        let body = json!({"name": format!("Load test {run}"), "currency": "EUR", "countries": ["DE"], "rate": {"kind": "flat", "amount": 495}});
        admin.post("/v1/admin/shipping-options", &body).await.map_err(setup("creating a shipping option"))?;
    }

    let skus: Vec<String> = (0..variants).map(|i| format!("LOAD-{run}-{i}")).collect();
    for (p, chunk) in skus.chunks(100).enumerate() {
        let values: Vec<String> = (0..chunk.len()).map(|i| format!("v{i}")).collect();
        let vs: Vec<Value> = chunk
            .iter()
            .zip(&values)
            .map(|(sku, v)| json!({"sku": sku, "options": {"variant": v}, "prices": [{"currency": "EUR", "amount": PRICE}]}))
            .collect();
        let body = json!({
            "title": format!("Load test {run} {p}"),
            "status": "published",
            "options": [{"name": "variant", "values": values}],
            "variants": vs,
            "attributes": {"collection": ["load test"]},
        });
        admin.post("/v1/admin/products", &body).await.map_err(setup("creating the test products"))?;
    }

    let mut stocked = Vec::with_capacity(variants);
    for chunk in skus.chunks(8) {
        let adjustments = chunk.iter().map(|sku| {
            let body = json!({"sku": sku, "location": location, "delta": stock, "reason": format!("load test {run}"), "kind": "receipt"});
            async move { admin.post("/v1/admin/inventory/adjustments", &body).await }
        });
        for (sku, level) in chunk.iter().zip(futures_util::future::join_all(adjustments).await) {
            let level = level.map_err(setup("stocking the test variants"))?;
            let initial = level["available"].as_i64().unwrap_or(stock);
            stocked.push(Stocked { sku: sku.clone(), initial });
        }
    }
    Ok(stocked)
}

fn items(v: &Value) -> &[Value] {
    v["items"].as_array().map_or(&[], Vec::as_slice)
}

/// The storefront reads a browsing shopper makes (besides the category tree), as
/// paths found through the public API: product lists (plain, sorted, filtered by
/// category, price and attribute) and product pages by slug and id.
#[derive(Debug, Default)]
pub struct Catalog {
    pub lists: Vec<String>,
    pub filtered: Vec<String>,
    pub products: Vec<String>,
    /// Words of product titles, for search queries.
    pub words: Vec<String>,
    /// Search filters (`key`, `value`): categories, brands, attributes, prices, stock.
    pub search_filters: Vec<(String, String)>,
}

/// How many product pages discovery reads to learn attributes.
const ATTRIBUTE_SAMPLES: usize = 10;

pub async fn discover(client: &reqwest::Client, base: &str) -> Result<Catalog, Failure> {
    let get = |path: String| async move {
        let res = client.get(format!("{base}{path}")).send().await;
        let res = res.map_err(|e| Failure::new(FailureKind::Unreachable, describe_transport(&e, base)))?;
        if !res.status().is_success() {
            let status = res.status().as_u16();
            return Err(Failure::new(FailureKind::Setup, format!("discovering the catalog: GET {path} answered {status}")));
        }
        res.json::<Value>()
            .await
            .map_err(|e| Failure::new(FailureKind::Setup, format!("discovering the catalog: GET {path}: {e}")))
    };
    let mut categories = Vec::new();
    collect_slugs(&get("/v1/categories".into()).await?["items"], &mut categories);

    let mut summaries = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..3 {
        let path = match &cursor {
            None => "/v1/products?limit=100".to_owned(),
            Some(c) => format!("/v1/products?limit=100&{}", serde_urlencoded::to_string([("cursor", c)]).unwrap_or_default()),
        };
        let page = get(path).await?;
        summaries.extend(items(&page).iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    if summaries.is_empty() {
        return Err(Failure::new(
            FailureKind::Setup,
            format!(
                "{base} has no published products to browse: load some first (`mercato seed --demo`, or run a checkout scenario)"
            ),
        ));
    }

    let mut attributes = Vec::new();
    for s in summaries.iter().take(ATTRIBUTE_SAMPLES) {
        let product = get(format!("/v1/products/{}", s["slug"].as_str().unwrap_or_default())).await?;
        if let Some(attrs) = product["attributes"].as_object() {
            for (name, values) in attrs {
                for v in values.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    let pair = (format!("attr.{name}"), v.to_owned());
                    if !attributes.contains(&pair) {
                        attributes.push(pair);
                    }
                }
            }
        }
    }
    let mut prices: Vec<i64> = summaries.iter().filter_map(|s| s["price"]["min"].as_i64()).collect();
    prices.sort_unstable();
    let mut catalog = catalog_paths(&categories, &summaries, &attributes, &prices);
    search_terms(&mut catalog, &categories, &summaries, &attributes, &prices);
    Ok(catalog)
}

/// What search queries are made of: title words, and filters seen in the catalog.
fn search_terms(c: &mut Catalog, categories: &[String], summaries: &[Value], attributes: &[(String, String)], prices: &[i64]) {
    for s in summaries {
        for word in s["title"].as_str().unwrap_or_default().split(|ch: char| !ch.is_alphanumeric()) {
            let word = word.to_lowercase();
            if word.chars().count() >= 3 && !word.chars().all(|ch| ch.is_ascii_digit()) && !c.words.contains(&word) {
                c.words.push(word);
            }
        }
        if let Some(brand) = s["brand"].as_str() {
            let pair = ("brand".to_owned(), brand.to_owned());
            if !c.search_filters.contains(&pair) {
                c.search_filters.push(pair);
            }
        }
    }
    c.search_filters.extend(categories.iter().map(|slug| ("category".to_owned(), slug.clone())));
    c.search_filters.extend(attributes.iter().cloned());
    // Any pair of these is a valid range: the lower quartile is never above the median.
    if !prices.is_empty() {
        c.search_filters.push(("price_min".into(), prices[prices.len() / 4].to_string()));
        c.search_filters.push(("price_max".into(), prices[prices.len() / 2].to_string()));
    }
    c.search_filters.push(("in_stock".into(), "true".into()));
}

fn collect_slugs(nodes: &Value, out: &mut Vec<String>) {
    for n in nodes.as_array().into_iter().flatten() {
        if let Some(slug) = n["slug"].as_str() {
            out.push(slug.to_owned());
        }
        collect_slugs(&n["children"], out);
    }
}

/// The paths a browsing shopper requests, built once before the run.
fn catalog_paths(categories: &[String], summaries: &[Value], attributes: &[(String, String)], prices: &[i64]) -> Catalog {
    let query = |pairs: &[(&str, &str)]| format!("/v1/products?{}", serde_urlencoded::to_string(pairs).unwrap_or_default());
    let sorts = ["newest", "price_asc", "price_desc", "title_asc"];
    let mut c = Catalog { lists: sorts.iter().map(|s| query(&[("sort", s)])).collect(), ..Catalog::default() };
    for (i, slug) in categories.iter().enumerate() {
        c.filtered.push(query(&[("category", slug)]));
        c.filtered.push(query(&[("category", slug), ("sort", sorts[1 + i % 3])]));
    }
    if let (Some(low), Some(high)) = (prices.first(), prices.last()) {
        let mid = prices[prices.len() / 2].to_string();
        let (low, high) = (low.to_string(), high.to_string());
        c.filtered.push(query(&[("price_min", &low), ("price_max", &mid)]));
        c.filtered.push(query(&[("price_min", &mid), ("price_max", &high), ("sort", "price_asc")]));
        if let Some(slug) = categories.first() {
            c.filtered.push(query(&[("category", slug), ("price_max", &mid)]));
        }
    }
    for (i, (name, value)) in attributes.iter().enumerate() {
        c.filtered.push(query(&[(name, value)]));
        if let Some(slug) = categories.get(i % categories.len().max(1)) {
            c.filtered.push(query(&[("category", slug), (name, value), ("sort", "price_desc")]));
        }
    }
    for (i, s) in summaries.iter().enumerate() {
        // By slug mostly, by id sometimes, as storefronts link both ways.
        let key = if i % 4 == 0 { &s["id"] } else { &s["slug"] };
        if let Some(k) = key.as_str() {
            c.products.push(format!("/v1/products/{k}"));
        }
    }
    if c.filtered.is_empty() {
        c.filtered.push(query(&[("limit", "12")]));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsing_paths_use_what_the_catalog_holds() {
        let summaries = vec![json!({"id": "id-1", "slug": "shirt"}), json!({"id": "id-2", "slug": "socks"})];
        let attrs = vec![("attr.colour".to_owned(), "navy blue".to_owned())];
        let c = catalog_paths(&["women".into()], &summaries, &attrs, &[500, 1500, 4000]);
        assert!(c.lists.contains(&"/v1/products?sort=price_desc".to_owned()));
        assert!(c.filtered.contains(&"/v1/products?category=women".to_owned()));
        assert!(c.filtered.contains(&"/v1/products?price_min=500&price_max=1500".to_owned()));
        assert!(c.filtered.contains(&"/v1/products?attr.colour=navy+blue".to_owned()));
        assert_eq!(c.products, ["/v1/products/id-1", "/v1/products/socks"]);
    }
}
