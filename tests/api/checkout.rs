//! Carts, checkout, payments and stock, over HTTP, on both databases.

use futures_util::future::join_all;
use mercato::domain::signature;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, answer};

pub const WEBHOOK_SECRET: &str = "whsec_test_secret_for_the_test_provider";

/// A published product with one variant per `(sku, price, stock)`, priced in EUR.
pub async fn stocked_product(app: &TestApp, token: &str, title: &str, variants: &[(&str, i64, i64)]) -> Value {
    let sizes: Vec<String> = (0..variants.len()).map(|i| format!("S{i}")).collect();
    let body = json!({
        "title": title,
        "status": "published",
        "options": [{"name": "size", "values": sizes}],
        "variants": variants.iter().zip(&sizes).map(|((sku, price, _), s)| json!({
            "sku": sku, "options": {"size": s}, "prices": [{"currency": "EUR", "amount": price}], "weight_grams": 500
        })).collect::<Vec<_>>(),
    });
    let product = app.create_product(token, body).await;
    for (sku, _, stock) in variants {
        if *stock > 0 {
            app.admin_post(
                "/v1/admin/inventory/adjustments",
                token,
                json!({"sku": sku, "delta": stock, "reason": "initial stock", "kind": "receipt"}),
            )
            .await
            .expect(201);
        }
    }
    product
}

/// German VAT 19 % and flat 4.95 shipping, free from 50.00.
pub async fn german_rates(app: &TestApp, token: &str) {
    app.send(Method::PUT, "/v1/admin/tax-rates", Some(token), Some(json!({"country": "DE", "rate_bp": 1900, "name": "MwSt."})))
        .await
        .expect(200);
    app.admin_post(
        "/v1/admin/shipping-options",
        token,
        json!({"name": "Standard", "currency": "EUR", "countries": ["DE"], "rate": {"kind": "flat", "amount": 495}, "free_over": 5000}),
    )
    .await
    .expect(201);
}

pub struct Guest {
    pub cart: String,
    pub token: String,
}

impl TestApp {
    pub async fn guest_cart(&self) -> Guest {
        let cart = self.send(Method::POST, "/v1/carts", None, None).await.expect(201);
        Guest { cart: cart["id"].as_str().unwrap().to_owned(), token: cart["cart_token"].as_str().unwrap().to_owned() }
    }

