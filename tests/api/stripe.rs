//! Stripe as the payment provider, with wiremock standing in for its API: what
//! Mercato sends, how each answer moves the order and its stock, what happens
//! when Stripe is down (retries, the circuit breaker, the two checkout modes),
//! and Stripe's signed webhooks.

use std::collections::HashMap;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use mercato::config::{PaymentUnavailable, Secret, Settings, StripeCapture};
use mercato::domain::signature;
use mercato::payments::stripe::StripeProvider;
use mercato::payments::{PaymentProvider, RefundOutcome, RefundRequest};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::checkout::{Guest, german_rates, stocked_product};
use crate::helpers::{Answer, Backend, Cleanup, TestApp, answer, spawn_app_with, test_settings};

const SECRET_KEY: &str = "sk_test_mercato_0123456789";
const WEBHOOK_SECRET: &str = "whsec_stripe_endpoint_secret";

/// Generates one test per database for each listed `async fn(Backend)`; each test
/// starts its own Stripe mock first, since the shop needs its address to start.
macro_rules! on_both_databases_with_stripe {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// A shop with Stripe configured against a mock, a product in stock and a staff token.
struct Shop {
    app: TestApp,
    stripe: MockServer,
    staff: String,
    cleanup: Cleanup,
}

const SKU: &str = "TEE-1";

impl Shop {
    async fn start(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Self {
        let stripe = MockServer::start().await;
        let mut settings = Settings {
            stripe_secret_key: Some(Secret::new(SECRET_KEY)),
            stripe_webhook_secret: Some(Secret::new(WEBHOOK_SECRET)),
            stripe_api_base: stripe.uri(),
            payment_retries: 0,
            ..test_settings()
        };
        tweak(&mut settings);
        let app = spawn_app_with(backend, settings).await;
        let cleanup = app.cleanup();
        let staff = app.owner_token().await;
        german_rates(&app, &staff).await;
        stocked_product(&app, &staff, "Tee", &[(SKU, 1999, 10)]).await;
        Self { app, stripe, staff, cleanup }
    }

    /// A new guest with one item in the cart checks out with Stripe.
    async fn checkout(&self, key: &str) -> Answer {
        self.checkout_as(&self.guest().await, key).await
    }

    async fn guest(&self) -> Guest {
        let guest = self.app.guest_cart().await;
        self.app.add_to_cart(&guest, SKU, 1).await;
        guest
    }

    async fn checkout_as(&self, guest: &Guest, key: &str) -> Answer {
        let body = json!({
            "email": "ann@example.com",
            "shipping_address": {"name": "Ann Lee", "line1": "Invalidenstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
            "payment": {"provider": "stripe", "token": "pm_card_visa"}
        });
        let res = self
            .app
            .client
            .post(self.app.url(&format!("/v1/carts/{}/checkout", guest.cart)))
            .header("x-cart-token", &guest.token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(res).await
    }

    /// (on hand, reserved) of the product.
    async fn stock(&self) -> (i64, i64) {
        let s = self.app.stock(&self.staff, SKU).await;
        (s["on_hand"].as_i64().unwrap(), s["reserved"].as_i64().unwrap())
    }

    async fn order_status(&self, order_id: &str) -> String {
        let order = self.app.admin_get(&format!("/v1/admin/orders/{order_id}"), &self.staff).await.expect(200);
        order["status"].as_str().unwrap().to_owned()
    }

    /// Every order's id, oldest first.
    async fn order_ids(&self) -> Vec<String> {
        let rows = sqlx::query("SELECT id FROM orders ORDER BY created_at").fetch_all(self.app.store.pool()).await.unwrap();
        rows.iter().map(|r| sqlx::Row::get::<String, _>(r, "id")).collect()
    }

    async fn requests(&self) -> Vec<Request> {
        self.stripe.received_requests().await.unwrap_or_default()
    }

    /// Sends a webhook body signed as Stripe would, `age` seconds ago.
    async fn webhook(&self, body: &str, secret: &str, age: i64) -> Answer {
        let t = time::OffsetDateTime::now_utc().unix_timestamp() - age;
        self.webhook_with_header(body, &signature::sign(secret.as_bytes(), t, body.as_bytes())).await
    }

    async fn webhook_with_header(&self, body: &str, signature_header: &str) -> Answer {
        let res = self
            .app
            .client
            .post(self.app.url("/v1/payments/webhooks/stripe"))
            .header("content-type", "application/json")
            .header("stripe-signature", signature_header)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        answer(res).await
    }

    async fn finish(self) {
        self.app.assert_ledger_reconciles(&self.staff).await;
        self.cleanup.run().await;
    }
}

fn intent(id: &str, status: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"id": id, "object": "payment_intent", "status": status, "amount": 2494}))
}

fn payment_intents() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path("/v1/payment_intents"))
}

fn form(request: &Request) -> HashMap<String, String> {
    serde_urlencoded::from_bytes(&request.body).expect("a form-encoded body")
}

fn header_of<'a>(request: &'a Request, name: &str) -> &'a str {
    request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn event(id: &str, kind: &str, object: Value) -> String {
    json!({"id": id, "object": "event", "type": kind, "created": 1_700_000_000, "livemode": false, "data": {"object": object}})
        .to_string()
}

