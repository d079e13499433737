//! A realistic demo catalog: a category tree, products with size × colour (or
//! capacity) variants, prices in EUR and USD, attributes and images. Generated
//! from a fixed seed, so two shops seeded alike hold the same catalog.

use std::collections::BTreeMap;

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::domain::catalog::{Image, NewProduct, NewVariant, ProductStatus, Sku, gtin_check_digit};
use crate::domain::money::{Currency, Money};
use crate::domain::shipping::{Rate, WeightTier};
use crate::domain::slug::Slug;
use crate::domain::variant_matrix::{ProductOption, combinations};
use crate::store::Store;
use crate::store::audit::Actor;
use crate::store::catalog::{Category, NewCategory};
use crate::store::rates::NewShippingOption;

struct Department {
    name: &'static str,
    children: &'static [&'static str],
    nouns: &'static [&'static str],
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Apparel,
    Footwear,
    Electronics,
    Home,
}

const DEPARTMENTS: &[Department] = &[
    Department {
        name: "Women",
        children: &["Dresses", "Tops", "Knitwear", "Jackets"],
        nouns: &["Dress", "Blouse", "Cardigan", "Jacket", "Top"],
        kind: Kind::Apparel,
    },
    Department {
        name: "Men",
        children: &["Shirts", "Trousers", "Knitwear", "Coats"],
        nouns: &["Shirt", "Chinos", "Sweater", "Coat", "Polo"],
        kind: Kind::Apparel,
    },
    Department {
        name: "Shoes",
        children: &["Sneakers", "Boots", "Sandals"],
        nouns: &["Sneaker", "Boot", "Sandal", "Loafer"],
        kind: Kind::Footwear,
    },
    Department {
        name: "Electronics",
        children: &["Headphones", "Speakers", "Storage", "Chargers"],
        nouns: &["Headphones", "Speaker", "SSD", "Charger", "Power Bank"],
        kind: Kind::Electronics,
    },
    Department {
        name: "Home",
        children: &["Kitchen", "Bedding", "Lighting", "Decor"],
        nouns: &["Mug", "Duvet Cover", "Lamp", "Vase", "Cutting Board"],
        kind: Kind::Home,
    },
];

pub const ADJECTIVES: &[&str] = &[
    "Classic",
    "Organic",
    "Everyday",
    "Premium",
    "Relaxed",
    "Slim",
    "Vintage",
    "Urban",
    "Coastal",
    "Alpine",
    "Soft",
    "Bold",
    "Minimal",
    "Heritage",
    "Studio",
    "Travel",
    "Essential",
    "Nordic",
    "Summer",
    "Winter",
];
pub const BRANDS: &[&str] = &["Northwind", "Acme", "Fjord & Co", "Lumen", "Atlas", "Kestrel", "Maple Row", "Oakline"];
pub const COLOURS: &[&str] = &["black", "white", "navy", "olive", "sand", "red", "grey", "blue"];
pub const MATERIALS: &[&str] = &["cotton", "linen", "wool", "recycled polyester", "leather", "ceramic", "oak", "aluminium"];

/// The nouns of every department's product titles.
pub fn nouns() -> impl Iterator<Item = &'static str> {
    DEPARTMENTS.iter().flat_map(|d| d.nouns.iter().copied())
}

pub struct DemoReport {
    pub categories: usize,
    pub products: usize,
}

