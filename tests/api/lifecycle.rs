//! After checkout: shipments, delivery, returns, refunds and cancellation, with
//! the permissions of each role, on both databases.

use futures_util::future::join_all;
use mercato::domain::rbac::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::checkout::{german_rates, stocked_product};
use crate::helpers::{Answer, TestApp, answer, spawn_app_with, test_settings};

impl TestApp {
    /// A guest order for the given (sku, quantity) lines, paid with `tok_ok`.
    pub async fn paid_order(&self, lines: &[(&str, i64)], key: &str) -> Value {
        let guest = self.guest_cart().await;
        for (sku, q) in lines {
            self.add_to_cart(&guest, sku, *q).await;
        }
        let placed = self.checkout(&guest, key, "tok_ok").await.expect(201);
        assert_eq!(placed["order"]["status"], "paid");
        placed["order"].clone()
    }

    pub async fn refund(&self, token: &str, order: &str, key: &str, amount: i64) -> Answer {
        let res = self
            .client
            .post(self.url(&format!("/v1/admin/orders/{order}/refunds")))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&json!({"amount": amount, "reason": "goodwill"}))
            .send()
            .await
            .unwrap();
        answer(res).await
    }

    async fn order_detail(&self, token: &str, order: &str) -> Value {
        self.admin_get(&format!("/v1/admin/orders/{order}"), token).await.expect(200)
    }
}

fn line_id(order: &Value, sku: &str) -> String {
    let lines = order["lines"].as_array().unwrap();
    lines.iter().find(|l| l["sku"] == sku).unwrap()["id"].as_str().unwrap().to_owned()
}