    pub async fn cart_request(&self, method: Method, path: &str, guest: &Guest, body: Option<Value>) -> Answer {
        let mut req = self.client.request(method, self.url(path)).header("x-cart-token", &guest.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn add_to_cart(&self, guest: &Guest, sku: &str, quantity: i64) -> Value {
        self.cart_request(
            Method::POST,
            &format!("/v1/carts/{}/items", guest.cart),
            guest,
            Some(json!({"sku": sku, "quantity": quantity})),
        )
        .await
        .expect(201)
    }

    pub async fn checkout(&self, guest: &Guest, key: &str, token: &str) -> Answer {
        let res = self
            .client
            .post(self.url(&format!("/v1/carts/{}/checkout", guest.cart)))
            .header("x-cart-token", &guest.token)
            .header("idempotency-key", key)
            .json(&checkout_body(token))
            .send()
            .await
            .unwrap();
        answer(res).await
    }

    /// Stock levels once every sale is taken off on-hand stock (the sales folder
    /// does that in a running shop; `checkout_events_are_queued_and_workers_work_them_off` tests it).
    pub async fn stock(&self, staff: &str, sku: &str) -> Value {
        self.store.settle_all_sales().await.expect("settle sales");
        self.admin_get(&format!("/v1/admin/inventory/{sku}"), staff).await.expect(200)
    }

    pub async fn assert_ledger_reconciles(&self, staff: &str) {
        let r = self.admin_get("/v1/admin/inventory/reconciliation", staff).await.expect(200);
        assert_eq!(r["discrepancies"], json!([]), "{r}");
    }
}

pub fn checkout_body(payment_token: &str) -> Value {
    json!({
        "email": "ann@example.com",
        "shipping_address": {"name": "Ann Lee", "line1": "Invalidenstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        "payment": {"provider": "test", "token": payment_token}
    })
}

async fn a_guest_checks_out_and_stock_moves_from_reserved_to_sold(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Linen Shirt", &[("LS-1", 1999, 5)]).await;
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "LS-1", 2).await;

    let quote = app.cart_request(Method::GET, &format!("/v1/carts/{}?country=DE", guest.cart), &guest, None).await.expect(200);
    // 2 × 19.99 = 39.98 incl. 19 % VAT (6.38), shipping 4.95 (VAT 0.79).
    assert_eq!(
        (quote["subtotal"].as_i64(), quote["shipping"].as_i64(), quote["tax"].as_i64()),
        (Some(3998), Some(495), Some(638 + 79))
    );
    assert_eq!(quote["grand_total"], 4493);
    assert_eq!(quote["items"][0]["available"], 5);

    let placed = app.checkout(&guest, "key-1", "tok_ok").await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let order = &placed.body["order"];
    assert_eq!(order["status"], "paid");
    assert_eq!(order["grand_total"], 4493);
    assert_eq!(order["lines"][0]["unit_price"], 1999);
    assert_eq!(placed.body["payment"]["status"], "succeeded");
    let stock = app.stock(&staff, "LS-1").await;
    assert_eq!((stock["on_hand"].as_i64(), stock["reserved"].as_i64()), (Some(3), Some(0)));
    app.assert_ledger_reconciles(&staff).await;

    // The same key and body replay the stored answer, byte for byte.
    let again = app.checkout(&guest, "key-1", "tok_ok").await;
    assert_eq!((again.status.as_u16(), &again.body), (201, &placed.body));
    // The same key with another body is refused; no key at all too.
    app.checkout(&guest, "key-1", "tok_decline").await.problem(422, "idempotency_key_reused");
    let res = app
        .client
        .post(app.url(&format!("/v1/carts/{}/checkout", guest.cart)))
        .header("x-cart-token", &guest.token)
        .json(&checkout_body("tok_ok"))
        .send()
        .await
        .unwrap();
    answer(res).await.problem(400, "idempotency_key_required");
    // A new key on a checked-out cart is a conflict, and so is changing it.
    app.checkout(&guest, "key-2", "tok_ok").await.problem(409, "cart_closed");
    app.cart_request(
        Method::POST,
        &format!("/v1/carts/{}/items", guest.cart),
        &guest,
        Some(json!({"sku": "LS-1", "quantity": 1})),
    )
    .await
    .problem(409, "cart_closed");

    // The guest reads the order with its token; nobody else can.
    let id = order["id"].as_str().unwrap();
    let res = app
        .client
        .get(app.url(&format!("/v1/orders/{id}")))
        .header("x-order-token", placed.body["order_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.get(&format!("/v1/orders/{id}")).await.problem(404, "not_found");
    let res = app.client.get(app.url(&format!("/v1/orders/{id}"))).header("x-order-token", "guess").send().await.unwrap();
    assert_eq!(res.status(), 404);
    // Staff see the history: placed, then paid.
    let history = app.admin_get(&format!("/v1/admin/orders/{id}/history"), &staff).await.expect(200);
    let steps: Vec<_> = history["items"].as_array().unwrap().iter().map(|e| e["to"].as_str().unwrap()).collect();
    assert_eq!(steps, ["pending_payment", "paid"]);
}

async fn a_declined_payment_releases_the_stock_and_reopens_the_cart(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Mug", &[("MUG-1", 900, 3)]).await;
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "MUG-1", 3).await;
    let declined = app.checkout(&guest, "d-1", "tok_decline").await.problem(402, "payment_declined");
    assert!(declined["detail"].as_str().unwrap().contains("M-"), "{declined}");
    let stock = app.stock(&staff, "MUG-1").await;
    assert_eq!((stock["on_hand"].as_i64(), stock["reserved"].as_i64()), (Some(3), Some(0)));
    // The replay says the same; a new attempt with another key and card succeeds.
    app.checkout(&guest, "d-1", "tok_decline").await.problem(402, "payment_declined");
    let ok = app.checkout(&guest, "d-2", "tok_ok").await.expect(201);
    assert_eq!(ok["order"]["status"], "paid");
    assert_eq!(app.stock(&staff, "MUG-1").await["on_hand"], 0);
    app.assert_ledger_reconciles(&staff).await;
}

async fn out_of_stock_names_each_short_line_and_holds_nothing(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Lamp", &[("LAMP-A", 3000, 1), ("LAMP-B", 3500, 5)]).await;
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "LAMP-A", 2).await;
    app.add_to_cart(&guest, "LAMP-B", 1).await;
    let cart = app.cart_request(Method::GET, &format!("/v1/carts/{}", guest.cart), &guest, None).await.expect(200);
    assert_eq!(cart["items"][0]["problem"], "insufficient_stock");
    let body = app.checkout(&guest, "o-1", "tok_ok").await.problem(409, "out_of_stock");
    assert_eq!(body["errors"].as_array().unwrap().len(), 1);
    assert_eq!(body["errors"][0]["message"], "LAMP-A: 2 requested, 1 available");
    for sku in ["LAMP-A", "LAMP-B"] {
        assert_eq!(app.stock(&staff, sku).await["reserved"], 0, "{sku}");
    }
    // The cart is still open: fixing the quantity makes it go through.
    let item = cart["items"][0]["id"].as_str().unwrap();
    app.cart_request(Method::PATCH, &format!("/v1/carts/{}/items/{item}", guest.cart), &guest, Some(json!({"quantity": 1})))
        .await
        .expect(200);
    app.checkout(&guest, "o-2", "tok_ok").await.expect(201);
}

async fn an_async_payment_is_confirmed_once_by_a_signed_webhook(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Vase", &[("VASE-1", 2500, 2)]).await;
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "VASE-1", 1).await;
    let placed = app.checkout(&guest, "a-1", "tok_async").await.expect(201);
    assert_eq!(placed["payment"]["status"], "pending");
    assert_eq!(placed["order"]["status"], "pending_payment");
    let id = placed["order"]["id"].as_str().unwrap().to_owned();
    // The provider confirms by webhook shortly after: wait for that to land.
    let mut status = String::new();
    for _ in 0..200 {
        status =
            app.admin_get(&format!("/v1/admin/orders/{id}"), &staff).await.expect(200)["status"].as_str().unwrap().to_owned();
        if status == "paid" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "paid");
    assert_eq!(app.stock(&staff, "VASE-1").await["on_hand"], 1);

    // A redelivery of an event is a no-op; so is a different event for a paid order.
    let reference = placed["payment"]["reference"].as_str().unwrap();
    let event = |id: &str, kind: &str| {
        json!({"id": id, "type": kind, "created": 0, "data": {"reference": reference, "amount": 2995, "currency": "EUR"}})
            .to_string()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let post = |body: String, sig: String| {
        app.client
            .post(app.url("/v1/payments/webhooks/test"))
            .header("content-type", "application/json")
            .header("mercato-signature", sig)
            .body(body)
            .send()
    };
    let e1 = event("evt_manual_1", "payment.succeeded");
    let first =
        answer(post(e1.clone(), signature::sign(WEBHOOK_SECRET.as_bytes(), now, e1.as_bytes())).await.unwrap()).await.expect(200);
    assert_eq!(first["status"], "ignored");
    let failed = event("evt_manual_2", "payment.failed");
    let r = answer(post(failed.clone(), signature::sign(WEBHOOK_SECRET.as_bytes(), now, failed.as_bytes())).await.unwrap())
        .await
        .expect(200);
    assert_eq!(r["status"], "ignored");
    assert_eq!(app.stock(&staff, "VASE-1").await["on_hand"], 1, "nothing changed twice");
    // Bad signatures, stale timestamps, unknown types, unknown payments.
    answer(post(e1.clone(), signature::sign(b"wrong secret", now, e1.as_bytes())).await.unwrap())
        .await
        .problem(400, "invalid_signature");
    answer(post(e1.clone(), signature::sign(WEBHOOK_SECRET.as_bytes(), now - 3600, e1.as_bytes())).await.unwrap())
        .await
        .problem(400, "stale_signature");
    answer(post(e1.clone(), String::new()).await.unwrap()).await.problem(400, "invalid_signature");
    let odd = event("evt_manual_3", "payment.teleported");
    answer(post(odd.clone(), signature::sign(WEBHOOK_SECRET.as_bytes(), now, odd.as_bytes())).await.unwrap())
        .await
        .problem(400, "unknown_event_type");
    let unknown = json!({"id": "evt_x", "type": "payment.succeeded", "created": 0, "data": {"reference": "pay_nope", "amount": 1, "currency": "EUR"}}).to_string();
    answer(post(unknown.clone(), signature::sign(WEBHOOK_SECRET.as_bytes(), now, unknown.as_bytes())).await.unwrap())
        .await
        .problem(404, "not_found");
    app.assert_ledger_reconciles(&staff).await;
}

/// Sends a `test` provider event for `reference`, signed with the shop's secret.
pub async fn deliver(app: &TestApp, event_id: &str, kind: &str, reference: &str) -> Answer {
    let body =
        json!({"id": event_id, "type": kind, "created": 0, "data": {"reference": reference, "amount": 1, "currency": "EUR"}})
            .to_string();
    let sig = signature::sign(WEBHOOK_SECRET.as_bytes(), time::OffsetDateTime::now_utc().unix_timestamp(), body.as_bytes());
    let res = app
        .client
        .post(app.url("/v1/payments/webhooks/test"))
        .header("content-type", "application/json")
        .header("mercato-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    answer(res).await
}

async fn a_webhook_is_applied_exactly_once(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Bowl", &[("BOWL-1", 1200, 3)]).await;
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "BOWL-1", 2).await;
    let placed = app.checkout(&guest, "w-1", "tok_pending").await.expect(201);
    let reference = placed["payment"]["reference"].as_str().unwrap().to_owned();
    let stock = app.stock(&staff, "BOWL-1").await;
    assert_eq!((stock["on_hand"].as_i64(), stock["reserved"].as_i64()), (Some(3), Some(2)));
    for _ in 0..3 {
        let a = deliver(&app, "evt_once", "payment.succeeded", &reference).await.expect(200);
        assert!(a["status"] == "applied" || a["status"] == "duplicate", "{a}");
    }
    assert_eq!(deliver(&app, "evt_once", "payment.succeeded", &reference).await.expect(200)["status"], "duplicate");
    // A second, different success for the paid order changes nothing either.
    assert_eq!(deliver(&app, "evt_again", "payment.succeeded", &reference).await.expect(200)["status"], "ignored");
    let stock = app.stock(&staff, "BOWL-1").await;
    assert_eq!((stock["on_hand"].as_i64(), stock["reserved"].as_i64()), (Some(1), Some(0)));
    let id = placed["order"]["id"].as_str().unwrap();
    let history = app.admin_get(&format!("/v1/admin/orders/{id}/history"), &staff).await.expect(200);
    assert_eq!(history["items"].as_array().unwrap().len(), 2, "{history}");
    // The paid step names the provider and its event.
    assert_eq!(history["items"][1]["actor_type"], "provider");
    assert_eq!(history["items"][1]["reason"], "payment.succeeded evt_once");
    app.assert_ledger_reconciles(&staff).await;
}

async fn unpaid_reservations_expire_and_a_late_payment_is_kept_for_refund(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Duvet", &[("DUV-1", 5900, 2)]).await;
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "DUV-1", 2).await;
    // An unknown payment token is a decline, not a crash; the cart reopens.
    app.checkout(&guest, "e-1", "tok_unknown").await.problem(402, "payment_declined");
    let pending = app.checkout(&guest, "e-2", "tok_pending").await.expect(201);
    let id: uuid::Uuid = pending["order"]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.stock(&staff, "DUV-1").await["reserved"], 2);
    // Nothing is due yet; an hour later it is.
    assert_eq!(mercato::ops::checkout::expire_due(&app.store, &mercato::store::now()).await.unwrap(), 0);
    let later = mercato::store::format_time(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
    assert_eq!(mercato::ops::checkout::expire_due(&app.store, &later).await.unwrap(), 1);
    assert_eq!(app.admin_get(&format!("/v1/admin/orders/{id}"), &staff).await.expect(200)["status"], "expired");
    let stock = app.stock(&staff, "DUV-1").await;
    assert_eq!((stock["on_hand"].as_i64(), stock["reserved"].as_i64()), (Some(2), Some(0)));
    // The cart is open again for a later try.
    let cart = app.cart_request(Method::GET, &format!("/v1/carts/{}", guest.cart), &guest, None).await.expect(200);
    assert_eq!(cart["status"], "open");
    // The money arrives after all: the order stays expired, the payment is marked
    // for a refund and announced on the outbox, once.
    let reference = pending["payment"]["reference"].as_str().unwrap();
    assert_eq!(deliver(&app, "evt_late", "payment.succeeded", reference).await.expect(200)["status"], "refund_required");
    assert_eq!(deliver(&app, "evt_late", "payment.succeeded", reference).await.expect(200)["status"], "duplicate");
    let payment = app.store.payment_of(id).await.unwrap().unwrap();
    assert_eq!(payment.status, "refund_required");
    let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE kind = 'payment.refund_required'")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&row, "n"), 1);
    assert_eq!(app.stock(&staff, "DUV-1").await["on_hand"], 2);
    app.assert_ledger_reconciles(&staff).await;
}

async fn customers_merge_their_guest_cart_and_see_only_their_orders(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Scarf", &[("SCARF-1", 2000, 10)]).await;
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "SCARF-1", 2).await;
    let reg = app
        .send(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "Bo@Example.com", "password": crate::helpers::PASSWORD, "name": "Bo"})),
        )
        .await
        .expect(201);
    assert_eq!(reg["customer"]["email"], "bo@example.com");
    app.send(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(json!({"email": "bo@example.com", "password": crate::helpers::PASSWORD})),
    )
    .await
    .problem(409, "duplicate_email");
    let res = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-cart-token", &guest.token)
        .json(&json!({"email": "bo@example.com", "password": crate::helpers::PASSWORD, "guest_cart_id": guest.cart}))
        .send()
        .await
        .unwrap();
    let session = answer(res).await.expect(200);
    let token = session["tokens"]["access_token"].as_str().unwrap().to_owned();
    let cart_id = session["cart_id"].as_str().unwrap().to_owned();
    let cart = app.send(Method::GET, &format!("/v1/carts/{cart_id}"), Some(&token), None).await.expect(200);
    assert_eq!(cart["items"][0]["quantity"], 2);
    // A customer token never opens the admin API, and a staff token is no customer.
    app.admin_get("/v1/admin/products", &token).await.problem(401, "invalid_token");
    app.send(Method::GET, "/v1/me", Some(&staff), None).await.problem(401, "invalid_token");

    let res = app
        .client
        .post(app.url(&format!("/v1/carts/{cart_id}/checkout")))
        .bearer_auth(&token)
        .header("idempotency-key", "c-1")
        .json(&checkout_body("tok_ok"))
        .send()
        .await
        .unwrap();
    let placed = answer(res).await.expect(201);
    let order_id = placed["order"]["id"].as_str().unwrap();
    let mine = app.send(Method::GET, "/v1/me/orders", Some(&token), None).await.expect(200);
    assert_eq!(mine["items"][0]["id"], order_id);
    app.send(Method::GET, &format!("/v1/orders/{order_id}"), Some(&token), None).await.expect(200);

    // Someone else: no order, no cart, no orders listed.
    let other = app
        .send(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "eve@example.com", "password": crate::helpers::PASSWORD})),
        )
        .await
        .expect(201);
    let eve = other["tokens"]["access_token"].as_str().unwrap();
    app.send(Method::GET, &format!("/v1/orders/{order_id}"), Some(eve), None).await.problem(404, "not_found");
    app.send(Method::GET, &format!("/v1/carts/{cart_id}"), Some(eve), None).await.problem(404, "not_found");
    assert_eq!(app.send(Method::GET, "/v1/me/orders", Some(eve), None).await.expect(200)["items"], json!([]));
    // Another guest's token does not open a guest cart either.
    let stranger = app.guest_cart().await;
    let g2 = app.guest_cart().await;
    let res =
        app.client.get(app.url(&format!("/v1/carts/{}", g2.cart))).header("x-cart-token", &stranger.token).send().await.unwrap();
    assert_eq!(res.status(), 404);

    // Addresses belong to their customer.
    let addr = app
        .send(Method::POST, "/v1/me/addresses", Some(&token), Some(checkout_body("x")["shipping_address"].clone()))
        .await
        .expect(201);
    let addr_id = addr["id"].as_str().unwrap();
    app.send(Method::DELETE, &format!("/v1/me/addresses/{addr_id}"), Some(eve), None).await.problem(404, "not_found");
    app.send(Method::DELETE, &format!("/v1/me/addresses/{addr_id}"), Some(&token), None).await.expect(204);
    let bad = app
        .send(
            Method::POST,
            "/v1/me/addresses",
            Some(&token),
            Some(json!({"name": "", "line1": "x", "city": "y", "postal_code": "1", "country": "Germany"})),
        )
        .await;
    assert_eq!(Answer::fields(&bad.problem(422, "validation_failed")), ["name", "country"]);
}