async fn a_stripe_payment_sends_the_documented_form_under_the_order_key(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    payment_intents().respond_with(intent("pi_paid", "succeeded")).expect(1).mount(&shop.stripe).await;

    let placed = shop.checkout("s-1").await.expect(201);
    assert_eq!(placed["order"]["status"], "paid");
    assert_eq!(placed["payment"], json!({"provider": "stripe", "status": "succeeded", "reference": "pi_paid"}));
    let order_id = placed["order"]["id"].as_str().unwrap();

    let requests = shop.requests().await;
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(header_of(sent, "idempotency-key"), format!("order-{order_id}"));
    assert_eq!(header_of(sent, "authorization"), format!("Bearer {SECRET_KEY}"));
    assert_eq!(header_of(sent, "content-type"), "application/x-www-form-urlencoded");
    let fields = form(sent);
    let expected: HashMap<String, String> = [
        ("amount", placed["order"]["grand_total"].as_i64().unwrap().to_string()),
        ("currency", "eur".to_owned()),
        ("payment_method", "pm_card_visa".to_owned()),
        ("confirm", "true".to_owned()),
        ("automatic_payment_methods[enabled]", "true".to_owned()),
        ("automatic_payment_methods[allow_redirects]", "never".to_owned()),
        ("metadata[order_id]", order_id.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(fields, expected);
    assert_eq!(shop.stock().await, (9, 0));
    shop.finish().await;
}

async fn a_card_decline_fails_the_order_and_releases_its_stock(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    let declined = json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.", "payment_intent": {"id": "pi_declined", "status": "requires_payment_method"}}});
    payment_intents().respond_with(ResponseTemplate::new(402).set_body_json(declined)).mount(&shop.stripe).await;

    shop.checkout("d-1").await.problem(402, "payment_declined");
    let ids = shop.order_ids().await;
    assert_eq!(ids.len(), 1);
    assert_eq!(shop.order_status(&ids[0]).await, "payment_failed");
    let payment = shop.app.store.payment_of(ids[0].parse().unwrap()).await.unwrap().unwrap();
    assert_eq!((payment.status.as_str(), payment.provider_ref.as_deref()), ("declined", Some("pi_declined")));
    assert_eq!(shop.stock().await, (10, 0));
    shop.finish().await;
}

async fn a_stripe_error_is_retried_under_the_same_key_and_pays_once(backend: Backend) {
    let shop = Shop::start(backend, |s| {
        s.payment_retries = 2;
        s.payment_timeout_secs = 5;
    })
    .await;
    payment_intents()
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": {"type": "api_error"}})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&shop.stripe)
        .await;
    payment_intents().respond_with(intent("pi_second_try", "succeeded")).mount(&shop.stripe).await;

    let placed = shop.checkout("r-1").await.expect(201);
    assert_eq!(placed["order"]["status"], "paid");
    assert_eq!(placed["payment"]["reference"], "pi_second_try");
    let requests = shop.requests().await;
    assert_eq!(requests.len(), 2);
    let key = format!("order-{}", placed["order"]["id"].as_str().unwrap());
    assert!(requests.iter().all(|r| header_of(r, "idempotency-key") == key), "every attempt carries {key}");
    assert_eq!(form(&requests[0]), form(&requests[1]), "the retry is the same request");
    assert_eq!(shop.order_ids().await.len(), 1);
    assert_eq!(shop.stock().await, (9, 0));
    shop.finish().await;
}

async fn an_unreadable_answer_is_a_503_and_releases_the_stock(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    payment_intents()
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>bad gateway</html>"))
        .mount(&shop.stripe)
        .await;

    shop.checkout("g-1").await.problem(503, "payment_unavailable");
    let ids = shop.order_ids().await;
    assert_eq!(shop.order_status(&ids[0]).await, "payment_failed");
    assert_eq!(shop.stock().await, (10, 0));
    shop.finish().await;
}

/// When the start's outcome was unknown (here: Stripe answered garbage) and Stripe
/// later reports the money taken, the order is found by the metadata sent with the
/// start and the payment is kept for a refund.
async fn a_payment_that_succeeded_after_all_is_found_by_its_order_and_kept_for_refund(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    payment_intents().respond_with(ResponseTemplate::new(502)).mount(&shop.stripe).await;
    shop.checkout("l-1").await.problem(503, "payment_unavailable");
    let order_id = shop.order_ids().await.remove(0);

    let body = event(
        "evt_late",
        "payment_intent.succeeded",
        json!({"id": "pi_late", "object": "payment_intent", "status": "succeeded", "metadata": {"order_id": order_id}}),
    );
    assert_eq!(shop.webhook(&body, WEBHOOK_SECRET, 0).await.expect(200)["status"], "refund_required");
    assert_eq!(shop.webhook(&body, WEBHOOK_SECRET, 0).await.expect(200)["status"], "duplicate");
    let payment = shop.app.store.payment_of(order_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!((payment.status.as_str(), payment.provider_ref.as_deref()), ("refund_required", Some("pi_late")));
    assert_eq!(shop.order_status(&order_id).await, "payment_failed");
    assert_eq!(shop.stock().await, (10, 0));
    shop.finish().await;
}

async fn a_stripe_that_does_not_answer_in_time_is_a_503(backend: Backend) {
    let shop = Shop::start(backend, |s| s.payment_timeout_secs = 1).await;
    payment_intents().respond_with(intent("pi_slow", "succeeded").set_delay(Duration::from_secs(10))).mount(&shop.stripe).await;

    shop.checkout("t-1").await.problem(503, "payment_unavailable");
    let ids = shop.order_ids().await;
    assert_eq!(shop.order_status(&ids[0]).await, "payment_failed");
    assert_eq!(shop.stock().await, (10, 0));
    shop.finish().await;
}

async fn the_circuit_opens_after_repeated_failures_and_checkouts_then_fail_without_calling_stripe(backend: Backend) {
    let shop = Shop::start(backend, |s| {
        s.payment_circuit_failure_threshold = 2;
        s.payment_circuit_cooldown_secs = 3600;
        // A staging shop: the simulated gateway next to the real one.
        s.test_payments = Some(true);
    })
    .await;
    payment_intents().respond_with(ResponseTemplate::new(503)).mount(&shop.stripe).await;

    shop.checkout("c-1").await.problem(503, "payment_unavailable");
    shop.checkout("c-2").await.problem(503, "payment_unavailable");
    assert_eq!(shop.requests().await.len(), 2);
    // Open: refused at once, Stripe never asked.
    shop.checkout("c-3").await.problem(503, "payment_unavailable");
    assert_eq!(shop.requests().await.len(), 2);
    assert_eq!(shop.stock().await, (10, 0));
    // The `test` provider has its own circuit, still closed.
    let guest = shop.app.guest_cart().await;
    shop.app.add_to_cart(&guest, SKU, 1).await;
    shop.app.checkout(&guest, "c-4", "tok_ok").await.expect(201);
    let metrics = shop.app.get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(
        text.lines().any(|l| l.starts_with("payment_provider_calls_total")
            && l.contains("provider=\"stripe\"")
            && l.contains("outcome=\"circuit_open\"")),
        "{text}"
    );
    shop.finish().await;
}

async fn queued_payments_hold_the_stock_and_the_retry_job_pays_them(backend: Backend) {
    let shop = Shop::start(backend, |s| s.payment_unavailable = PaymentUnavailable::Queue).await;
    // Down for the checkout and the job's first run, then back.
    payment_intents().respond_with(ResponseTemplate::new(503)).up_to_n_times(2).with_priority(1).mount(&shop.stripe).await;
    payment_intents().respond_with(intent("pi_queued", "succeeded")).mount(&shop.stripe).await;

    let guest = shop.guest().await;
    let accepted = shop.checkout_as(&guest, "q-1").await.expect(202);
    assert_eq!(accepted["order"]["status"], "pending_payment");
    assert_eq!(accepted["payment"], json!({"provider": "stripe", "status": "pending", "reference": null}));
    let order_id = accepted["order"]["id"].as_str().unwrap().to_owned();
    assert_eq!(shop.stock().await, (10, 1));
    let payment = shop.app.store.payment_of(order_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(payment.status, "unknown");
    // The same key replays the same answer without asking Stripe again.
    assert_eq!(shop.checkout_as(&guest, "q-1").await.expect(202), accepted);
    assert_eq!(shop.requests().await.len(), 1);

    let registry = &shop.app.jobs;
    let worker = mercato::jobs::WorkerSettings { retry_base: Duration::ZERO, ..Default::default() };
    // Stripe still down: the job fails and stays queued; the order keeps waiting.
    while mercato::jobs::run_once(&shop.app.store, registry, "w", &worker).await.unwrap() > 0 {
        if shop.requests().await.len() == 2 {
            break;
        }
    }
    let job = sqlx::query("SELECT status, attempts FROM jobs WHERE kind = 'payment.retry'")
        .fetch_one(shop.app.store.pool())
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<String, _>(&job, "status"), "queued");
    assert_eq!(sqlx::Row::get::<i64, _>(&job, "attempts"), 1);
    assert_eq!(shop.order_status(&order_id).await, "pending_payment");
    // Back up: the next run pays the order.
    while mercato::jobs::run_once(&shop.app.store, registry, "w", &worker).await.unwrap() > 0 {}
    assert_eq!(shop.order_status(&order_id).await, "paid");
    assert_eq!(shop.stock().await, (9, 0));
    let requests = shop.requests().await;
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| header_of(r, "idempotency-key") == format!("order-{order_id}")));
    let payment = shop.app.store.payment_of(order_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!((payment.status.as_str(), payment.provider_ref.as_deref()), ("succeeded", Some("pi_queued")));
    let job = sqlx::query("SELECT status FROM jobs WHERE kind = 'payment.retry'").fetch_one(shop.app.store.pool()).await.unwrap();
    assert_eq!(sqlx::Row::get::<String, _>(&job, "status"), "done");
    shop.finish().await;
}

async fn a_queued_payment_whose_order_expired_is_not_asked_for_again(backend: Backend) {
    let shop = Shop::start(backend, |s| s.payment_unavailable = PaymentUnavailable::Queue).await;
    payment_intents().respond_with(ResponseTemplate::new(503)).up_to_n_times(1).with_priority(1).mount(&shop.stripe).await;
    payment_intents().respond_with(intent("pi_too_late", "succeeded")).mount(&shop.stripe).await;
    let accepted = shop.checkout("x-1").await.expect(202);
    let order_id = accepted["order"]["id"].as_str().unwrap().to_owned();
    // The reservation runs out before the job gets its turn.
    let later = mercato::store::format_time(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
    assert_eq!(mercato::ops::checkout::expire_due(&shop.app.store, &later).await.unwrap(), 1);

    let registry = &shop.app.jobs;
    while mercato::jobs::run_once(&shop.app.store, registry, "w", &Default::default()).await.unwrap() > 0 {}
    assert_eq!(shop.requests().await.len(), 1, "Stripe is not asked to charge an expired order");
    assert_eq!(shop.order_status(&order_id).await, "expired");
    let job = sqlx::query("SELECT status FROM jobs WHERE kind = 'payment.retry'").fetch_one(shop.app.store.pool()).await.unwrap();
    assert_eq!(sqlx::Row::get::<String, _>(&job, "status"), "done");
    assert_eq!(shop.stock().await, (10, 0));
    shop.finish().await;
}

async fn a_signed_stripe_event_is_applied_once_and_later_failures_change_nothing(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    payment_intents().respond_with(intent("pi_async", "processing")).mount(&shop.stripe).await;
    let placed = shop.checkout("w-1").await.expect(201);
    assert_eq!(placed["payment"]["status"], "pending");
    let order_id = placed["order"]["id"].as_str().unwrap().to_owned();
    assert_eq!(shop.stock().await, (10, 1));

    let object = json!({"id": "pi_async", "object": "payment_intent", "status": "succeeded", "metadata": {"order_id": order_id}});
    let succeeded = event("evt_ok", "payment_intent.succeeded", object.clone());
    assert_eq!(shop.webhook(&succeeded, WEBHOOK_SECRET, 0).await.expect(200)["status"], "applied");
    assert_eq!(shop.order_status(&order_id).await, "paid");
    assert_eq!(shop.webhook(&succeeded, WEBHOOK_SECRET, 0).await.expect(200)["status"], "duplicate");
    // A failure delivered after the success (Stripe does not order events) leaves it paid.
    let failed = event("evt_failed", "payment_intent.payment_failed", json!({"id": "pi_async", "object": "payment_intent"}));
    assert_eq!(shop.webhook(&failed, WEBHOOK_SECRET, 0).await.expect(200)["status"], "ignored");
    assert_eq!(shop.order_status(&order_id).await, "paid");
    assert_eq!(shop.stock().await, (9, 0));
    // Refunds are parsed and acknowledged; other types are acknowledged so Stripe stops sending them.
    let refunded = event(
        "evt_refund",
        "charge.refunded",
        json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_async", "amount_refunded": 500,
            "refunds": {"object": "list", "data": [{"id": "re_1", "amount": 500, "status": "succeeded"}]}}),
    );
    assert_eq!(shop.webhook(&refunded, WEBHOOK_SECRET, 0).await.expect(200)["status"], "ignored");
    let other = event("evt_other", "customer.created", json!({"id": "cus_1", "object": "customer"}));
    assert_eq!(shop.webhook(&other, WEBHOOK_SECRET, 0).await.expect(200)["status"], "ignored");
    let history = shop.app.admin_get(&format!("/v1/admin/orders/{order_id}/history"), &shop.staff).await.expect(200);
    assert_eq!(history["items"].as_array().unwrap().len(), 2, "{history}");
    shop.finish().await;
}

/// Holds Stripe's answer until the test lets it go, after telling the test the
/// request arrived: lets a webhook overtake the answer to the start, as it can in
/// production.
struct Gate {
    arrived: Mutex<mpsc::Sender<Vec<u8>>>,
    release: Mutex<mpsc::Receiver<()>>,
    response: ResponseTemplate,
}

impl Respond for Gate {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let _ = self.arrived.lock().unwrap().send(request.body.clone());
        // Runs on the mock server's own thread, so blocking here blocks nothing else.
        let _ = self.release.lock().unwrap().recv_timeout(Duration::from_secs(30));
        self.response.clone()
    }
}