async fn an_order_ships_in_two_parcels_is_delivered_returned_and_refunded(app: TestApp) {
    let owner = app.owner_token().await;
    let fulfilment = app.token_for(Role::Fulfilment).await;
    let support = app.token_for(Role::Support).await;
    german_rates(&app, &owner).await;
    stocked_product(&app, &owner, "Boots", &[("BOOT-1", 1000, 5), ("BOOT-2", 2000, 5)]).await;
    let order = app.paid_order(&[("BOOT-1", 2), ("BOOT-2", 1)], "o-1").await;
    let id = order["id"].as_str().unwrap();
    let total = order["grand_total"].as_i64().unwrap();
    let (a, b) = (line_id(&order, "BOOT-1"), line_id(&order, "BOOT-2"));
    let shipments = format!("/v1/admin/orders/{id}/shipments");

    // Bad parcels are refused with the offending field, and change nothing.
    let bad = app
        .admin_post(
            &shipments,
            &fulfilment,
            json!({"carrier": "DHL", "tracking_number": "1", "lines": [{"line_id": a, "quantity": 3}]}),
        )
        .await
        .problem(422, "validation_failed");
    assert_eq!(bad["errors"][0]["field"], "lines[0].quantity", "{bad}");
    app.admin_post(&shipments, &fulfilment, json!({"carrier": " ", "tracking_number": "1"}))
        .await
        .problem(422, "validation_failed");

    let first = app
        .admin_post(
            &shipments,
            &fulfilment,
            json!({"carrier": "DHL", "tracking_number": "JD0001", "lines": [{"line_id": a, "quantity": 2}]}),
        )
        .await
        .expect(201);
    assert_eq!(first["lines"], json!([{"line_id": a, "quantity": 2}]));
    assert_eq!(app.order_detail(&owner, id).await["status"], "fulfilling");
    // The second parcel takes whatever is left.
    app.admin_post(&shipments, &fulfilment, json!({"carrier": "UPS", "tracking_number": "1Z999"})).await.expect(201);
    let detail = app.order_detail(&owner, id).await;
    assert_eq!(detail["status"], "shipped");
    assert_eq!(detail["shipments"].as_array().unwrap().len(), 2);
    assert_eq!(detail["lines"][1]["shipped_quantity"], 1, "{detail}");
    let more = app
        .admin_post(&shipments, &fulfilment, json!({"carrier": "UPS", "tracking_number": "X"}))
        .await
        .problem(409, "invalid_transition");
    assert_eq!(more["current_status"], "shipped");
    assert_eq!(more["allowed_events"], json!(["deliver", "request_return", "refund"]));
    // The gateway's success event, late (redelivered after the order shipped), is a
    // repeat: the payment stays `succeeded`, nothing is flagged for refund.
    let reference = format!("pay_{}", id.replace('-', ""));
    let late = crate::checkout::deliver(&app, "evt_late", "payment.succeeded", &reference).await.expect(200);
    assert_eq!(late["status"], "ignored");
    assert_eq!(app.store.payment_of(id.parse().unwrap()).await.unwrap().unwrap().status, "succeeded");

    // Fulfilment ships but does not refund.
    let denied = app.refund(&fulfilment, id, "r-0", 100).await.problem(403, "forbidden");
    assert_eq!(denied["required_permission"], "orders:refund");

    app.admin_post(&format!("/v1/admin/orders/{id}/deliver"), &fulfilment, json!({})).await.expect(200);
    let ret = app
        .admin_post(
            &format!("/v1/admin/orders/{id}/returns"),
            &fulfilment,
            json!({"lines": [{"line_id": b, "quantity": 1}], "reason": "too small"}),
        )
        .await
        .expect(201);
    assert_eq!(ret["status"], "requested");
    let before = app.stock(&owner, "BOOT-2").await["on_hand"].as_i64().unwrap();
    let received = app
        .admin_post(
            &format!("/v1/admin/orders/{id}/returns/{}/receive", ret["id"].as_str().unwrap()),
            &fulfilment,
            json!({"restock": true}),
        )
        .await
        .expect(200);
    assert_eq!((received["status"].as_str(), received["restocked"].as_bool()), (Some("received"), Some(true)));
    assert_eq!(app.stock(&owner, "BOOT-2").await["on_hand"].as_i64().unwrap(), before + 1);
    app.assert_ledger_reconciles(&owner).await;

    // Support refunds the returned boots; the same key answers with the same refund.
    let refund = app.refund(&support, id, "r-1", 2000).await.expect(201);
    assert_eq!(refund["status"], "succeeded");
    assert_eq!(app.refund(&support, id, "r-1", 2000).await.expect(201)["id"], refund["id"]);
    app.refund(&support, id, "r-1", 1500).await.problem(422, "idempotency_key_reused");
    let detail = app.order_detail(&owner, id).await;
    assert_eq!((detail["status"].as_str(), detail["refund_status"].as_str()), (Some("returned"), Some("partially_refunded")));
    assert_eq!(detail["refunded_total"], 2000);
    // Never more than what is left.
    let over = app.refund(&owner, id, "r-2", total - 2000 + 1).await.problem(422, "validation_failed");
    assert_eq!(
        (over["errors"][0]["field"].as_str(), over["errors"][0]["code"].as_str()),
        (Some("amount"), Some("refund_exceeds_paid"))
    );
    app.refund(&owner, id, "r-3", 0).await.problem(422, "validation_failed");
    app.refund(&owner, id, "r-4", total - 2000).await.expect(201);
    let detail = app.order_detail(&owner, id).await;
    assert_eq!((detail["status"].as_str(), detail["refund_status"].as_str()), (Some("refunded"), Some("refunded")));
    assert_eq!(detail["refunded_total"], total);
    app.refund(&owner, id, "r-5", 1).await.problem(409, "invalid_transition");

    let history = app.admin_get(&format!("/v1/admin/orders/{id}/history"), &owner).await.expect(200);
    let steps: Vec<&str> = history["items"].as_array().unwrap().iter().map(|e| e["to"].as_str().unwrap()).collect();
    assert_eq!(
        steps,
        ["pending_payment", "paid", "fulfilling", "shipped", "delivered", "return_requested", "returned", "returned", "refunded"]
    );
    let staff_steps = history["items"].as_array().unwrap().iter().filter(|e| e["actor_type"] == "staff").count();
    assert_eq!(staff_steps, 5, "{history}");
    assert!(history["items"][7]["reason"].as_str().unwrap().contains("2000 EUR"), "{history}");
}