async fn bad_cart_input_is_refused_without_changing_anything(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Pan", &[("PAN-1", 4000, 5)]).await;
    let mut draft = crate::helpers::product_body("Secret", "SECRET", &[100], None, json!({}));
    draft["status"] = json!("draft");
    app.create_product(&staff, draft).await;
    let guest = app.guest_cart().await;
    let items = format!("/v1/carts/{}/items", guest.cart);
    for (body, field, code) in [
        (json!({"sku": "PAN-1", "quantity": 0}), "quantity", "out_of_range"),
        (json!({"sku": "PAN-1", "quantity": -2}), "quantity", "out_of_range"),
        (json!({"sku": "PAN-1", "quantity": 101}), "quantity", "out_of_range"),
        (json!({"sku": "NOPE", "quantity": 1}), "sku", "unknown_variant"),
        (json!({"sku": "SECRET-S0", "quantity": 1}), "sku", "unavailable"),
        (json!({"quantity": 1}), "sku", "required"),
    ] {
        let b = app.cart_request(Method::POST, &items, &guest, Some(body.clone())).await.problem(422, "validation_failed");
        assert_eq!((b["errors"][0]["field"].as_str(), b["errors"][0]["code"].as_str()), (Some(field), Some(code)), "{body}");
    }
    // Without the cart token the cart does not exist.
    app.send(Method::POST, &items, None, Some(json!({"sku": "PAN-1", "quantity": 1}))).await.problem(404, "not_found");
    // Empty cart, bad address, malformed key.
    app.checkout(&guest, "k-1", "tok_ok").await.problem(409, "cart_empty");
    app.add_to_cart(&guest, "PAN-1", 1).await;
    let res = app
        .client
        .post(app.url(&format!("/v1/carts/{}/checkout", guest.cart)))
        .header("x-cart-token", &guest.token)
        .header("idempotency-key", "k-2")
        .json(&json!({"email": "nope", "shipping_address": {"name": "A", "line1": "B", "city": "C", "postal_code": "1", "country": "XX1"}, "payment": {"provider": "cash", "token": "t"}}))
        .send()
        .await
        .unwrap();
    let b = answer(res).await.problem(422, "validation_failed");
    assert_eq!(Answer::fields(&b), ["email", "shipping_address.country", "payment.provider"]);
    let res = app
        .client
        .post(app.url(&format!("/v1/carts/{}/checkout", guest.cart)))
        .header("x-cart-token", &guest.token)
        .header("idempotency-key", "has spaces")
        .json(&checkout_body("tok_ok"))
        .send()
        .await
        .unwrap();
    answer(res).await.problem(400, "invalid_idempotency_key");
    // No shipping option ships to the US.
    let mut us = checkout_body("tok_ok");
    us["shipping_address"]["country"] = json!("US");
    let res = app
        .client
        .post(app.url(&format!("/v1/carts/{}/checkout", guest.cart)))
        .header("x-cart-token", &guest.token)
        .header("idempotency-key", "k-3")
        .json(&us)
        .send()
        .await
        .unwrap();
    answer(res).await.problem(422, "validation_failed");
    assert_eq!(app.stock(&staff, "PAN-1").await["reserved"], 0);

    // An expired cart can be read but not changed or checked out.
    sqlx::query("UPDATE carts SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE id = $1")
        .bind(&guest.cart)
        .execute(app.store.pool())
        .await
        .unwrap();
    app.cart_request(Method::POST, &items, &guest, Some(json!({"sku": "PAN-1", "quantity": 1})))
        .await
        .problem(410, "cart_expired");
    app.checkout(&guest, "k-4", "tok_ok").await.problem(410, "cart_expired");
    app.cart_request(Method::GET, &format!("/v1/carts/{}", guest.cart), &guest, None).await.expect(200);
}

