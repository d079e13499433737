//! What a shopper does, one request at a time, kept cheap for the load
//! generator: bodies are serialised once before the run, and an answer is parsed
//! only for what the next step needs (a cart's id and token, an order's id, or a
//! refusal's problem `type`).

use std::time::Instant;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use super::plan::Scenario;
use super::setup::{Catalog, Stocked};
use super::stats::{AnsweredOrder, ErrorKey, Op, Recorder};

/// Where an answer is recorded: the recorder's shard and the step it belongs to.
#[derive(Clone, Copy)]
pub struct Slot<'a> {
    pub recorder: &'a Recorder,
    pub shard: usize,
    pub step: usize,
}

/// A guest cart, built and ready to check out.
pub struct Cart {
    checkout_url: String,
    token: HeaderValue,
    variant: usize,
}

pub struct Shopper {
    client: reqwest::Client,
    targets: Vec<String>,
    checkout_body: Bytes,
    /// `{"sku": ..., "quantity": 1}` for each stocked variant.
    add_bodies: Vec<Bytes>,
    catalog: Catalog,
}

impl Shopper {
    pub fn new(client: reqwest::Client, targets: Vec<String>, email: &str, stocked: &[Stocked], catalog: Catalog) -> Self {
        let checkout = serde_json::json!({
            "email": email,
            "shipping_address": {"name": "Load Test", "line1": "1 Test St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
            "payment": {"provider": "test", "token": "tok_ok"}
        });
        Shopper {
            client,
            targets,
            checkout_body: Bytes::from(checkout.to_string()),
            add_bodies: stocked
                .iter()
                .map(|s| Bytes::from(serde_json::json!({"sku": s.sku, "quantity": 1}).to_string()))
                .collect(),
            catalog,
        }
    }

    /// The target of visit or buyer `n`: round-robin over the targets.
    fn base(&self, n: u64) -> &str {
        &self.targets[(n % self.targets.len() as u64) as usize]
    }

    /// Sends a request; the body of a success, or why it failed.
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Bytes, ErrorKey> {
        let res = req.send().await.map_err(|e| ErrorKey::transport(&e))?;
        let status = res.status();
        let body = res.bytes().await.map_err(|e| ErrorKey::transport(&e))?;
        if status.is_success() {
            Ok(body)
        } else {
            #[derive(Deserialize)]
            struct Problem {
                #[serde(rename = "type")]
                kind: String,
            }
            let kind = serde_json::from_slice::<Problem>(&body).map(|p| p.kind).unwrap_or_default();
            Err(ErrorKey { status: Some(status.as_u16()), kind })
        }
    }

    /// Sends, records the latency since `since`, and hands back a success's body.
    async fn timed(&self, slot: Slot<'_>, op: Op, since: Instant, req: reqwest::RequestBuilder) -> Option<Bytes> {
        let answer = self.call(req).await;
        slot.recorder.record(slot.shard, slot.step, op, since, answer.as_ref().err().cloned());
        answer.ok()
    }

    /// Creates a guest cart on buyer `n`'s target and adds one unit of `variant`.
    pub async fn build_cart(&self, slot: Slot<'_>, n: u64, variant: usize, since: Instant) -> Option<Cart> {
        #[derive(Deserialize)]
        struct NewCart {
            id: String,
            cart_token: String,
        }
        let base = self.base(n);
        let body = self.timed(slot, Op::Cart, since, self.client.post(format!("{base}/v1/carts"))).await?;
        let cart: NewCart = serde_json::from_slice(&body).ok()?;
        let token = HeaderValue::from_str(&cart.cart_token).ok()?;
        let add = self
            .client
            .post(format!("{base}/v1/carts/{}/items", cart.id))
            .header("x-cart-token", token.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(self.add_bodies[variant].clone());
        self.timed(slot, Op::AddItem, Instant::now(), add).await?;
        Some(Cart { checkout_url: format!("{base}/v1/carts/{}/checkout", cart.id), token, variant })
    }

    /// Checks the cart out with the `test` provider; records the order it answers with.
    pub async fn checkout(&self, slot: Slot<'_>, cart: &Cart, since: Instant) {
        #[derive(Deserialize)]
        struct Answer {
            order: OrderId,
        }
        #[derive(Deserialize)]
        struct OrderId {
            id: String,
        }
        let req = self
            .client
            .post(&cart.checkout_url)
            .header("x-cart-token", cart.token.clone())
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(self.checkout_body.clone());
        let Some(body) = self.timed(slot, Op::Checkout, since, req).await else { return };
        let at = time::OffsetDateTime::now_utc();
        if let Ok(a) = serde_json::from_slice::<Answer>(&body) {
            let order = AnsweredOrder { id: a.order.id, variant: cart.variant, step: slot.step, at };
            slot.recorder.order(slot.shard, order);
        }
    }

    /// One buyer: a cart with a random variant, then its checkout.
    async fn buy(&self, slot: Slot<'_>, n: u64, since: Instant) {
        let variant = rand::random_range(0..self.add_bodies.len());
        if let Some(cart) = self.build_cart(slot, n, variant, since).await {
            self.checkout(slot, &cart, Instant::now()).await;
        }
    }

    /// One storefront read, chosen like a browsing shopper would: lists, filtered
    /// lists, searches, product pages and the category tree.
    async fn browse(&self, slot: Slot<'_>, n: u64, since: Instant) {
        let c = &self.catalog;
        let pick = |paths: &[String]| paths[rand::random_range(0..paths.len())].clone();
        let (op, path) = match rand::random_range(0..100) {
            0..10 => (Op::Categories, "/v1/categories".to_owned()),
            10..35 => (Op::Products, pick(&c.lists)),
            35..60 => (Op::FilteredProducts, pick(&c.filtered)),
            60..75 if !c.words.is_empty() => return self.search(slot, n, since).await,
            _ if c.products.is_empty() => (Op::Products, pick(&c.lists)),
            _ => (Op::Product, pick(&c.products)),
        };
        let req = self.client.get(format!("{}{path}", self.base(n)));
        self.timed(slot, op, since, req).await;
    }

    /// One search: a title word (one in five with two letters swapped, a typo)
    /// and two filters on different keys, with every facet.
    async fn search(&self, slot: Slot<'_>, n: u64, since: Instant) {
        let c = &self.catalog;
        let mut word: Vec<char> = c.words[rand::random_range(0..c.words.len())].chars().collect();
        if word.len() > 4 && rand::random_range(0..5) == 0 {
            let i = rand::random_range(1..word.len() - 1);
            word.swap(i, i + 1);
        }
        let word: String = word.into_iter().collect();
        let mut pairs = vec![("q".to_owned(), word)];
        while pairs.len() < 3 && c.search_filters.len() >= 2 {
            let f = &c.search_filters[rand::random_range(0..c.search_filters.len())];
            if !pairs.iter().any(|(k, _)| *k == f.0) {
                pairs.push(f.clone());
            }
        }
        let path = format!("/v1/search?{}", serde_urlencoded::to_string(&pairs).unwrap_or_default());
        let req = self.client.get(format!("{}{path}", self.base(n)));
        self.timed(slot, Op::Search, since, req).await;
    }

    /// One visit of the scenario: a buyer, a read, or (mixed) one of the two or an
    /// abandoned cart. `since` is when it was meant to start.
    pub async fn visit(&self, scenario: Scenario, slot: Slot<'_>, n: u64, since: Instant) {
        match scenario {
            Scenario::FlashSale | Scenario::SteadyCheckout => self.buy(slot, n, since).await,
            Scenario::Browse => self.browse(slot, n, since).await,
            Scenario::Search if self.catalog.words.is_empty() => self.browse(slot, n, since).await,
            Scenario::Search => self.search(slot, n, since).await,
            Scenario::Mixed => match rand::random_range(0..100) {
                0..85 => self.browse(slot, n, since).await,
                85..95 => {
                    let variant = rand::random_range(0..self.add_bodies.len());
                    self.build_cart(slot, n, variant, since).await;
                }
                _ => self.buy(slot, n, since).await,
            },
        }
    }
}
