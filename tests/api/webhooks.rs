//! Outgoing webhooks: events reach subscribers signed, retried until accepted,
//! and once per event however often the event is handled.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use mercato::domain::signature;
use reqwest::Method;
use serde_json::{Value, json};

use crate::checkout::{german_rates, stocked_product};
use crate::helpers::TestApp;

#[derive(Default)]
struct Received {
    /// Answers to fail before accepting.
    fail_first: usize,
    calls: usize,
    accepted: Vec<(String, Vec<u8>, String)>,
}

/// A subscriber's endpoint on a free port: answers 500 `fail_first` times, then 204.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Received>>) {
    let seen = Arc::new(Mutex::new(Received { fail_first, ..Received::default() }));
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let mut r = state.lock().unwrap();
                r.calls += 1;
                if r.calls <= r.fail_first {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                r.accepted.push((header("mercato-signature"), body.to_vec(), header("mercato-event-id")));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn subscribers_get_each_event_once_signed_after_retries(app: TestApp) {
    let owner = app.owner_token().await;
    german_rates(&app, &owner).await;
    stocked_product(&app, &owner, "Kettle", &[("KET-1", 4000, 5)]).await;
    let (url, seen) = receiver(2).await;

    let bad = app
        .admin_post("/v1/admin/webhooks", &owner, json!({"url": "ftp://x", "event_types": ["order.paid", "order.teleported"]}))
        .await
        .problem(422, "validation_failed");
    assert_eq!(crate::helpers::Answer::fields(&bad), ["url", "event_types[1]"]);
    let sub = app
        .admin_post("/v1/admin/webhooks", &owner, json!({"url": url, "event_types": ["order.paid", "refund.succeeded"]}))
        .await
        .expect(201);
    let secret = sub["secret"].as_str().unwrap().to_owned();
    let listed = app.admin_get("/v1/admin/webhooks", &owner).await.expect(200);
    assert!(listed["items"][0].get("secret").is_none(), "the secret is shown once: {listed}");

    let order = app.paid_order(&[("KET-1", 1)], "w-1").await;
    let id = order["id"].as_str().unwrap();
    app.refund(&owner, id, "wr-1", 500).await.expect(201);
    app.drain_jobs().await;

    let (calls, accepted) = {
        let r = seen.lock().unwrap();
        (r.calls, r.accepted.clone())
    };
    // Two refusals, then each of the two events accepted once.
    assert_eq!((calls, accepted.len()), (4, 2));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut types = Vec::new();
    for (sig, body, event_id) in &accepted {
        signature::verify(secret.as_bytes(), sig, body, now, 300).expect("signed with the subscription's secret");
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["id"].as_str().unwrap(), event_id);
        assert_eq!(event["data"]["order_id"], id);
        types.push(event["type"].as_str().unwrap().to_owned());
    }
    types.sort();
    assert_eq!(types, ["order.paid", "refund.succeeded"]);

    // Handling the same event again queues nothing more.
    let paid: Value =
        serde_json::from_slice(&accepted.iter().find(|a| a.1.windows(10).any(|w| w == b"order.paid")).unwrap().1).unwrap();
    let mut tx = app.store.begin().await.unwrap();
    let event_id = paid["id"].as_str().unwrap().parse().unwrap();
    let again = mercato::store::webhooks::fan_out(&mut tx, event_id, "order.paid", &paid["data"]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(again, 0);

    // Unsubscribed: later events go nowhere.
    let sub_id = sub["id"].as_str().unwrap();
    app.send(Method::DELETE, &format!("/v1/admin/webhooks/{sub_id}"), Some(&owner), None).await.expect(204);
    app.paid_order(&[("KET-1", 1)], "w-2").await;
    app.drain_jobs().await;
    assert_eq!(seen.lock().unwrap().accepted.len(), 2);
}

on_both_databases!(subscribers_get_each_event_once_signed_after_retries);