/// A line is added by variant id or by SKU; given both, the id decides.
async fn a_line_is_added_by_variant_id_or_sku(app: TestApp) {
    let staff = app.owner_token().await;
    let product = stocked_product(&app, &staff, "Pan", &[("PAN-1", 4000, 5), ("PAN-2", 5000, 5)]).await;
    let (first, second) = (product["variants"][0]["id"].as_str().unwrap(), product["variants"][1]["id"].as_str().unwrap());
    let guest = app.guest_cart().await;
    let items = format!("/v1/carts/{}/items", guest.cart);
    for body in [
        json!({"variant_id": first, "quantity": 1}),
        json!({"sku": "PAN-2", "quantity": 1}),
        json!({"variant_id": second, "sku": "PAN-1", "quantity": 2}),
    ] {
        app.cart_request(Method::POST, &items, &guest, Some(body)).await.expect(201);
    }
    for unknown in [
        json!({"variant_id": uuid::Uuid::nil(), "quantity": 1}),
        json!({"variant_id": uuid::Uuid::nil(), "sku": "PAN-1", "quantity": 1}),
    ] {
        let b = app.cart_request(Method::POST, &items, &guest, Some(unknown.clone())).await.problem(422, "validation_failed");
        let error = (b["errors"][0]["field"].as_str(), b["errors"][0]["code"].as_str());
        assert_eq!(error, (Some("variant_id"), Some("unknown_variant")), "{unknown}");
    }
    let cart = app.cart_request(Method::GET, &format!("/v1/carts/{}", guest.cart), &guest, None).await.expect(200);
    let lines: Vec<(&str, i64)> =
        cart["items"].as_array().unwrap().iter().map(|l| (l["sku"].as_str().unwrap(), l["quantity"].as_i64().unwrap())).collect();
    assert_eq!(lines, [("PAN-1", 1), ("PAN-2", 3)], "{cart}");
}