/// Seeds `products` products (and the category tree) into an empty catalog.
/// Does nothing when products already exist.
pub async fn seed(store: &Store, products: usize, progress: bool) -> anyhow::Result<DemoReport> {
    if store.count_products().await? > 0 {
        return Ok(DemoReport { categories: 0, products: 0 });
    }
    let actor = Actor::cli();
    let mut leaves: Vec<(usize, Uuid)> = Vec::new();
    let mut categories = 0;
    for (d, dept) in DEPARTMENTS.iter().enumerate() {
        let root =
            find_or_create(store, category(dept.name, &slugify(dept.name), None, d as i64), &actor, &mut categories).await?;
        for (c, child) in dept.children.iter().enumerate() {
            let slug = slugify(&format!("{} {}", dept.name, child));
            let leaf = find_or_create(store, category(child, &slug, Some(root.id), c as i64), &actor, &mut categories).await?;
            leaves.push((d, leaf.id));
        }
    }

    let bar = if progress { ProgressBar::new(products as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("seeding {bar:40} {pos}/{len} products  {per_sec}  eta {eta}")?);
    let mut rng = StdRng::seed_from_u64(0x004d_4552_4341_544f);
    let mut batch = Vec::with_capacity(500);
    for n in 0..products {
        let (d, leaf) = leaves[n % leaves.len()];
        batch.push(product(&mut rng, n, &DEPARTMENTS[d], leaf)?);
        if batch.len() == 500 || n + 1 == products {
            store.insert_products_unaudited(&batch).await.map_err(|e| anyhow::anyhow!("seeding products: {e}"))?;
            bar.inc(batch.len() as u64);
            batch.clear();
        }
    }
    bar.finish();
    store.seed_stock_unaudited().await?;
    seed_rates(store, &actor).await?;
    store.analyze().await?;
    Ok(DemoReport { categories, products })
}

/// Tax rates and shipping options for a European demo shop that also ships to
/// the US, unless the shop already has some.
async fn seed_rates(store: &Store, actor: &Actor) -> anyhow::Result<()> {
    if store.tax_rates().await?.is_empty() {
        for (country, bp, name) in
            [("DE", 1900, "MwSt."), ("AT", 2000, "USt."), ("FR", 2000, "TVA"), ("NL", 2100, "BTW"), ("US", 0, "none")]
        {
            store.put_tax_rate(country, "", bp, name, actor).await?;
        }
    }
    if store.shipping_options().await?.is_empty() {
        let eu: Vec<String> = ["DE", "AT", "FR", "NL"].map(String::from).to_vec();
        let options = [
            NewShippingOption {
                name: "Standard".into(),
                currency: "EUR".into(),
                countries: eu.clone(),
                rate: Rate::Flat { amount: 495 },
                free_over: Some(5000),
            },
            NewShippingOption {
                name: "Express".into(),
                currency: "EUR".into(),
                countries: eu,
                rate: Rate::Weight {
                    tiers: vec![WeightTier { up_to_grams: 2000, amount: 990 }, WeightTier { up_to_grams: 20000, amount: 1990 }],
                },
                free_over: None,
            },
            NewShippingOption {
                name: "US Ground".into(),
                currency: "USD".into(),
                countries: vec!["US".into()],
                rate: Rate::Flat { amount: 795 },
                free_over: Some(10000),
            },
        ];
        for o in &options {
            store.create_shipping_option(o, actor).await?;
        }
    }
    Ok(())
}

/// Reuses a category with the demo slug, so a seed that stopped half-way (or a
/// shop that already has the demo's categories) can be seeded again.
async fn find_or_create(store: &Store, new: NewCategory, actor: &Actor, created: &mut usize) -> anyhow::Result<Category> {
    if let Some(existing) = store.category_by_slug(new.slug.as_str()).await? {
        return Ok(existing);
    }
    *created += 1;
    store.create_category(&new, actor).await.map_err(|e| anyhow::anyhow!("seeding category {}: {e}", new.name))
}

fn category(name: &str, slug: &str, parent: Option<Uuid>, position: i64) -> NewCategory {
    NewCategory {
        parent_id: parent,
        name: name.to_owned(),
        slug: Slug::parse(slug).unwrap_or_else(|_| Slug::from_title("category").expect("constant slug")),
        description: format!("{name} in the Mercato demo shop."),
        position,
    }
}

fn slugify(s: &str) -> String {
    Slug::from_title(s).map(Slug::into_string).unwrap_or_else(|_| "category".into())
}

fn product(rng: &mut StdRng, n: usize, dept: &Department, leaf: Uuid) -> anyhow::Result<NewProduct> {
    let adjective = ADJECTIVES.choose(rng).copied().unwrap_or("Classic");
    let noun = dept.nouns.choose(rng).copied().unwrap_or("Item");
    let title = format!("{adjective} {noun} {}", n + 1);
    let brand = BRANDS.choose(rng).copied().unwrap_or("Acme");
    let material = MATERIALS.choose(rng).copied().unwrap_or("cotton");
    let options = match dept.kind {
        Kind::Apparel => vec![
            ProductOption { name: "size".into(), values: ["XS", "S", "M", "L", "XL"].map(String::from).to_vec() },
            ProductOption { name: "colour".into(), values: pick(rng, COLOURS, 2) },
        ],
        Kind::Footwear => vec![ProductOption { name: "size".into(), values: (38..=45).map(|s| s.to_string()).collect() }],
        Kind::Electronics => vec![ProductOption { name: "colour".into(), values: pick(rng, &["black", "white", "silver"], 2) }],
        Kind::Home => Vec::new(),
    };
    let base: i64 = match dept.kind {
        Kind::Apparel => rng.random_range(19..=149),
        Kind::Footwear => rng.random_range(49..=199),
        Kind::Electronics => rng.random_range(15..=399),
        Kind::Home => rng.random_range(9..=129),
    } * 100
        + 99;
    let eur = Currency::parse("EUR")?;
    let usd = Currency::parse("USD")?;
    let variants = combinations(&options)
        .into_iter()
        .enumerate()
        .map(|(i, selection)| {
            // Larger sizes cost a little more, as they often do.
            let price = base + (i as i64 % 5) * 100;
            let body = format!("400{:09}", n * 40 + i);
            Ok(NewVariant {
                sku: Sku::parse(&format!("DEMO-{:06}-{:02}", n + 1, i + 1))?,
                options: selection,
                prices: vec![Money::price(price, eur)?, Money::price(price * 108 / 100, usd)?],
                weight_grams: Some(rng.random_range(100..=2500)),
                barcode: Some(format!("{body}{}", gtin_check_digit(&body))),
            })
        })
        .collect::<Result<Vec<_>, crate::domain::validation::Invalid>>()?;
    let mut attributes: BTreeMap<&str, String> = BTreeMap::new();
    attributes.insert("material", material.to_owned());
    let colour_values: Vec<String> = options.iter().filter(|o| o.name == "colour").flat_map(|o| o.values.clone()).collect();
    let mut attribute_pairs: Vec<(String, String)> = attributes.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    attribute_pairs.extend(colour_values.into_iter().map(|c| ("colour".to_owned(), c)));
    Ok(NewProduct {
        slug: Slug::parse(&format!("{}-{}", slugify(&format!("{adjective} {noun}")), n + 1))?,
        description: format!("A {} {} by {brand}, made of {material}.", adjective.to_lowercase(), noun.to_lowercase()),
        title,
        brand: Some(brand.to_owned()),
        // Every tenth product is a draft, as in a real back office.
        status: if n % 10 == 9 { ProductStatus::Draft } else { ProductStatus::Published },
        attributes: attribute_pairs,
        options,
        variants,
        category_ids: vec![leaf],
        images: vec![Image { url: format!("https://images.example.com/demo/{}.jpg", n + 1), alt: Some(noun.to_owned()) }],
    })
}

fn pick(rng: &mut StdRng, from: &[&str], n: usize) -> Vec<String> {
    from.choose_multiple(rng, n).map(|s| s.to_string()).collect()
}