/// A gated mock answering `response`; returns (request bodies as they arrive, the release).
async fn gate(shop: &Shop, response: ResponseTemplate) -> (mpsc::Receiver<Vec<u8>>, mpsc::Sender<()>) {
    let (arrived, arrivals) = mpsc::channel();
    let (release, released) = mpsc::channel();
    let gate = Gate { arrived: Mutex::new(arrived), release: Mutex::new(released), response };
    payment_intents().respond_with(gate).mount(&shop.stripe).await;
    (arrivals, release)
}

/// Waits for the gated request and sends the `payment_intent.succeeded` webhook for it.
async fn pay_by_webhook_while_the_start_waits(shop: &Shop, arrivals: mpsc::Receiver<Vec<u8>>, reference: &str) -> String {
    let body = tokio::task::spawn_blocking(move || arrivals.recv_timeout(Duration::from_secs(30))).await.unwrap().unwrap();
    let fields: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap();
    let order_id = fields["metadata[order_id]"].clone();
    let object = json!({"id": reference, "object": "payment_intent", "status": "succeeded", "metadata": {"order_id": order_id}});
    let webhook = event(&format!("evt_{reference}"), "payment_intent.succeeded", object);
    assert_eq!(shop.webhook(&webhook, WEBHOOK_SECRET, 0).await.expect(200)["status"], "applied");
    order_id
}