async fn stock_adjustments_are_ledgered_guarded_and_reconciled(app: TestApp) {
    let staff = app.owner_token().await;
    stocked_product(&app, &staff, "Board", &[("BRD-1", 1500, 4)]).await;
    let adjust = |delta: i64, location: Option<&str>| {
        app.admin_post(
            "/v1/admin/inventory/adjustments",
            &staff,
            json!({"sku": "BRD-1", "delta": delta, "reason": "count", "location": location}),
        )
    };
    adjust(-5, None).await.problem(409, "insufficient_stock");
    adjust(0, None).await.problem(422, "validation_failed");
    adjust(1, Some("nowhere")).await.problem(422, "validation_failed");
    app.admin_post("/v1/admin/inventory/adjustments", &staff, json!({"sku": "NOPE", "delta": 1, "reason": "x"}))
        .await
        .problem(422, "validation_failed");
    app.admin_post("/v1/admin/inventory/locations", &staff, json!({"code": "berlin", "name": "Berlin", "priority": 5}))
        .await
        .expect(201);
    let level = adjust(3, Some("berlin")).await.expect(201);
    assert_eq!(level["on_hand"], 7);
    assert_eq!(level["locations"].as_array().unwrap().len(), 2);
    app.admin_patch("/v1/admin/inventory/BRD-1", &staff, json!({"low_stock_threshold": 8})).await.expect(200);
    let low = app.admin_get("/v1/admin/inventory/low-stock", &staff).await.expect(200);
    assert_eq!(low["items"][0]["sku"], "BRD-1");
    app.assert_ledger_reconciles(&staff).await;
    // A change behind the ledger's back is found.
    sqlx::query("UPDATE stock_levels SET on_hand = on_hand + 1").execute(app.store.pool()).await.unwrap();
    let r = app.admin_get("/v1/admin/inventory/reconciliation", &staff).await.expect(200);
    assert_eq!(r["discrepancies"].as_array().unwrap().len(), 2);
    // The database itself refuses reserved > on_hand.
    let err = sqlx::query("UPDATE stock_levels SET reserved = on_hand + 1").execute(app.store.pool()).await;
    assert!(err.is_err(), "the check constraint must hold");
    // Without its main location, a shop must name one: a clear 422, not a retry loop.
    sqlx::query("DELETE FROM stock_levels").execute(app.store.pool()).await.unwrap();
    sqlx::query("DELETE FROM stock_movements").execute(app.store.pool()).await.unwrap();
    sqlx::query("DELETE FROM stock_locations WHERE code <> 'berlin'").execute(app.store.pool()).await.unwrap();
    let refused = adjust(1, None).await.problem(422, "validation_failed");
    assert_eq!(refused["errors"][0]["field"], "location");
    assert_eq!(adjust(1, Some("berlin")).await.expect(201)["on_hand"], 1);
}

async fn staff_list_orders_by_status_email_time_and_total(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Cup", &[("CUP-1", 1000, 50)]).await;
    let mut placed = Vec::new();
    for (i, token) in ["tok_ok", "tok_ok", "tok_pending", "tok_ok"].iter().enumerate() {
        let guest = app.guest_cart().await;
        app.add_to_cart(&guest, "CUP-1", i as i64 + 1).await;
        placed.push(app.checkout(&guest, &format!("l-{i}"), token).await.expect(201));
    }
    let support = app.token_for(mercato::domain::rbac::Role::Support).await;
    let all = app.admin_get("/v1/admin/orders", &support).await.expect(200);
    let numbers: Vec<_> = all["items"].as_array().unwrap().iter().map(|o| o["number"].clone()).collect();
    let expected: Vec<_> = placed.iter().rev().map(|p| p["order"]["number"].clone()).collect();
    assert_eq!(numbers, expected, "newest first");
    let paid = app.admin_get("/v1/admin/orders?status=paid", &staff).await.expect(200);
    assert_eq!(paid["items"].as_array().unwrap().len(), 3);
    let pending = app.admin_get("/v1/admin/orders?status=pending_payment&email=ANN@example.com", &staff).await.expect(200);
    assert_eq!(pending["items"][0]["id"], placed[2]["order"]["id"]);
    // Totals: 1, 2, 3 and 4 cups at 10.00, shipping 4.95 below 50.00.
    let mid = app.admin_get("/v1/admin/orders?total_min=2500&total_max=3500", &staff).await.expect(200);
    assert_eq!(mid["items"].as_array().unwrap().len(), 1);
    assert_eq!(mid["items"][0]["grand_total"], 3495);
    let none = app.admin_get("/v1/admin/orders?created_to=2000-01-01T00:00:00Z", &staff).await.expect(200);
    assert_eq!(none["items"], json!([]));
    let since = app.admin_get("/v1/admin/orders?created_from=2000-01-01T00:00:00%2B02:00", &staff).await.expect(200);
    assert_eq!(since["items"].as_array().unwrap().len(), 4);
    // Paging, then bad parameters.
    let first = app.admin_get("/v1/admin/orders?limit=3", &staff).await.expect(200);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = app.admin_get(&format!("/v1/admin/orders?limit=3&cursor={cursor}"), &staff).await.expect(200);
    assert_eq!(rest["items"][0]["id"], placed[0]["order"]["id"]);
    assert_eq!(rest["next_cursor"], Value::Null);
    app.admin_get("/v1/admin/orders?status=lost", &staff).await.problem(400, "invalid_status");
    app.admin_get("/v1/admin/orders?created_from=yesterday", &staff).await.problem(400, "invalid_time");
    app.admin_get("/v1/admin/orders?sort=total", &staff).await.problem(400, "invalid_query");
    let catalog = app.token_for(mercato::domain::rbac::Role::CatalogManager).await;
    app.admin_get("/v1/admin/orders", &catalog).await.problem(403, "forbidden");
}

async fn a_checkout_that_died_after_placing_its_order_is_resumed_by_its_key(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Kettle", &[("KET-1", 3000, 5)]).await;
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "KET-1", 1).await;
    let first = app.checkout(&guest, "r-1", "tok_ok").await.expect(201);
    // Make the record look like the request died after the order transaction:
    // still running, lease run out, no answer stored.
    sqlx::query("UPDATE idempotency_keys SET state = 'running', response_status = NULL, response_body = NULL, locked_until = '2000-01-01T00:00:00.000000Z'")
        .execute(app.store.pool())
        .await
        .unwrap();
    let resumed = app.checkout(&guest, "r-1", "tok_ok").await.expect(201);
    // The same order, paid once; no second order, no second sale.
    assert_eq!(resumed["order"]["id"], first["order"]["id"]);
    assert_eq!(resumed["order"]["status"], "paid");
    // The payment as the first attempt recorded it, reference included.
    assert_eq!(resumed["payment"], first["payment"]);
    assert!(first["payment"]["reference"].as_str().is_some_and(|r| r.starts_with("pay_")));
    let row = sqlx::query("SELECT COUNT(*) AS n FROM orders").fetch_one(app.store.pool()).await.unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&row, "n"), 1);
    assert_eq!(app.stock(&staff, "KET-1").await["on_hand"], 4);
    app.assert_ledger_reconciles(&staff).await;
    // The first attempt, had it lived on past its lease, cannot overwrite the
    // answer stored since: the key keeps the resumed request's answer.
    app.store.finish_idempotency_key(&format!("checkout:{}", guest.cart), "r-1", 500, "late").await.unwrap();
    assert_eq!(app.checkout(&guest, "r-1", "tok_ok").await.expect(201), resumed);
}