async fn cancelling_releases_or_restocks_and_refunds_in_full(app: TestApp) {
    let owner = app.owner_token().await;
    german_rates(&app, &owner).await;
    stocked_product(&app, &owner, "Lamp", &[("LAMP-1", 3000, 4)]).await;

    // Unpaid: the reservation is released and the cart reopens.
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "LAMP-1", 1).await;
    let pending = app.checkout(&guest, "p-1", "tok_pending").await.expect(201);
    let pending_id = pending["order"]["id"].as_str().unwrap();
    assert_eq!(app.stock(&owner, "LAMP-1").await["reserved"], 1);
    let cancelled = app.admin_post(&format!("/v1/admin/orders/{pending_id}/cancel"), &owner, json!({})).await.expect(200);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["refunds"], json!([]));
    let stock = app.stock(&owner, "LAMP-1").await;
    assert_eq!((stock["on_hand"].as_i64(), stock["reserved"].as_i64()), (Some(4), Some(0)));

    // Paid: the lamps go back on hand and the money back to the buyer.
    let order = app.paid_order(&[("LAMP-1", 2)], "p-2").await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(app.stock(&owner, "LAMP-1").await["on_hand"], 2);
    let cancelled =
        app.admin_post(&format!("/v1/admin/orders/{id}/cancel"), &owner, json!({"reason": "customer asked"})).await.expect(200);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["refunds"][0]["status"], "succeeded");
    assert_eq!(cancelled["refunds"][0]["amount"], order["grand_total"]);
    assert_eq!(cancelled["refunded_total"], order["grand_total"]);
    assert_eq!(app.stock(&owner, "LAMP-1").await["on_hand"], 4);
    app.assert_ledger_reconciles(&owner).await;
    // Twice is a conflict that says where the order is.
    let again =
        app.admin_post(&format!("/v1/admin/orders/{id}/cancel"), &owner, json!({})).await.problem(409, "invalid_transition");
    assert_eq!(again["current_status"], "cancelled");

    // Refunded in full before it shipped: the goods never left, so they are back on hand.
    let order = app.paid_order(&[("LAMP-1", 2)], "p-4").await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(app.stock(&owner, "LAMP-1").await["on_hand"], 2);
    app.refund(&owner, id, "full", order["grand_total"].as_i64().unwrap()).await.expect(201);
    assert_eq!(app.order_detail(&owner, id).await["status"], "refunded");
    assert_eq!(app.stock(&owner, "LAMP-1").await["on_hand"], 4);
    app.assert_ledger_reconciles(&owner).await;

    // A shipped order is not cancelled (it is returned).
    let order = app.paid_order(&[("LAMP-1", 1)], "p-3").await;
    let id = order["id"].as_str().unwrap();
    let fulfilment = app.token_for(Role::Fulfilment).await;
    app.admin_post(&format!("/v1/admin/orders/{id}/shipments"), &fulfilment, json!({"carrier": "DHL", "tracking_number": "9"}))
        .await
        .expect(201);
    app.admin_post(&format!("/v1/admin/orders/{id}/cancel"), &owner, json!({})).await.problem(409, "invalid_transition");
    app.admin_post(&format!("/v1/admin/orders/{id}/cancel"), &fulfilment, json!({})).await.problem(403, "forbidden");
}