async fn refund_jobs(shop: &Shop) -> i64 {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE kind = 'payment.refund_required'")
        .fetch_one(shop.app.store.pool())
        .await
        .unwrap();
    sqlx::Row::get::<i64, _>(&row, "n")
}

async fn a_webhook_that_overtakes_the_answer_to_the_start_is_not_taken_for_a_second_payment(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    let (arrivals, release) = gate(&shop, intent("pi_race", "succeeded")).await;
    let guest = shop.guest().await;
    let webhook_first = async {
        let order_id = pay_by_webhook_while_the_start_waits(&shop, arrivals, "pi_race").await;
        release.send(()).unwrap();
        order_id
    };
    let (placed, order_id) = tokio::join!(shop.checkout_as(&guest, "race-1"), webhook_first);
    let placed = placed.expect(201);
    assert_eq!(placed["order"]["id"], order_id.as_str());
    assert_eq!(placed["order"]["status"], "paid");
    let payment = shop.app.store.payment_of(order_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!((payment.status.as_str(), payment.provider_ref.as_deref()), ("succeeded", Some("pi_race")));
    assert_eq!(refund_jobs(&shop).await, 0);
    assert_eq!(shop.stock().await, (9, 0));
    shop.finish().await;
}

async fn a_start_that_timed_out_after_its_webhook_paid_the_order_answers_paid(backend: Backend) {
    let shop = Shop::start(backend, |s| s.payment_timeout_secs = 3).await;
    // Never released in time: the call times out after the webhook has paid the order.
    let (arrivals, release) = gate(&shop, intent("pi_slow_race", "succeeded")).await;
    let guest = shop.guest().await;
    let (placed, order_id) =
        tokio::join!(shop.checkout_as(&guest, "race-2"), pay_by_webhook_while_the_start_waits(&shop, arrivals, "pi_slow_race"));
    drop(release);
    let placed = placed.expect(201);
    assert_eq!(placed["order"]["id"], order_id.as_str());
    assert_eq!(placed["order"]["status"], "paid");
    assert_eq!(placed["payment"]["reference"], "pi_slow_race");
    assert_eq!(shop.order_status(&order_id).await, "paid");
    assert_eq!(refund_jobs(&shop).await, 0);
    assert_eq!(shop.stock().await, (9, 0));
    shop.finish().await;
}

async fn bad_and_stale_stripe_signatures_are_refused(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    let body = event("evt_sig", "customer.created", json!({"id": "cus_1"}));
    shop.webhook(&body, "whsec_someone_else", 0).await.problem(400, "invalid_signature");
    shop.webhook(&body, WEBHOOK_SECRET, 301).await.problem(400, "stale_signature");
    shop.webhook_with_header(&body, "").await.problem(400, "invalid_signature");
    shop.webhook_with_header(&body, "t=abc,v1=00").await.problem(400, "invalid_signature");
    // Stripe sends one `v1` per active secret while a secret is rolled: any may match.
    let t = time::OffsetDateTime::now_utc().unix_timestamp();
    let good = signature::sign(WEBHOOK_SECRET.as_bytes(), t, body.as_bytes());
    let good_v1 = good.split("v1=").nth(1).unwrap();
    let rolled =
        format!("t={t},v1={},v1={good_v1},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39", "ab".repeat(32));
    assert_eq!(shop.webhook_with_header(&body, &rolled).await.expect(200)["status"], "ignored");
    shop.finish().await;
}

#[tokio::test]
async fn the_stripe_webhook_is_not_found_when_stripe_is_not_configured() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let cleanup = app.cleanup();
    let body = event("evt_x", "customer.created", json!({"id": "cus_1"}));
    let t = time::OffsetDateTime::now_utc().unix_timestamp();
    let res = app
        .client
        .post(app.url("/v1/payments/webhooks/stripe"))
        .header("stripe-signature", signature::sign(WEBHOOK_SECRET.as_bytes(), t, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    answer(res).await.problem(404, "not_found");
    cleanup.run().await;
}

#[tokio::test]
async fn a_stripe_key_without_its_webhook_secret_stops_the_start() {
    let settings = Settings { stripe_secret_key: Some(Secret::new(SECRET_KEY)), ..test_settings() };
    let err = mercato::startup::Application::build(&settings).await.err().expect("refused");
    let message = format!("{err:#}");
    assert!(message.contains("STRIPE_WEBHOOK_SECRET"), "{message}");
    assert!(!message.contains(SECRET_KEY), "{message}");
}

#[tokio::test]
async fn refunds_are_posted_under_the_refund_key_and_their_statuses_mapped() {
    let stripe = MockServer::start().await;
    let provider = StripeProvider::new(Secret::new(SECRET_KEY), &stripe.uri(), false).unwrap();
    let cases: [(ResponseTemplate, RefundOutcome); 4] = [
        (
            ResponseTemplate::new(200).set_body_json(json!({"id": "re_ok", "object": "refund", "status": "succeeded"})),
            RefundOutcome::Succeeded { reference: "re_ok".into() },
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"id": "re_wait", "object": "refund", "status": "pending"})),
            RefundOutcome::Pending { reference: "re_wait".into() },
        ),
        (
            ResponseTemplate::new(200).set_body_json(
                json!({"id": "re_bad", "object": "refund", "status": "failed", "failure_reason": "lost_or_stolen_card"}),
            ),
            RefundOutcome::Failed { reason: "lost_or_stolen_card".into() },
        ),
        (
            ResponseTemplate::new(400)
                .set_body_json(json!({"error": {"type": "invalid_request_error", "code": "charge_already_refunded"}})),
            RefundOutcome::Failed { reason: "charge_already_refunded".into() },
        ),
    ];
    for (response, expected) in cases {
        let request = RefundRequest {
            refund_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            payment_reference: "pi_refund_me".into(),
            amount: 1250,
            currency: "EUR".into(),
        };
        Mock::given(method("POST"))
            .and(path("/v1/refunds"))
            .and(header("idempotency-key", request.idempotency_key().as_str()))
            .respond_with(response)
            .expect(1)
            .mount(&stripe)
            .await;
        assert_eq!(provider.refund(&request).await.unwrap(), expected);
        let sent = stripe.received_requests().await.unwrap().pop().unwrap();
        let expected_form: HashMap<String, String> = [
            ("payment_intent", "pi_refund_me".to_owned()),
            ("amount", "1250".to_owned()),
            ("metadata[refund_id]", request.refund_id.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(form(&sent), expected_form);
        assert_eq!(header_of(&sent, "authorization"), format!("Bearer {SECRET_KEY}"));
    }
    // Stripe down: the outcome is unknown, to be retried under the same key.
    Mock::given(method("POST")).and(path("/v1/refunds")).respond_with(ResponseTemplate::new(503)).mount(&stripe).await;
    let request = RefundRequest {
        refund_id: Uuid::now_v7(),
        order_id: Uuid::now_v7(),
        payment_reference: "pi_refund_me".into(),
        amount: 1,
        currency: "EUR".into(),
    };
    assert!(matches!(provider.refund(&request).await, Err(mercato::payments::ProviderError::Unavailable(_))));
}

/// A refund Stripe cannot take waits in the queue, goes out again under the same
/// key, and is settled by Stripe's `charge.refunded` event, once.
async fn a_refund_waits_for_stripe_in_the_queue_and_is_settled_by_its_webhook(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    payment_intents().respond_with(intent("pi_paid", "succeeded")).mount(&shop.stripe).await;
    let placed = shop.checkout("r-1").await.expect(201);
    let order_id = placed["order"]["id"].as_str().unwrap().to_owned();
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&shop.stripe)
        .await;
    let refund = shop.app.refund(&shop.staff, &order_id, "rk-1", 500).await.expect(202);
    assert_eq!(refund["status"], "pending");

    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "re_1", "object": "refund", "amount": 500, "status": "pending"})),
        )
        .mount(&shop.stripe)
        .await;
    // The queued retry is due a minute later; bring it forward.
    sqlx::query("UPDATE jobs SET run_at = $1 WHERE kind = 'refund.execute'")
        .bind(mercato::store::now())
        .execute(shop.app.store.pool())
        .await
        .unwrap();
    shop.app.drain_jobs().await;
    let keys: Vec<String> = shop
        .requests()
        .await
        .iter()
        .filter(|r| r.url.path() == "/v1/refunds")
        .map(|r| header_of(r, "idempotency-key").to_owned())
        .collect();
    assert_eq!(keys, vec![format!("refund-{}", refund["id"].as_str().unwrap()); 2]);
    let detail = shop.app.admin_get(&format!("/v1/admin/orders/{order_id}"), &shop.staff).await.expect(200);
    assert_eq!((detail["refunds"][0]["status"].as_str(), detail["refunded_total"].as_i64()), (Some("pending"), Some(0)));

    let refunded = event(
        "evt_re_1",
        "charge.refunded",
        json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_paid", "amount_refunded": 500,
            "refunds": {"object": "list", "data": [{"id": "re_1", "amount": 500, "status": "succeeded"}]}}),
    );
    assert_eq!(shop.webhook(&refunded, WEBHOOK_SECRET, 0).await.expect(200)["status"], "applied");
    assert_eq!(shop.webhook(&refunded, WEBHOOK_SECRET, 0).await.expect(200)["status"], "duplicate");
    let detail = shop.app.admin_get(&format!("/v1/admin/orders/{order_id}"), &shop.staff).await.expect(200);
    assert_eq!(detail["refunds"][0]["status"], "succeeded");
    assert_eq!((detail["refunded_total"].as_i64(), detail["refund_status"].as_str()), (Some(500), Some("partially_refunded")));
    shop.finish().await;
}