async fn the_checkout_answer_is_the_order_as_stored(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Zinc Mug", &[("ZM-1", 1200, 5)]).await;
    stocked_product(&app, &staff, "Apron", &[("AP-1", 2500, 5)]).await;
    for promotion in [
        json!({"name": "Free shipping", "automatic": true, "action": {"type": "free_shipping"}}),
        json!({"name": "Ten off", "automatic": true, "priority": 5, "action": {"type": "order_percent", "percent_bp": 1000}}),
    ] {
        app.admin_post("/v1/admin/promotions", &staff, promotion).await.expect(201);
    }
    let guest = app.guest_cart().await;
    // Added in the opposite order of their SKUs: an order lists its lines by SKU.
    app.add_to_cart(&guest, "ZM-1", 2).await;
    app.add_to_cart(&guest, "AP-1", 1).await;
    let placed = app.checkout(&guest, "key-1", "tok_ok").await.expect(201);
    let order = &placed["order"];
    assert_eq!(order["discounts"].as_array().map(Vec::len), Some(2), "{order}");
    assert_eq!(order["lines"][0]["sku"], "AP-1");

    // The answer is built from what was placed, not read back: it must be exactly
    // what the order reads as afterwards.
    let res = app
        .client
        .get(app.url(&format!("/v1/orders/{}", order["id"].as_str().unwrap())))
        .header("x-order-token", placed["order_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let stored = answer(res).await.expect(200);
    assert_eq!(&stored, order);
    // The payment was recorded with the order, and settled.
    let row = sqlx::query("SELECT status, amount, provider FROM payments WHERE order_id = $1")
        .bind(order["id"].as_str().unwrap())
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    let payment: (String, i64, String) =
        (sqlx::Row::get(&row, "status"), sqlx::Row::get(&row, "amount"), sqlx::Row::get(&row, "provider"));
    assert_eq!(payment, ("succeeded".to_owned(), order["grand_total"].as_i64().unwrap(), "test".to_owned()));
}

/// Reads that concurrent requests share (carts with their lines and keys, lines
/// priced per currency, codes, tax rates by region, shipping options) give each
/// request what it reads alone.
async fn concurrent_requests_share_reads_and_each_gets_its_own_answer(app: TestApp) {
    use mercato::store::carts::CartRecord;
    let token = app.owner_token().await;
    let body = json!({
        "title": "Duo", "status": "published",
        "options": [{"name": "size", "values": ["A", "B"]}],
        "variants": [
            {"sku": "DUO-A", "options": {"size": "A"}, "prices": [{"currency": "EUR", "amount": 1000}, {"currency": "USD", "amount": 1200}]},
            {"sku": "DUO-B", "options": {"size": "B"}, "prices": [{"currency": "EUR", "amount": 500}]},
        ],
    });
    app.create_product(&token, body).await;
    for (country, region, bp) in [("DE", "", 1900), ("DE", "BY", 700), ("FR", "", 2000)] {
        let rate = json!({"country": country, "region": region, "rate_bp": bp, "name": "VAT"});
        app.send(Method::PUT, "/v1/admin/tax-rates", Some(&token), Some(rate)).await.expect(200);
    }
    german_rates(&app, &token).await;
    let promotion = app
        .admin_post(
            "/v1/admin/promotions",
            &token,
            json!({"name": "Ten", "action": {"type": "order_percent", "percent_bp": 1000}}),
        )
        .await
        .expect(201);
    let codes = format!("/v1/admin/promotions/{}/codes", promotion["id"].as_str().unwrap());
    app.admin_post(&codes, &token, json!({"code": "TEN"})).await.expect(201);
    let mut carts: Vec<CartRecord> = Vec::new();
    for i in 0..12 {
        let currency = if i % 2 == 0 { "EUR" } else { "USD" };
        let cart = app.send(Method::POST, "/v1/carts", None, Some(json!({"currency": currency}))).await.expect(201);
        let guest =
            Guest { cart: cart["id"].as_str().unwrap().to_owned(), token: cart["cart_token"].as_str().unwrap().to_owned() };
        app.add_to_cart(&guest, "DUO-A", 1 + i).await;
        if i % 3 != 0 {
            app.add_to_cart(&guest, "DUO-B", 1).await;
        }
        if i % 4 == 0 {
            let path = format!("/v1/carts/{}/promotions", guest.cart);
            app.cart_request(Method::POST, &path, &guest, Some(json!({"code": "TEN"}))).await.expect(200);
        }
        carts.push(app.store.cart(guest.cart.parse().unwrap()).await.unwrap().unwrap());
    }
    let regions = [("DE", ""), ("DE", "BY"), ("DE", "HH"), ("FR", "IDF"), ("US", "")];
    // Cart 0's key was used; cart 1 has another key, which is not the one asked about.
    app.store.claim_idempotency_key(&format!("checkout:{}", carts[0].id), "key-1", "h").await.unwrap();
    app.store.claim_idempotency_key(&format!("checkout:{}", carts[1].id), "key-2", "h").await.unwrap();

    // What each request reads, as a comparable string.
    async fn read_all(store: &mercato::store::Store, carts: &[CartRecord], regions: &[(&str, &str)]) -> Vec<String> {
        let mut reads: Vec<std::pin::Pin<Box<dyn Future<Output = String> + Send + '_>>> = Vec::new();
        for cart in carts {
            reads.push(Box::pin(async move {
                let lines = store.cart_lines(cart).await.unwrap();
                format!("{:?}", lines.iter().map(|l| (l.sku.clone(), l.quantity, l.unit_price)).collect::<Vec<_>>())
            }));
            reads.push(Box::pin(async move {
                let scope = format!("checkout:{}", cart.id);
                let probe = store.checkout_probe(cart.id, &scope, "key-1").await.unwrap();
                let lines: Vec<_> = probe.lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
                format!("{:?} {:?} {}", probe.cart.as_ref().map(|c| c.currency.clone()), lines, probe.key_used)
            }));
            reads.push(Box::pin(async move {
                let offers = store.promotion_offers(cart.id, None, &mercato::store::now()).await.unwrap();
                format!("{:?}", offers.iter().map(|o| o.promotion.id).collect::<Vec<_>>())
            }));
        }
        for (country, region) in regions {
            reads.push(Box::pin(async move { store.tax_rate_for(country, region).await.unwrap().to_string() }));
        }
        reads.push(Box::pin(async move { format!("{:?}", store.shipping_options().await.unwrap().len()) }));
        join_all(reads).await
    }
    let mut alone = Vec::new();
    for i in 0..carts.len() {
        alone.extend(read_all(&app.store, &carts[i..=i], &[]).await.into_iter().take(3));
    }
    for region in &regions {
        alone.extend(read_all(&app.store, &[], std::slice::from_ref(region)).await.into_iter().take(1));
    }
    alone.extend(read_all(&app.store, &[], &[]).await);
    let together = read_all(&app.store, &carts, &regions).await;
    assert_eq!(together, alone);

    // And what they read is right: each currency's price, none where unpriced,
    // the region's own rate or the country's, the codes of each cart.
    assert_eq!(together[0], r#"[("DUO-A", 1, Some(1000))]"#);
    assert_eq!(together[1], r#"Some("EUR") [("DUO-A", 1)] true"#);
    assert_eq!(together[3], r#"[("DUO-A", 2, Some(1200)), ("DUO-B", 1, None)]"#);
    assert_eq!(together[4], r#"Some("USD") [("DUO-A", 2), ("DUO-B", 1)] false"#);
    assert_ne!(together[2], "[]", "cart 0 has a code");
    assert_eq!(together[5], "[]", "cart 1 has none");
    assert_eq!(&together[36..41], ["1900", "700", "1900", "2000", "0"]);
    assert_eq!(together[41], "1");
}

/// Marking orders paid in one batch writes, order by order, what the single
/// path (`settle_payment`) writes; orders that moved on and repeats are left alone.
async fn paying_orders_together_writes_what_paying_each_alone_does(app: TestApp) {
    use mercato::domain::order_status::{OrderEvent, OrderStatus};
    use mercato::store::audit::Actor;
    use mercato::store::idempotency::KeyAnswer;
    use mercato::store::paying::Paying;
    use sqlx::Row;

    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Batch Tee", &[("PB-1", 1000, 20)]).await;
    let mut orders = Vec::new();
    for i in 0..6 {
        let guest = app.guest_cart().await;
        app.add_to_cart(&guest, "PB-1", 1 + i % 2).await;
        let placed = app.checkout(&guest, &format!("pb-{i}"), "tok_async").await.expect(201);
        orders.push(placed["order"]["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
        app.store.claim_idempotency_key("pay-test", &format!("k{i}"), "h").await.unwrap();
    }
    let provider = Actor { kind: "provider", id: None, request_id: None };
    let body = |i: usize| format!("{{\"answer\":{i}}}");
    let answer = |i: usize, body: &str| -> KeyAnswer<'static> {
        KeyAnswer {
            scope: "pay-test",
            key: Box::leak(format!("k{i}").into_boxed_str()),
            when: OrderStatus::Paid,
            status: 201,
            body: Box::leak(body.to_owned().into_boxed_str()),
        }
    };
    // Alone: order 0 succeeded, order 1 authorized; order 5 declined (moved on).
    for (i, status, reason) in [(0, "succeeded", "payment succeeded"), (1, "authorized", "payment authorized")] {
        let a = answer(i, &body(i));
        let to = app
            .store
            .settle_payment(orders[i], (status, Some("pay_ref_x")), OrderEvent::PaymentSucceeded, &provider, reason, Some(&a))
            .await
            .unwrap();
        assert_eq!(to, OrderStatus::Paid);
    }
    app.store
        .settle_payment(orders[5], ("declined", None), OrderEvent::PaymentFailed, &provider, "declined", None)
        .await
        .unwrap();
    // Together: orders 2 (as 0) and 3 (as 1), order 3 again, order 5 (failed), order 0 (paid already).
    let batch = [
        (2, "succeeded", "payment succeeded"),
        (3, "authorized", "payment authorized"),
        (3, "succeeded", "again"),
        (5, "succeeded", "late"),
        (0, "succeeded", "twice"),
    ];
    let paying: Vec<Paying<'_>> = batch
        .iter()
        .map(|(i, status, reason)| Paying {
            order_id: orders[*i],
            status,
            reference: Some("pay_ref_x"),
            reason,
            answer: answer(*i, &body(*i)),
        })
        .collect();
    assert_eq!(app.store.pay_orders(&paying, &provider).await.unwrap(), [true, true, false, false, false]);

    // Everything the transition writes, for one order, without ids and times.
    let state = |order: uuid::Uuid, i: usize| {
        let pool = app.store.pool().clone();
        async move {
            let one = |sql: &'static str| {
                let pool = pool.clone();
                async move {
                    let rows = sqlx::query(sql).bind(order.to_string()).fetch_all(&pool).await.unwrap();
                    rows.iter()
                        .map(|r| {
                            (0..r.len())
                                .map(|c| {
                                    r.try_get::<Option<String>, _>(c)
                                        .ok()
                                        .flatten()
                                        .unwrap_or_else(|| r.try_get::<i64, _>(c).map(|n| n.to_string()).unwrap_or_default())
                                })
                                .collect::<Vec<_>>()
                                .join("|")
                        })
                        .collect::<Vec<_>>()
                }
            };
            let mut all = Vec::new();
            all.extend(one("SELECT status FROM orders WHERE id = $1").await);
            all.extend(one("SELECT status, CASE WHEN provider_ref LIKE 'pay\\_%' ESCAPE '\\' THEN 'the first reference' ELSE provider_ref END FROM payments WHERE order_id = $1").await);
            all.extend(
                one("SELECT status, CAST(quantity AS BIGINT) FROM reservations WHERE order_id = $1 ORDER BY status").await,
            );
            all.extend(one("SELECT from_status, to_status, actor_type, reason FROM order_events WHERE order_id = $1 ORDER BY created_at, to_status").await);
            all.extend(one("SELECT kind FROM jobs WHERE kind = 'order.paid' AND payload LIKE '%' || $1 || '%'").await);
            let key = sqlx::query("SELECT state, CAST(response_status AS BIGINT) AS s, response_body FROM idempotency_keys WHERE scope = 'pay-test' AND idem_key = $1")
                .bind(format!("k{i}"))
                .fetch_one(&pool)
                .await
                .unwrap();
            all.push(format!("{}|{}", key.get::<String, _>(0), key.get::<Option<i64>, _>(1).unwrap_or_default()));
            all.push(key.get::<Option<String>, _>(2).unwrap_or_default().replace(&i.to_string(), "N"));
            all
        }
    };
    let (alone_succeeded, together_succeeded) = (state(orders[0], 0).await, state(orders[2], 2).await);
    assert_eq!(together_succeeded, alone_succeeded);
    assert_eq!(alone_succeeded[0], "paid");
    assert!(alone_succeeded.iter().any(|r| r == "pending_payment|paid|provider|payment succeeded"), "{alone_succeeded:?}");
    assert!(alone_succeeded.contains(&"order.paid".to_owned()));
    assert!(alone_succeeded.contains(&"done|201".to_owned()));
    let (alone_authorized, together_authorized) = (state(orders[1], 1).await, state(orders[3], 3).await);
    assert_eq!(together_authorized, alone_authorized);
    assert!(alone_authorized[1].starts_with("authorized|"), "{alone_authorized:?}");
    // Left alone: the failed order and the one paid before, as they were.
    let failed = state(orders[5], 5).await;
    assert_eq!(failed[0], "payment_failed");
    assert!(!failed.contains(&"order.paid".to_owned()));
    assert_eq!(failed.last().map(String::as_str), Some(""), "no answer stored for an order that was not paid");
    assert_eq!(state(orders[0], 0).await, alone_succeeded);
    let untouched = state(orders[4], 4).await;
    assert_eq!(untouched[0], "pending_payment");
}

/// Batched reads test membership as one array parameter on PostgreSQL: any text
/// is matched as it is, whatever it holds.
async fn membership_tests_match_any_text_exactly(app: TestApp) {
    use sqlx::Row;

    let values = ["plain", "a,b", "{x}", "say \"hi\"", "back\\slash", "NULL", "", " spaced ", "ünïcode"];
    let mut q = mercato::store::SqlBuilder::new("SELECT x FROM (");
    for (i, v) in values.iter().chain(&["absent", "a", "b"]).enumerate() {
        q.push(if i == 0 { "SELECT " } else { " UNION ALL SELECT " }).bind(*v).push(" AS x");
    }
    q.push(") t WHERE x").bind_in(app.store.dialect(), values.iter().map(|v| (*v).to_owned()));
    let found: std::collections::BTreeSet<String> =
        q.build().fetch_all(app.store.pool()).await.unwrap().iter().map(|r| r.get("x")).collect();
    assert_eq!(found, values.iter().map(|v| (*v).to_owned()).collect());
}

/// Keys claimed at the same moment share one statement, and a key still has
/// one winner: of many concurrent claims of one key exactly one is fresh.
async fn concurrent_claims_of_one_key_have_one_winner(app: TestApp) {
    use mercato::store::idempotency::Claim;
    let claims = (0..40).map(|i| {
        let store = app.store.clone();
        async move {
            let key = if i % 2 == 0 { "same".to_owned() } else { format!("own-{i}") };
            (key.clone(), store.claim_idempotency_key("claims", &key, "h").await.unwrap())
        }
    });
    let claimed = join_all(claims).await;
    let fresh_same = claimed.iter().filter(|(k, c)| k == "same" && *c == Claim::Fresh).count();
    assert_eq!(fresh_same, 1, "{claimed:?}");
    assert!(claimed.iter().filter(|(k, c)| k == "same" && *c != Claim::Fresh).all(|(_, c)| *c == Claim::InFlight));
    assert!(claimed.iter().filter(|(k, _)| k != "same").all(|(_, c)| *c == Claim::Fresh), "{claimed:?}");
    // Done, then claimed again with another body: the stored answer, or a mismatch.
    app.store.finish_idempotency_key("claims", "own-1", 201, "{}").await.unwrap();
    let again = join_all((0..3).map(|_| app.store.claim_idempotency_key("claims", "own-1", "h"))).await;
    assert!(again.iter().all(|c| matches!(c, Ok(Claim::Replay { status: 201, .. }))), "{again:?}");
    assert_eq!(app.store.claim_idempotency_key("claims", "own-1", "other").await.unwrap(), Claim::Mismatch);
}

on_both_databases!(
    membership_tests_match_any_text_exactly,
    concurrent_claims_of_one_key_have_one_winner,
    concurrent_requests_share_reads_and_each_gets_its_own_answer,
    the_checkout_answer_is_the_order_as_stored,
    staff_list_orders_by_status_email_time_and_total,
    a_checkout_that_died_after_placing_its_order_is_resumed_by_its_key,
    a_guest_checks_out_and_stock_moves_from_reserved_to_sold,
    a_declined_payment_releases_the_stock_and_reopens_the_cart,
    out_of_stock_names_each_short_line_and_holds_nothing,
    an_async_payment_is_confirmed_once_by_a_signed_webhook,
    a_webhook_is_applied_exactly_once,
    unpaid_reservations_expire_and_a_late_payment_is_kept_for_refund,
    customers_merge_their_guest_cart_and_see_only_their_orders,
    bad_cart_input_is_refused_without_changing_anything,
    a_line_is_added_by_variant_id_or_sku,
    stock_adjustments_are_ledgered_guarded_and_reconciled,
);

/// With the test provider's webhooks far off, so `tok_async` orders stay waiting for their payment.
mod slow_webhooks {
    use crate::helpers::{Backend, spawn_app_with, test_settings};

    async fn run(backend: Backend) {
        let mut settings = test_settings();
        settings.test_payment_latency_ms = 600_000;
        let app = spawn_app_with(backend, settings).await;
        let cleanup = app.cleanup();
        super::paying_orders_together_writes_what_paying_each_alone_does(app).await;
        cleanup.run().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paying_orders_together_writes_what_paying_each_alone_does_sqlite() {
        run(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paying_orders_together_writes_what_paying_each_alone_does_postgres() {
        run(Backend::Postgres).await;
    }
}

/// Checkout's storm reads each cart's lines through the index even when the
/// database has no statistics on the cart tables yet (carts filled just before a
/// sale): a join of an IN list of carts would otherwise scan every cart line of
/// the shop for each batch of checkouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_reads_find_cart_lines_through_the_index_without_statistics() {
    use std::collections::BTreeSet;

    use mercato::store::Dialect;
    use mercato::store::carts::{cart_lines_sql, checkout_probe_sql};
    use sqlx::Row;

    let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
    let cleanup = app.cleanup();
    let token = app.owner_token().await;
    let product = app.create_product(&token, crate::helpers::product_body("Hot", "HOT", &[1000], None, json!({}))).await;
    let variant = product["variants"][0]["id"].as_str().unwrap();
    // Thousands of carts with a line each, written as a sale's cart phase leaves them, unanalysed.
    sqlx::query(
        "INSERT INTO carts (id, currency, status, created_at, updated_at, expires_at)
         SELECT 'cart-' || n, 'EUR', 'open', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '2999-01-01T00:00:00Z'
         FROM generate_series(1, 5000) AS n",
    )
    .execute(app.store.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO cart_items (id, cart_id, variant_id, quantity, created_at)
         SELECT 'line-' || n, 'cart-' || n, $1, 1, '2026-01-01T00:00:00Z' FROM generate_series(1, 5000) AS n",
    )
    .bind(variant)
    .execute(app.store.pool())
    .await
    .unwrap();
    let carts: BTreeSet<String> = (1..=40).map(|n| format!("cart-{}", n * 97)).collect();
    let probe = || checkout_probe_sql(Dialect::Postgres, carts.clone());
    let lines = || cart_lines_sql(Dialect::Postgres, BTreeSet::from(["EUR"]), carts.clone());
    for (read, sql) in [("probe", probe()), ("cart lines", lines())] {
        let plan = app.store.explain(sql).await.unwrap().join("\n");
        assert!(plan.contains("cart_items_variant_key"), "{read} reads lines through the index:\n{plan}");
        assert!(!plan.contains("Seq Scan on cart_items"), "{read} scans every cart line:\n{plan}");
    }
    for (read, sql, cart) in [("probe", probe(), "id"), ("cart lines", lines(), "cart_id")] {
        let rows = sql.build().fetch_all(app.store.pool()).await.unwrap();
        let found: BTreeSet<String> = rows.iter().map(|r| r.get::<String, _>(cart)).collect();
        let variants: BTreeSet<String> = rows.iter().map(|r| r.get::<String, _>("variant_id")).collect();
        assert_eq!((rows.len(), &found), (40, &carts), "{read}: one row for each cart");
        assert_eq!(variants, BTreeSet::from([variant.to_owned()]), "{read}: each cart's line");
    }
    cleanup.run().await;
}