async fn support_refunds_only_up_to_the_configured_limit(backend: crate::helpers::Backend) {
    let app = spawn_app_with(backend, mercato::config::Settings { support_refund_limit: 1500, ..test_settings() }).await;
    let cleanup = app.cleanup();
    let owner = app.owner_token().await;
    let support = app.token_for(Role::Support).await;
    german_rates(&app, &owner).await;
    stocked_product(&app, &owner, "Vase", &[("VASE-1", 3000, 4)]).await;
    let order = app.paid_order(&[("VASE-1", 1)], "v-1").await;
    let id = order["id"].as_str().unwrap();
    app.refund(&support, id, "s-1", 1000).await.expect(201);
    // 1000 + 600 would take the order past the 1500 support may reach.
    let limited = app.refund(&support, id, "s-2", 600).await.problem(403, "refund_limit_exceeded");
    assert!(limited["detail"].as_str().unwrap().contains("1500"), "{limited}");
    app.admin_post(&format!("/v1/admin/orders/{id}/cancel"), &support, json!({})).await.problem(403, "refund_limit_exceeded");
    // Nothing changed; the owner has no limit.
    let detail = app.order_detail(&owner, id).await;
    assert_eq!((detail["status"].as_str(), detail["refunded_total"].as_i64()), (Some("paid"), Some(1000)));
    app.refund(&owner, id, "s-3", 600).await.expect(201);
    cleanup.run().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_refund_limit_sqlite() {
    support_refunds_only_up_to_the_configured_limit(crate::helpers::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_refund_limit_postgres() {
    support_refunds_only_up_to_the_configured_limit(crate::helpers::Backend::Postgres).await;
}

/// Many refunds at once, each under its own key: together they never exceed what
/// was paid, whatever order the database serialises them in.
async fn concurrent_refunds_never_exceed_what_was_paid(app: TestApp) {
    let owner = app.owner_token().await;
    german_rates(&app, &owner).await;
    stocked_product(&app, &owner, "Chair", &[("CHAIR-1", 2000, 3)]).await;
    // 3 × 20.00 ships free: the order is exactly 60.00, four refunds of 15.00.
    let order = app.paid_order(&[("CHAIR-1", 3)], "c-1").await;
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(order["grand_total"], 6000);
    let attempts = (0..24).map(|i| {
        let (app, owner, id) = (&app, &owner, &id);
        async move { app.refund(owner, id, &format!("k-{i}"), 1500).await }
    });
    let answers = join_all(attempts).await;
    let ok = answers.iter().filter(|a| a.status == 201).count();
    // Refused: more than is left, or (once all of it is back) an order that is refunded.
    let refused = answers
        .iter()
        .filter(|a| {
            (a.status == 422 && a.body["errors"][0]["code"] == "refund_exceeds_paid")
                || (a.status == 409 && a.body["type"] == "invalid_transition")
        })
        .count();
    assert_eq!((ok, refused), (4, 20), "{:?}", answers.iter().map(|a| a.status.as_u16()).collect::<Vec<_>>());
    let detail = app.order_detail(&owner, &id).await;
    assert_eq!((detail["refunded_total"].as_i64(), detail["status"].as_str()), (Some(6000), Some("refunded")));
}

async fn customers_ask_to_return_their_own_orders_only(app: TestApp) {
    let owner = app.owner_token().await;
    german_rates(&app, &owner).await;
    stocked_product(&app, &owner, "Hat", &[("HAT-1", 2500, 5)]).await;
    let mut customers = Vec::new();
    for email in ["cy@example.com", "di@example.com"] {
        let reg = app
            .send(Method::POST, "/v1/auth/register", None, Some(json!({"email": email, "password": crate::helpers::PASSWORD})))
            .await
            .expect(201);
        customers.push(reg["tokens"]["access_token"].as_str().unwrap().to_owned());
    }
    let cart = app.send(Method::POST, "/v1/carts", Some(&customers[0]), None).await.expect(201);
    let cart_id = cart["id"].as_str().unwrap();
    app.send(
        Method::POST,
        &format!("/v1/carts/{cart_id}/items"),
        Some(&customers[0]),
        Some(json!({"sku": "HAT-1", "quantity": 1})),
    )
    .await
    .expect(201);
    let res = app
        .client
        .post(app.url(&format!("/v1/carts/{cart_id}/checkout")))
        .bearer_auth(&customers[0])
        .header("idempotency-key", "h-1")
        .json(&crate::checkout::checkout_body("tok_ok"))
        .send()
        .await
        .unwrap();
    let id = answer(res).await.expect(201)["order"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/me/orders/{id}/returns");
    // Not shipped yet: nothing to send back.
    app.send(Method::POST, &path, Some(&customers[0]), Some(json!({"reason": "changed my mind"})))
        .await
        .problem(409, "invalid_transition");
    app.admin_post(&format!("/v1/admin/orders/{id}/shipments"), &owner, json!({"carrier": "DHL", "tracking_number": "7"}))
        .await
        .expect(201);
    app.send(Method::POST, &path, Some(&customers[1]), Some(json!({}))).await.problem(404, "not_found");
    let ret = app.send(Method::POST, &path, Some(&customers[0]), Some(json!({"reason": "changed my mind"}))).await.expect(201);
    assert_eq!(ret["lines"][0]["quantity"], 1);
    // Received damaged: not restocked.
    let on_hand = app.stock(&owner, "HAT-1").await["on_hand"].clone();
    app.admin_post(
        &format!("/v1/admin/orders/{id}/returns/{}/receive", ret["id"].as_str().unwrap()),
        &owner,
        json!({"restock": false}),
    )
    .await
    .expect(200);
    assert_eq!(app.stock(&owner, "HAT-1").await["on_hand"], on_hand);
    let history = app.admin_get(&format!("/v1/admin/orders/{id}/history"), &owner).await.expect(200);
    assert_eq!(history["items"][3]["actor_type"], "customer", "{history}");
}

/// Each step the customer should hear about sends its e-mail once (here to the
/// `.eml` outbox of the embedded mode), however often its event is handled.
async fn the_customer_hears_of_payment_shipment_delivery_and_refund_once_each(app: TestApp) {
    let owner = app.owner_token().await;
    german_rates(&app, &owner).await;
    stocked_product(&app, &owner, "Rug", &[("RUG-1", 8000, 2)]).await;
    let order = app.paid_order(&[("RUG-1", 1)], "e-1").await;
    let id = order["id"].as_str().unwrap();
    app.admin_post(
        &format!("/v1/admin/orders/{id}/shipments"),
        &owner,
        json!({"carrier": "DHL", "tracking_number": "JJD000111", "tracking_url": "https://track.example/JJD000111"}),
    )
    .await
    .expect(201);
    app.admin_post(&format!("/v1/admin/orders/{id}/deliver"), &owner, json!({})).await.expect(200);
    app.refund(&owner, id, "e-r", 1000).await.expect(201);
    app.drain_jobs().await;
    // Handling every event again sends nothing more.
    sqlx::query("UPDATE jobs SET status = 'queued', run_at = $1 WHERE kind LIKE 'order.%' OR kind LIKE 'shipment.%' OR kind LIKE 'refund.%'")
        .bind(mercato::store::now())
        .execute(app.store.pool())
        .await
        .unwrap();
    app.drain_jobs().await;

    let outbox = app.settings.data_dir.join("outbox");
    let mut mails: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap_or_else(|e| panic!("{}: {e}", outbox.display()))
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    mails.sort_by_key(|m| ["onfirm", "shipped", "delivered", "efund"].iter().position(|k| m.contains(k)).unwrap_or(9));
    assert_eq!(mails.len(), 4, "{mails:#?}");
    let number = order["number"].as_str().unwrap();
    for m in &mails {
        assert!(m.contains("To: ann@example.com") && m.contains(number), "{m}");
    }
    assert!(mails[1].contains("JJD000111") && mails[1].contains("https://track.example/JJD000111"), "{}", mails[1]);
    assert!(mails[3].contains("10.00"), "{}", mails[3]);
}

on_both_databases!(
    an_order_ships_in_two_parcels_is_delivered_returned_and_refunded,
    cancelling_releases_or_restocks_and_refunds_in_full,
    concurrent_refunds_never_exceed_what_was_paid,
    customers_ask_to_return_their_own_orders_only,
    the_customer_hears_of_payment_shipment_delivery_and_refund_once_each,
);