/// With a real gateway configured, the simulated one is off unless asked for:
/// nobody pays with `tok_ok`, and its webhook route is gone.
async fn a_shop_with_stripe_takes_no_simulated_payments(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    let guest = shop.guest().await;
    let refused = shop.app.checkout(&guest, "t-1", "tok_ok").await.problem(422, "validation_failed");
    assert_eq!(refused["errors"][0]["field"], "payment.provider", "{refused}");
    assert_eq!(shop.stock().await, (10, 0));
    shop.app
        .client
        .post(shop.app.url("/v1/payments/webhooks/test"))
        .body("{}")
        .send()
        .await
        .map(|r| assert_eq!(r.status(), 404))
        .unwrap();
    shop.finish().await;
}

/// A `mercato worker` process working this shop's queue.
fn worker_process(shop: &Shop) -> std::process::Child {
    let settings = &shop.app.settings;
    std::process::Command::new(env!("CARGO_BIN_EXE_mercato"))
        .arg("worker")
        .args(["--count", "1"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", settings.database_url())
        .env("MERCATO_DATA_DIR", &settings.data_dir)
        .env("MERCATO_JWT_SECRET", settings.jwt_secret.as_deref().unwrap())
        .env("MERCATO_TEST_PAYMENT_WEBHOOK_SECRET", settings.test_payment_webhook_secret.as_deref().unwrap())
        .env("STRIPE_SECRET_KEY", SECRET_KEY)
        .env("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("MERCATO_STRIPE_API_BASE", shop.stripe.uri())
        .env("MERCATO_PAYMENT_RETRIES", "0")
        .env("MERCATO_JOB_LEASE_SECS", "2")
        .env("MERCATO_HOUSEKEEPING", "false")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mercato worker starts")
}

/// Polls `check` every 100 ms for up to 30 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting: {what}");
}

/// A worker *process* killed (SIGKILL) while Stripe is refunding: its job is taken
/// over by another process once the lease runs out, the same refund is asked for
/// under the same key, and the money goes back once.
async fn a_worker_process_killed_mid_refund_is_taken_over_and_refunds_once(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    payment_intents().respond_with(intent("pi_paid", "succeeded")).mount(&shop.stripe).await;
    let placed = shop.checkout("kill-1").await.expect(201);
    let order_id = placed["order"]["id"].as_str().unwrap().to_owned();
    // Stripe is down for the request: the refund waits in the queue.
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&shop.stripe)
        .await;
    let refund = shop.app.refund(&shop.staff, &order_id, "kill-r", 700).await.expect(202);
    // Then it hangs on the first worker's call, and answers the next one.
    let ok =
        ResponseTemplate::new(200).set_body_json(json!({"id": "re_k", "object": "refund", "amount": 700, "status": "succeeded"}));
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ok.clone().set_delay(Duration::from_secs(120)))
        .up_to_n_times(1)
        .mount(&shop.stripe)
        .await;
    Mock::given(method("POST")).and(path("/v1/refunds")).respond_with(ok).mount(&shop.stripe).await;
    sqlx::query("UPDATE jobs SET run_at = $1 WHERE kind = 'refund.execute'")
        .bind(mercato::store::now())
        .execute(shop.app.store.pool())
        .await
        .unwrap();
    let refund_calls = || async { shop.requests().await.iter().filter(|r| r.url.path() == "/v1/refunds").count() };

    let mut first = worker_process(&shop);
    eventually("the first worker calls Stripe", || async { refund_calls().await == 2 }).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = worker_process(&shop);
    let refunded = || async {
        let detail = shop.app.admin_get(&format!("/v1/admin/orders/{order_id}"), &shop.staff).await.expect(200);
        detail["refunded_total"] == 700
    };
    eventually("the second worker finishes the refund", refunded).await;
    second.kill().unwrap();
    second.wait().unwrap();

    let keys: Vec<String> = shop
        .requests()
        .await
        .iter()
        .filter(|r| r.url.path() == "/v1/refunds")
        .map(|r| header_of(r, "idempotency-key").to_owned())
        .collect();
    assert_eq!(keys, vec![format!("refund-{}", refund["id"].as_str().unwrap()); 3]);
    let detail = shop.app.admin_get(&format!("/v1/admin/orders/{order_id}"), &shop.staff).await.expect(200);
    assert_eq!(detail["refunds"].as_array().unwrap().len(), 1);
    assert_eq!((detail["refunds"][0]["status"].as_str(), detail["refunded_total"].as_i64()), (Some("succeeded"), Some(700)));
    let jobs = shop.app.store.list_jobs(None, Some("refund.execute"), None, 10).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.status.as_str()).collect::<Vec<_>>(), ["done"]);
    assert_eq!(jobs[0].attempts, 2, "claimed by the killed worker, then by the second");
    shop.finish().await;
}

