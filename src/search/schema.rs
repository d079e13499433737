//! The index's fields and how a product becomes a document.

use serde::{Deserialize, Serialize};
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use tantivy::{Index, TantivyDocument};
use uuid::Uuid;

use crate::domain::catalog::Image;
use crate::domain::category_tree::Tree;
use crate::domain::money::Currency;
use crate::domain::price_band;
use crate::store::search_documents::SearchDocument;

/// Bumped whenever the fields or the analyzer change: an index built with
/// another version is rebuilt at start.
pub const SCHEMA_VERSION: u32 = 1;

/// The analyzer of the text fields, and of query words (so both meet as the
/// same terms): words split on non-alphanumerics, lower-cased, accents folded.
pub const ANALYZER: &str = "mercato_text";

/// Joins an attribute's name and value in one term (a byte no name contains).
pub const ATTRIBUTE_SEPARATOR: char = '\u{1f}';

#[derive(Clone, Copy)]
pub struct Fields {
    pub id: Field,
    pub title: Field,
    pub description: Field,
    pub brand: Field,
    /// The product's categories and all their ancestors.
    pub category: Field,
    /// `name␟value`.
    pub attribute: Field,
    /// "From" price per currency, banded (`domain::price_band`).
    pub price: Field,
    pub in_stock: Field,
    /// Microseconds since the epoch, for newest-first.
    pub created: Field,
    /// What a hit shows, as JSON (`Stored`).
    pub stored: Field,
}

pub fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING),
        title: b.add_text_field("title", text.clone()),
        description: b.add_text_field("description", text),
        brand: b.add_text_field("brand", STRING | FAST),
        category: b.add_text_field("category", STRING | FAST),
        attribute: b.add_text_field("attribute", STRING | FAST),
        price: b.add_u64_field("price", INDEXED | FAST),
        in_stock: b.add_bool_field("in_stock", INDEXED | FAST),
        created: b.add_u64_field("created", FAST),
        stored: b.add_text_field("stored", STORED),
    };
    (b.build(), fields)
}

pub fn register_analyzer(index: &Index) {
    let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build();
    index.tokenizers().register(ANALYZER, analyzer);
}

/// What a search hit shows without a database read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub brand: Option<String>,
    /// (currency, lowest, highest).
    pub prices: Vec<(String, i64, i64)>,
    pub image: Option<Image>,
    pub in_stock: bool,
    pub created_at: String,
}

pub fn document(fields: &Fields, tree: &Tree, p: &SearchDocument) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.id, p.id.to_string());
    doc.add_text(fields.title, &p.title);
    doc.add_text(fields.description, &p.description);
    if let Some(brand) = &p.brand {
        doc.add_text(fields.brand, brand);
    }
    let mut categories: Vec<Uuid> = p.category_ids.iter().flat_map(|c| tree.ancestors(*c)).collect();
    categories.sort_unstable();
    categories.dedup();
    for c in categories {
        doc.add_text(fields.category, c.to_string());
    }
    for (name, value) in &p.attributes {
        doc.add_text(fields.attribute, format!("{name}{ATTRIBUTE_SEPARATOR}{value}"));
    }
    for (currency, min, _) in &p.prices {
        if let Ok(c) = Currency::parse(currency) {
            doc.add_u64(fields.price, price_band::encode(c, *min));
        }
    }
    doc.add_bool(fields.in_stock, p.in_stock);
    doc.add_u64(fields.created, created_micros(&p.created_at));
    let stored = Stored {
        id: p.id,
        slug: p.slug.clone(),
        title: p.title.clone(),
        brand: p.brand.clone(),
        prices: p.prices.clone(),
        image: p.image.clone(),
        in_stock: p.in_stock,
        created_at: p.created_at.clone(),
    };
    doc.add_text(fields.stored, serde_json::to_string(&stored).unwrap_or_default());
    doc
}

fn created_micros(at: &str) -> u64 {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1000).max(0) as u64)
        .unwrap_or(0)
}
