//! `mercato loadtest checkout`: many buyers at once against a running shop, over
//! HTTP, then the invariants. Each buyer loops: create a cart, add a variant,
//! check out with a fresh `Idempotency-Key` and `tok_ok`. Checkout latency goes
//! into an HDR histogram; afterwards the shop's ledger must reconcile and no
//! variant may hold more reserved than on hand. With `--emails`, it then reads
//! the shop's database and reports, for every order, the time from the checkout
//! answer to its confirmation e-mail being handed over (SMTP or `.eml`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Mutex;

pub struct CheckoutLoad {
    pub url: String,
    pub admin_email: String,
    pub admin_password: String,
    pub concurrency: usize,
    pub duration: Duration,
    /// Variants to spread buyers over; 1 makes every buyer want the same one.
    pub variants: usize,
    pub stock_per_variant: i64,
    /// The shop's database, to time confirmation e-mails against checkout answers.
    pub emails: Option<crate::store::Store>,
}

#[derive(Default)]
struct Counts {
    created: AtomicU64,
    out_of_stock: AtomicU64,
    other_4xx: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
}

pub async fn run(load: CheckoutLoad) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(load.concurrency).build()?;
    let base = load.url.trim_end_matches('/').to_owned();
    let login: Value = client
        .post(format!("{base}/v1/admin/auth/login"))
        .json(&json!({"email": load.admin_email, "password": load.admin_password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let staff = login["access_token"].as_str().ok_or_else(|| anyhow::anyhow!("login gave no token"))?.to_owned();
    let skus = setup(&client, &base, &staff, load.variants, load.stock_per_variant).await?;
    eprintln!(
        "{} variant(s) with {} units each; {} buyers for {:?}",
        skus.len(),
        load.stock_per_variant,
        load.concurrency,
        load.duration
    );

    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let answered = Arc::new(Mutex::new(Vec::<(String, time::OffsetDateTime)>::new()));
    let counts = Arc::new(Counts::default());
    let skus = Arc::new(skus);
    let started = Instant::now();
    let deadline = started + load.duration;
    let mut workers = Vec::new();
    for w in 0..load.concurrency {
        let (client, base, skus, histogram, counts, answered) =
            (client.clone(), base.clone(), skus.clone(), histogram.clone(), counts.clone(), answered.clone());
        workers.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut orders = Vec::new();
            let mut i = w;
            while Instant::now() < deadline {
                let sku = &skus[i % skus.len()];
                i += load_stride(skus.len());
                match buy(&client, &base, sku).await {
                    Ok(Bought { status, micros, kind, order }) => {
                        let _ = local.record(micros.max(1));
                        orders.extend(order);
                        let c = match status {
                            201 => &counts.created,
                            409 if kind == "out_of_stock" => &counts.out_of_stock,
                            400..=499 => &counts.other_4xx,
                            _ => &counts.server_errors,
                        };
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        counts.transport_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let _ = histogram.lock().await.add(&local);
            answered.lock().await.extend(orders);
        }));
    }
    for w in workers {
        w.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let h = histogram.lock().await;
    let total = h.len();
    let created = counts.created.load(Ordering::Relaxed);
    println!("checkout attempts: {total} in {elapsed:.1} s = {:.1}/s answered", total as f64 / elapsed);
    println!("orders created:    {created} = {:.1}/s", created as f64 / elapsed);
    println!(
        "out_of_stock: {}  other 4xx: {}  5xx: {}  transport errors: {}",
        counts.out_of_stock.load(Ordering::Relaxed),
        counts.other_4xx.load(Ordering::Relaxed),
        counts.server_errors.load(Ordering::Relaxed),
        counts.transport_errors.load(Ordering::Relaxed)
    );
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "checkout latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    );

    // Invariants, read back from the shop itself.
    let recon: Value = client
        .get(format!("{base}/v1/admin/inventory/reconciliation"))
        .bearer_auth(&staff)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let discrepancies = recon["discrepancies"].as_array().map_or(0, Vec::len);
    let mut sold = 0;
    for sku in skus.iter() {
        let level: Value =
            client.get(format!("{base}/v1/admin/inventory/{sku}")).bearer_auth(&staff).send().await?.json().await?;
        let (on_hand, reserved) = (level["on_hand"].as_i64().unwrap_or(-1), level["reserved"].as_i64().unwrap_or(-1));
        if on_hand < 0 || reserved < 0 || reserved > on_hand {
            anyhow::bail!("invariant broken for {sku}: on_hand {on_hand}, reserved {reserved}");
        }
        sold += load.stock_per_variant - on_hand;
    }
    println!("units sold according to stock: {sold}; orders created: {created}; ledger discrepancies: {discrepancies}");
    if discrepancies > 0 || sold != created as i64 {
        anyhow::bail!("the shop's books do not add up");
    }
    if let Some(store) = &load.emails {
        email_latency(store, &answered.lock().await).await?;
    }
    Ok(())
}

/// Waits for every order's confirmation e-mail, then prints the time from the
/// checkout answer (as this client saw it) to the e-mail being handed over.
async fn email_latency(store: &crate::store::Store, answered: &[(String, time::OffsetDateTime)]) -> anyhow::Result<()> {
    let keys: Vec<String> = answered.iter().map(|(id, _)| format!("order_confirmed:{id}")).collect();
    let wait_until = Instant::now() + Duration::from_secs(300);
    let sent = loop {
        let sent = store.notification_sent_times(&keys).await?;
        if sent.len() == keys.len() || Instant::now() > wait_until {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    for (id, at) in answered {
        let Some(sent_at) = sent.get(&format!("order_confirmed:{id}")) else { continue };
        let sent_at = time::OffsetDateTime::parse(sent_at, &time::format_description::well_known::Rfc3339)?;
        let _ = h.record(((sent_at - *at).whole_microseconds().max(1)) as u64);
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "confirmation e-mails: {} of {} sent; answer → e-mail ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        sent.len(),
        keys.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
    if sent.len() < keys.len() {
        anyhow::bail!("{} confirmation e-mail(s) were not sent within 5 minutes", keys.len() - sent.len());
    }
    Ok(())
}

/// Steps through the variants so concurrent buyers spread over them.
fn load_stride(n: usize) -> usize {
    if n > 1 { 7919 % n.max(1) + 1 } else { 1 }
}

struct Bought {
    status: u16,
    micros: u64,
    /// Problem type of a refusal.
    kind: String,
    /// The order placed, and when its answer arrived.
    order: Option<(String, time::OffsetDateTime)>,
}

/// One buyer's flow, through the checkout's answer.
async fn buy(client: &reqwest::Client, base: &str, sku: &str) -> anyhow::Result<Bought> {
    let cart: Value = client.post(format!("{base}/v1/carts")).send().await?.error_for_status()?.json().await?;
    let (id, token) = (cart["id"].as_str().unwrap_or_default(), cart["cart_token"].as_str().unwrap_or_default());
    client
        .post(format!("{base}/v1/carts/{id}/items"))
        .header("x-cart-token", token)
        .json(&json!({"sku": sku, "quantity": 1}))
        .send()
        .await?
        .error_for_status()?;
    let body = json!({
        "email": "load@example.com",
        "shipping_address": {"name": "Load Test", "line1": "1 Test St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        "payment": {"provider": "test", "token": "tok_ok"}
    });
    let t = Instant::now();
    let res = client
        .post(format!("{base}/v1/carts/{id}/checkout"))
        .header("x-cart-token", token)
        .header("idempotency-key", uuid::Uuid::now_v7().to_string())
        .json(&body)
        .send()
        .await?;
    let status = res.status().as_u16();
    let answer: Value = res.json().await.unwrap_or(Value::Null);
    let micros = t.elapsed().as_micros() as u64;
    let order = answer["order"]["id"].as_str().map(|id| (id.to_owned(), time::OffsetDateTime::now_utc()));
    Ok(Bought { status, micros, kind: answer["type"].as_str().unwrap_or_default().to_owned(), order })
}

/// Creates the products (100 variants each, the most one option may list), stocks them, and makes sure
/// German tax and a shipping option exist so the checkouts can be priced.
async fn setup(client: &reqwest::Client, base: &str, staff: &str, variants: usize, stock: i64) -> anyhow::Result<Vec<String>> {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let run = &run[run.len() - 8..];
    client
        .put(format!("{base}/v1/admin/tax-rates"))
        .bearer_auth(staff)
        .json(&json!({"country": "DE", "rate_bp": 1900, "name": "MwSt."}))
        .send()
        .await?
        .error_for_status()?;
    client
        .post(format!("{base}/v1/admin/shipping-options"))
        .bearer_auth(staff)
        .json(&json!({"name": format!("Load {run}"), "currency": "EUR", "countries": ["DE"], "rate": {"kind": "flat", "amount": 495}}))
        .send()
        .await?
        .error_for_status()?;
    let mut skus = Vec::with_capacity(variants);
    for (p, chunk) in (0..variants).collect::<Vec<_>>().chunks(100).enumerate() {
        let values: Vec<String> = chunk.iter().map(|i| format!("v{i}")).collect();
        let vs: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"sku": format!("LOAD-{run}-{i}"), "options": {"variant": format!("v{i}")}, "prices": [{"currency": "EUR", "amount": 1999}]}))
            .collect();
        client
            .post(format!("{base}/v1/admin/products"))
            .bearer_auth(staff)
            .json(&json!({"title": format!("Load test {run} {p}"), "status": "published", "options": [{"name": "variant", "values": values}], "variants": vs}))
            .send()
            .await?
            .error_for_status()?;
        for i in chunk {
            let sku = format!("LOAD-{run}-{i}");
            client
                .post(format!("{base}/v1/admin/inventory/adjustments"))
                .bearer_auth(staff)
                .json(&json!({"sku": sku, "delta": stock, "reason": "load test", "kind": "receipt"}))
                .send()
                .await?
                .error_for_status()?;
            skus.push(sku);
        }
    }
    Ok(skus)
}

/// `mercato loadtest queue`: enqueues `jobs` no-op jobs at once, then lets
/// `workers` workers drain them, and reports jobs/s and the pick-up latency
/// (from enqueue to a worker starting the job).
pub async fn queue(store: &crate::store::Store, jobs: usize, workers: usize, batch: i64) -> anyhow::Result<()> {
    use crate::jobs::{JobFuture, JobHandler, Registry, WorkerSettings, spawn_workers};
    use crate::store::jobs::Job;

    struct Noop(Arc<Mutex<Histogram<u64>>>, Arc<AtomicU64>);
    impl JobHandler for Noop {
        fn run<'a>(&'a self, _store: &'a crate::store::Store, job: &'a Job) -> JobFuture<'a> {
            Box::pin(async move {
                let queued = time::OffsetDateTime::parse(&job.run_at, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| e.to_string())?;
                let waited = (time::OffsetDateTime::now_utc() - queued).whole_microseconds().max(1) as u64;
                let _ = self.0.lock().await.record(waited);
                self.1.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
        }
    }

    let kind = format!("bench.noop.{}", uuid::Uuid::now_v7().simple());
    let payloads: Vec<Value> = (0..jobs).map(|i| json!({"i": i})).collect();
    let t = Instant::now();
    store.enqueue_many(&kind, &payloads).await?;
    eprintln!("enqueued {jobs} jobs in {:.1} s", t.elapsed().as_secs_f64());
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?));
    let done = Arc::new(AtomicU64::new(0));
    let registry = Registry::default().with(&kind, Arc::new(Noop(latency.clone(), done.clone())));
    let settings = WorkerSettings { batch, idle_poll: Duration::from_millis(50), ..WorkerSettings::default() };
    let started = Instant::now();
    let handles = spawn_workers(store, &registry, workers, &settings);
    while (done.load(Ordering::Relaxed) as usize) < jobs {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for h in handles {
        h.abort();
    }
    let h = latency.lock().await;
    let secs = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
    println!(
        "{jobs} jobs, {workers} workers, claim batch {batch}: drained in {elapsed:.1} s = {:.0} jobs/s",
        jobs as f64 / elapsed
    );
    println!("pick-up latency s: p50 {:.2}  p99 {:.2}  max {:.2}", secs(0.5), secs(0.99), h.max() as f64 / 1e6);
    Ok(())
}