/// Stripe refuses the refund of a cancelled order: the cancel stands, the refusal
/// is a clear 409, and the money can be sent again once Stripe takes it; a refund
/// Stripe first leaves pending is settled by its `refund.updated` event.
async fn a_refused_refund_of_a_cancelled_order_can_be_sent_again(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    payment_intents().respond_with(intent("pi_c", "succeeded")).mount(&shop.stripe).await;
    let placed = shop.checkout("c-1").await.expect(201);
    let order_id = placed["order"]["id"].as_str().unwrap().to_owned();
    let total = placed["order"]["grand_total"].as_i64().unwrap();
    let refused = json!({"error": {"type": "invalid_request_error", "code": "charge_disputed", "message": "disputed"}});
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(400).set_body_json(refused))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&shop.stripe)
        .await;
    let cancelled = shop.app.admin_post(&format!("/v1/admin/orders/{order_id}/cancel"), &shop.staff, json!({})).await.expect(200);
    assert_eq!((cancelled["status"].as_str(), cancelled["refunds"][0]["status"].as_str()), (Some("cancelled"), Some("failed")));
    assert_eq!(shop.stock().await, (10, 0));
    shop.app.refund(&shop.staff, &order_id, "again-1", total).await.problem(409, "refund_failed");

    // Stripe takes it now, first as pending.
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "re_c", "object": "refund", "amount": total, "status": "pending"})),
        )
        .mount(&shop.stripe)
        .await;
    let refund = shop.app.refund(&shop.staff, &order_id, "again-2", total).await.expect(202);
    let updated = event(
        "evt_ru",
        "refund.updated",
        json!({"id": "re_c", "object": "refund", "amount": total, "status": "succeeded", "metadata": {"refund_id": refund["id"]}}),
    );
    assert_eq!(shop.webhook(&updated, WEBHOOK_SECRET, 0).await.expect(200)["status"], "applied");
    assert_eq!(shop.webhook(&updated, WEBHOOK_SECRET, 0).await.expect(200)["status"], "duplicate");
    let detail = shop.app.admin_get(&format!("/v1/admin/orders/{order_id}"), &shop.staff).await.expect(200);
    assert_eq!((detail["status"].as_str(), detail["refunded_total"].as_i64()), (Some("cancelled"), Some(total)));
    // Everything is back: nothing more can go.
    shop.app.refund(&shop.staff, &order_id, "again-3", 1).await.problem(422, "validation_failed");
    shop.finish().await;
}

/// With capture on shipment the card is only authorized at checkout (the order is
/// paid for, its stock sold); the first parcel takes the money — once, under the
/// order's capture key — and a refund before that is refused with the reason. A
/// cancel releases the hold instead of refunding, and a capture Stripe refuses
/// ships nothing.
async fn held_payments_are_captured_by_the_first_parcel_and_released_by_a_cancel(backend: Backend) {
    let owned = Shop::start(backend, |s| s.stripe_capture = StripeCapture::OnShipment).await;
    let shop = &owned;
    for reference in ["pi_h1", "pi_h2", "pi_h3"] {
        payment_intents().respond_with(intent(reference, "requires_capture")).up_to_n_times(1).mount(&shop.stripe).await;
    }
    let held = |reference: &str, action: &str, response: ResponseTemplate| {
        Mock::given(method("POST")).and(path(format!("/v1/payment_intents/{reference}/{action}"))).respond_with(response)
    };
    held("pi_h1", "capture", intent("pi_h1", "succeeded")).mount(&shop.stripe).await;
    held("pi_h2", "cancel", intent("pi_h2", "canceled")).mount(&shop.stripe).await;
    let refused = json!({"error": {"type": "invalid_request_error", "code": "charge_expired_for_capture"}});
    held("pi_h3", "capture", ResponseTemplate::new(400).set_body_json(refused)).mount(&shop.stripe).await;
    let payment_status = |order: &str| {
        let (store, order) = (&shop.app.store, order.parse().unwrap());
        async move { store.payment_of(order).await.unwrap().unwrap().status }
    };

    let placed = shop.checkout("h-1").await.expect(201);
    let first = placed["order"]["id"].as_str().unwrap().to_owned();
    assert_eq!((placed["order"]["status"].as_str(), placed["payment"]["status"].as_str()), (Some("paid"), Some("authorized")));
    assert_eq!(form(&shop.requests().await[0]).get("capture_method").map(String::as_str), Some("manual"));
    assert_eq!(shop.stock().await, (9, 0));
    shop.app.refund(&shop.staff, &first, "h-r1", 100).await.problem(409, "payment_not_captured");
    let ship = |order: &str| {
        let path = format!("/v1/admin/orders/{order}/shipments");
        async move { shop.app.admin_post(&path, &shop.staff, json!({"carrier": "DHL", "tracking_number": "1"})).await }
    };
    ship(&first).await.expect(201);
    let captures: Vec<Request> = shop.requests().await.into_iter().filter(|r| r.url.path().ends_with("/capture")).collect();
    assert_eq!(captures.len(), 1);
    assert_eq!(header_of(&captures[0], "idempotency-key"), format!("capture-{first}"));
    assert_eq!(form(&captures[0]).get("amount_to_capture"), Some(&placed["order"]["grand_total"].to_string()));
    assert_eq!(payment_status(&first).await, "succeeded");

    let second = shop.checkout("h-2").await.expect(201)["order"]["id"].as_str().unwrap().to_owned();
    let cancelled = shop.app.admin_post(&format!("/v1/admin/orders/{second}/cancel"), &shop.staff, json!({})).await.expect(200);
    assert_eq!((cancelled["status"].as_str(), cancelled["refunds"].as_array().map(Vec::len)), (Some("cancelled"), Some(0)));
    let voids: Vec<Request> = shop.requests().await.into_iter().filter(|r| r.url.path().ends_with("/cancel")).collect();
    assert_eq!(voids.len(), 1);
    assert_eq!(header_of(&voids[0], "idempotency-key"), format!("void-{second}"));
    assert_eq!(payment_status(&second).await, "voided");
    // The queued release, run anyway, asks nothing more.
    shop.app.drain_jobs().await;
    assert_eq!(shop.requests().await.iter().filter(|r| r.url.path().ends_with("/cancel")).count(), 1);

    let third_guest = shop.guest().await;
    let third_placed = shop.checkout_as(&third_guest, "h-3").await.expect(201);
    let third = third_placed["order"]["id"].as_str().unwrap().to_owned();
    ship(&third).await.problem(409, "capture_failed");
    let detail = shop.app.admin_get(&format!("/v1/admin/orders/{third}"), &shop.staff).await.expect(200);
    assert_eq!((detail["status"].as_str(), detail["shipments"].as_array().map(Vec::len)), (Some("paid"), Some(0)));
    assert_eq!(payment_status(&third).await, "authorized");
    assert_eq!(shop.stock().await, (8, 0), "the first and third orders' units are sold, the second's are back");
    // A retry of the third checkout whose first answer was never stored (its
    // request died, its lease ran out) answers with the hold as recorded.
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'running', response_status = NULL, response_body = NULL,
         locked_until = '2000-01-01T00:00:00.000000Z' WHERE idem_key = 'h-3'",
    )
    .execute(shop.app.store.pool())
    .await
    .unwrap();
    let resumed = shop.checkout_as(&third_guest, "h-3").await.expect(201);
    assert_eq!(resumed["payment"], third_placed["payment"]);
    assert_eq!(
        (resumed["payment"]["status"].as_str(), resumed["payment"]["reference"].as_str()),
        (Some("authorized"), Some("pi_h3"))
    );
    owned.finish().await;
}

/// The reservation runs out while Stripe is still answering the start, and the
/// answer is a success: the order stays expired and the money is flagged for
/// refund — never taken for a purchase — and Stripe's later success event changes
/// nothing more.
async fn a_success_answered_after_the_order_expired_is_flagged_for_refund(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    let (arrivals, release) = gate(&shop, intent("pi_late", "succeeded")).await;
    let guest = shop.guest().await;
    let expire_meanwhile = async {
        let body = tokio::task::spawn_blocking(move || arrivals.recv_timeout(Duration::from_secs(30))).await.unwrap().unwrap();
        let fields: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap();
        let later = mercato::store::format_time(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
        assert_eq!(mercato::ops::checkout::expire_due(&shop.app.store, &later).await.unwrap(), 1);
        release.send(()).unwrap();
        fields["metadata[order_id]"].clone()
    };
    let (answer, order_id) = tokio::join!(shop.checkout_as(&guest, "late-1"), expire_meanwhile);
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert_eq!(shop.order_status(&order_id).await, "expired");
    let payment = shop.app.store.payment_of(order_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(payment.status, "refund_required");
    assert_eq!(refund_jobs(&shop).await, 1);
    let object = json!({"id": "pi_late", "object": "payment_intent", "status": "succeeded", "metadata": {"order_id": order_id}});
    let webhook = event("evt_late_ok", "payment_intent.succeeded", object);
    assert_eq!(shop.webhook(&webhook, WEBHOOK_SECRET, 0).await.expect(200)["status"], "ignored");
    assert_eq!(refund_jobs(&shop).await, 1);
    assert_eq!(shop.stock().await, (10, 0));
    shop.finish().await;
}

/// While a shipment is taking a held payment, a cancel waits for it (409) rather
/// than releasing a hold that is being taken; once taken, the cancel refunds.
async fn a_cancel_during_a_capture_waits_and_then_refunds(backend: Backend) {
    let owned = Shop::start(backend, |s| s.stripe_capture = StripeCapture::OnShipment).await;
    let shop = &owned;
    payment_intents().respond_with(intent("pi_cc", "requires_capture")).mount(&shop.stripe).await;
    let (arrived, arrivals) = mpsc::channel();
    let (release, released) = mpsc::channel();
    let capture_gate =
        Gate { arrived: Mutex::new(arrived), release: Mutex::new(released), response: intent("pi_cc", "succeeded") };
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_cc/capture"))
        .respond_with(capture_gate)
        .mount(&shop.stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "re_cc", "object": "refund", "amount": 2494, "status": "succeeded"})),
        )
        .mount(&shop.stripe)
        .await;
    let order_id = shop.checkout("cc-1").await.expect(201)["order"]["id"].as_str().unwrap().to_owned();
    let ship_path = format!("/v1/admin/orders/{order_id}/shipments");
    let ship = shop.app.admin_post(&ship_path, &shop.staff, json!({"carrier": "DHL", "tracking_number": "5"}));
    let cancel_while_capturing = async {
        tokio::task::spawn_blocking(move || arrivals.recv_timeout(Duration::from_secs(30))).await.unwrap().unwrap();
        let refused = shop.app.admin_post(&format!("/v1/admin/orders/{order_id}/cancel"), &shop.staff, json!({})).await;
        release.send(()).unwrap();
        refused
    };
    let (shipped, refused) = tokio::join!(ship, cancel_while_capturing);
    refused.problem(409, "capture_in_progress");
    shipped.expect(201);
    assert_eq!(shop.app.store.payment_of(order_id.parse().unwrap()).await.unwrap().unwrap().status, "succeeded");
    // Shipped now, so not cancellable; the money can be refunded as usual.
    shop.app.refund(&shop.staff, &order_id, "cc-r", 2494).await.expect(201);
    owned.finish().await;
}

/// A refund Stripe left pending and never reported on is settled by staff from
/// Stripe's records: `failed` frees the amount for another refund.
async fn staff_settle_a_refund_stuck_pending_from_the_providers_records(backend: Backend) {
    let shop = Shop::start(backend, |_| {}).await;
    payment_intents().respond_with(intent("pi_s", "succeeded")).mount(&shop.stripe).await;
    let placed = shop.checkout("s-1").await.expect(201);
    let order_id = placed["order"]["id"].as_str().unwrap().to_owned();
    let total = placed["order"]["grand_total"].as_i64().unwrap();
    let pending = json!({"id": "re_s", "object": "refund", "amount": total, "status": "pending"});
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pending))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&shop.stripe)
        .await;
    let refund = shop.app.refund(&shop.staff, &order_id, "s-r1", total).await.expect(202);
    let resolve = format!("/v1/admin/orders/{order_id}/refunds/{}/resolve", refund["id"].as_str().unwrap());
    shop.app.refund(&shop.staff, &order_id, "s-r2", 1).await.problem(422, "validation_failed");
    let fulfilment = shop.app.token_for(mercato::domain::rbac::Role::Fulfilment).await;
    shop.app.admin_post(&resolve, &fulfilment, json!({"outcome": "failed", "reason": "x"})).await.problem(403, "forbidden");
    shop.app
        .admin_post(&resolve, &shop.staff, json!({"outcome": "failed", "reason": " "}))
        .await
        .problem(422, "validation_failed");
    let failed = shop
        .app
        .admin_post(&resolve, &shop.staff, json!({"outcome": "failed", "reason": "Stripe shows it canceled"}))
        .await
        .expect(200);
    assert_eq!(failed["status"], "failed");
    shop.app
        .admin_post(&resolve, &shop.staff, json!({"outcome": "succeeded", "reason": "again"}))
        .await
        .problem(409, "refund_not_pending");
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "re_s2", "object": "refund", "amount": total, "status": "succeeded"})),
        )
        .mount(&shop.stripe)
        .await;
    shop.app.refund(&shop.staff, &order_id, "s-r3", total).await.expect(201);
    let history = shop.app.admin_get(&format!("/v1/admin/orders/{order_id}/history"), &shop.staff).await.expect(200);
    assert_eq!(history["items"].as_array().unwrap().last().unwrap()["to"], "refunded");
    shop.finish().await;
}

/// A capture Stripe refuses because the payment is already captured (an earlier
/// call whose answer was lost) is checked against the PaymentIntent: taken, so the
/// parcel ships.
async fn a_capture_refused_as_already_done_is_checked_and_ships(backend: Backend) {
    let shop = Shop::start(backend, |s| s.stripe_capture = StripeCapture::OnShipment).await;
    payment_intents().respond_with(intent("pi_twice", "requires_capture")).mount(&shop.stripe).await;
    let unexpected = json!({"error": {"type": "invalid_request_error", "code": "payment_intent_unexpected_state"}});
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_twice/capture"))
        .respond_with(ResponseTemplate::new(400).set_body_json(unexpected))
        .mount(&shop.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_twice"))
        .respond_with(intent("pi_twice", "succeeded"))
        .mount(&shop.stripe)
        .await;
    let order_id = shop.checkout("t-1").await.expect(201)["order"]["id"].as_str().unwrap().to_owned();
    shop.app
        .admin_post(
            &format!("/v1/admin/orders/{order_id}/shipments"),
            &shop.staff,
            json!({"carrier": "DHL", "tracking_number": "9"}),
        )
        .await
        .expect(201);
    assert_eq!(shop.app.store.payment_of(order_id.parse().unwrap()).await.unwrap().unwrap().status, "succeeded");
    shop.finish().await;
}

on_both_databases_with_stripe!(
    a_stripe_payment_sends_the_documented_form_under_the_order_key,
    a_card_decline_fails_the_order_and_releases_its_stock,
    a_stripe_error_is_retried_under_the_same_key_and_pays_once,
    an_unreadable_answer_is_a_503_and_releases_the_stock,
    a_payment_that_succeeded_after_all_is_found_by_its_order_and_kept_for_refund,
    a_stripe_that_does_not_answer_in_time_is_a_503,
    the_circuit_opens_after_repeated_failures_and_checkouts_then_fail_without_calling_stripe,
    queued_payments_hold_the_stock_and_the_retry_job_pays_them,
    a_queued_payment_whose_order_expired_is_not_asked_for_again,
    a_signed_stripe_event_is_applied_once_and_later_failures_change_nothing,
    bad_and_stale_stripe_signatures_are_refused,
    a_webhook_that_overtakes_the_answer_to_the_start_is_not_taken_for_a_second_payment,
    a_start_that_timed_out_after_its_webhook_paid_the_order_answers_paid,
    a_refund_waits_for_stripe_in_the_queue_and_is_settled_by_its_webhook,
    a_worker_process_killed_mid_refund_is_taken_over_and_refunds_once,
    a_shop_with_stripe_takes_no_simulated_payments,
    a_refused_refund_of_a_cancelled_order_can_be_sent_again,
    held_payments_are_captured_by_the_first_parcel_and_released_by_a_cancel,
    a_success_answered_after_the_order_expired_is_flagged_for_refund,
    a_cancel_during_a_capture_waits_and_then_refunds,
    staff_settle_a_refund_stuck_pending_from_the_providers_records,
    a_capture_refused_as_already_done_is_checked_and_ships,
);
