//! Races against the real databases: many requests at once, then the invariants.

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{TestApp, product_body};

async fn concurrent_creates_of_one_sku_yield_exactly_one_product(app: TestApp) {
    let token = app.owner_token().await;
    let attempts = (0..16).map(|i| {
        let body = product_body(&format!("Racer {i}"), "RACE", &[1000], None, json!({}));
        app.admin_post("/v1/admin/products", &token, body)
    });
    let answers = join_all(attempts).await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    let conflicts = answers.iter().filter(|a| a.status == 409 && a.body["type"] == "duplicate_sku").count();
    assert_eq!(created, 1, "{:?}", answers.iter().map(|a| (a.status, a.body.clone())).collect::<Vec<_>>());
    assert_eq!(conflicts, 15);
    // No half-written product survived a lost race.
    for (table, expected) in [("products", 1i64), ("variants", 1), ("variant_prices", 1), ("product_prices", 1)] {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}")))
            .fetch_one(app.store.pool())
            .await
            .unwrap();
        assert_eq!(sqlx::Row::get::<i64, _>(&row, "n"), expected, "{table}");
    }
}

async fn concurrent_category_moves_never_make_a_cycle(app: TestApp) {
    let token = app.owner_token().await;
    for round in 0..5 {
        let a = app.create_category(&token, &format!("A{round}"), None).await;
        let b = app.create_category(&token, &format!("B{round}"), None).await;
        let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
        // Each move is fine alone; together they would close a loop.
        let (path_a, path_b) = (format!("/v1/admin/categories/{a_id}"), format!("/v1/admin/categories/{b_id}"));
        let (x, y) = tokio::join!(
            app.admin_patch(&path_a, &token, json!({"parent_id": b_id})),
            app.admin_patch(&path_b, &token, json!({"parent_id": a_id})),
        );
        let ok = [x.status.as_u16(), y.status.as_u16()].iter().filter(|s| **s == 200).count();
        assert_eq!(ok, 1, "round {round}: {} / {}", x.body, y.body);
        let tree = app.admin_get("/v1/admin/categories", &token).await.expect(200);
        let parent_of = |id: &str| {
            tree["items"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap()["parent_id"].as_str().map(str::to_owned)
        };
        assert!(parent_of(a_id).is_none() || parent_of(b_id).is_none(), "cycle between {a_id} and {b_id}");
    }
}

async fn concurrent_writes_to_one_product_queue_up_and_keep_its_matrix(app: TestApp) {
    let token = app.owner_token().await;
    let mut body = product_body("Sock", "SOCK", &[500], None, json!({}));
    body["options"] = json!([{"name": "size", "values": ["S0", "M", "L"]}]);
    let product = app.create_product(&token, body).await;
    let id = product["id"].as_str().unwrap();

    // Eight attempts to add the same size under different SKUs: one wins.
    let variants_path = format!("/v1/admin/products/{id}/variants");
    let adds = (0..8).map(|i| {
        app.admin_post(
            &variants_path,
            &token,
            json!({"sku": format!("SOCK-M-{i}"), "options": {"size": "M"}, "prices": [{"currency": "EUR", "amount": 600}]}),
        )
    });
    let answers = join_all(adds).await;
    assert_eq!(answers.iter().filter(|a| a.status == 201).count(), 1);
    assert!(
        answers.iter().all(|a| a.status == 201 || (a.status == 422 && a.body["errors"][0]["field"] == "options")),
        "{:?}",
        answers.iter().map(|a| a.body.clone()).collect::<Vec<_>>()
    );

    // Ten concurrent renames: all succeed, one after the other.
    let product_path = format!("/v1/admin/products/{id}");
    let renames = (0..10).map(|i| app.admin_patch(&product_path, &token, json!({"title": format!("Sock {i}")})));
    let answers = join_all(renames).await;
    assert!(answers.iter().all(|a| a.status == 200), "{:?}", answers.iter().map(|a| a.body.clone()).collect::<Vec<_>>());
    let now = app.admin_get(&product_path, &token).await.expect(200);
    // Created at version 1, one variant added, ten renames.
    assert_eq!(now["version"], 12);
    assert_eq!(now["variants"].as_array().unwrap().len(), 2);
    // Each audited rename saw the state the previous one left.
    let log = app.admin_get(&format!("/v1/admin/audit-log?entity_id={id}&limit=20"), &token).await.expect(200);
    let mut versions: Vec<(i64, i64)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "product.update")
        .map(|e| (e["before"]["version"].as_i64().unwrap(), e["after"]["version"].as_i64().unwrap()))
        .collect();
    versions.sort();
    assert_eq!(versions, (2..12).map(|v| (v, v + 1)).collect::<Vec<_>>());
}

on_both_databases!(
    concurrent_creates_of_one_sku_yield_exactly_one_product,
    concurrent_category_moves_never_make_a_cycle,
    concurrent_writes_to_one_product_queue_up_and_keep_its_matrix,
);

mod flash_sale {
    //! Many real concurrent checkouts against the real database, then the invariants.

    use futures_util::future::join_all;
    use serde_json::json;

    use crate::checkout::{german_rates, stocked_product};
    use crate::helpers::TestApp;

    async fn a_thousand_buyers_for_a_hundred_units_make_exactly_a_hundred_orders(app: TestApp) {
        let staff = app.owner_token().await;
        german_rates(&app, &staff).await;
        stocked_product(&app, &staff, "Hot Sneaker", &[("HOT-1", 12900, 100)]).await;
        let mut buyers = Vec::new();
        for _ in 0..1000 {
            let guest = app.guest_cart().await;
            app.add_to_cart(&guest, "HOT-1", 1).await;
            buyers.push(guest);
        }
        let keys: Vec<String> = (0..buyers.len()).map(|i| format!("flash-{i}")).collect();
        let answers = join_all(buyers.iter().zip(&keys).map(|(g, k)| app.checkout(g, k, "tok_ok"))).await;
        let created = answers.iter().filter(|a| a.status == 201).count();
        let sold_out = answers.iter().filter(|a| a.status == 409 && a.body["type"] == "out_of_stock").count();
        let errors: Vec<_> = answers.iter().filter(|a| a.status.is_server_error()).map(|a| a.body.clone()).collect();
        assert!(errors.is_empty(), "{} server errors, e.g. {:?}", errors.len(), errors.first());
        assert_eq!((created, sold_out), (100, 900));
        assert!(answers.iter().filter(|a| a.status == 201).all(|a| a.body["order"]["status"] == "paid"));
        let stock = app.stock(&staff, "HOT-1").await;
        assert_eq!((stock["on_hand"].as_i64(), stock["reserved"].as_i64()), (Some(0), Some(0)));
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM orders WHERE status = 'paid'").fetch_one(app.store.pool()).await.unwrap();
        assert_eq!(sqlx::Row::get::<i64, _>(&row, "n"), 100);
        app.assert_ledger_reconciles(&staff).await;
    }

    async fn carts_sharing_variants_in_any_order_neither_deadlock_nor_oversell(app: TestApp) {
        let staff = app.owner_token().await;
        german_rates(&app, &staff).await;
        stocked_product(&app, &staff, "Pair", &[("PAIR-A", 1000, 20), ("PAIR-B", 1000, 20)]).await;
        let mut buyers = Vec::new();
        for i in 0..60 {
            let guest = app.guest_cart().await;
            // Half add A then B, half B then A: the lock order must not follow the cart.
            let (first, second) = if i % 2 == 0 { ("PAIR-A", "PAIR-B") } else { ("PAIR-B", "PAIR-A") };
            app.add_to_cart(&guest, first, 1).await;
            app.add_to_cart(&guest, second, 1).await;
            buyers.push(guest);
        }
        // Meanwhile staff correct stock down and up again.
        let adjustments = (0..20).map(|i| {
            let delta = if i % 2 == 0 { -1 } else { 1 };
            app.admin_post(
                "/v1/admin/inventory/adjustments",
                &staff,
                json!({"sku": "PAIR-A", "delta": delta, "reason": "recount"}),
            )
        });
        let keys: Vec<String> = (0..buyers.len()).map(|i| format!("pair-{i}")).collect();
        let checkouts = join_all(buyers.iter().zip(&keys).map(|(g, k)| app.checkout(g, k, "tok_ok")));
        let (answers, adjusted) = tokio::join!(checkouts, join_all(adjustments));
        assert!(answers.iter().chain(adjusted.iter()).all(|a| !a.status.is_server_error()), "server errors");
        let created = answers.iter().filter(|a| a.status == 201).count();
        assert!(answers.iter().all(|a| a.status == 201 || a.body["type"] == "out_of_stock"));
        assert!(adjusted.iter().all(|a| a.status == 201 || a.body["type"] == "insufficient_stock"));
        let a = app.stock(&staff, "PAIR-A").await;
        let b = app.stock(&staff, "PAIR-B").await;
        // Every order took one of each; nothing reserved is left; nothing went negative.
        assert_eq!(b["on_hand"].as_i64().unwrap(), 20 - created as i64);
        assert!(created <= 20 && a["on_hand"].as_i64().unwrap() >= 0);
        assert_eq!((a["reserved"].as_i64(), b["reserved"].as_i64()), (Some(0), Some(0)));
        let applied: i64 = adjusted.iter().filter(|r| r.status == 201).count() as i64;
        assert!(applied >= 10, "the increases always apply");
        app.assert_ledger_reconciles(&staff).await;
    }

    async fn one_idempotency_key_sent_twice_at_once_places_one_order(app: TestApp) {
        let staff = app.owner_token().await;
        german_rates(&app, &staff).await;
        stocked_product(&app, &staff, "Twin", &[("TWIN-1", 1000, 10)]).await;
        let guest = app.guest_cart().await;
        app.add_to_cart(&guest, "TWIN-1", 1).await;
        let answers = join_all((0..8).map(|_| app.checkout(&guest, "same-key", "tok_ok"))).await;
        // One runs; the others are told it is running, or replay its answer.
        assert!(answers.iter().all(|a| a.status == 201 || (a.status == 409 && a.body["type"] == "idempotency_key_in_use")));
        let orders: std::collections::HashSet<_> =
            answers.iter().filter(|a| a.status == 201).map(|a| a.body["order"]["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(orders.len(), 1);
        let stock = app.stock(&staff, "TWIN-1").await;
        assert_eq!((stock["on_hand"].as_i64(), stock["reserved"].as_i64()), (Some(9), Some(0)));
        // Once finished, the key replays the winner's answer to everyone.
        let winner = answers.iter().find(|a| a.status == 201).unwrap();
        let replay = app.checkout(&guest, "same-key", "tok_ok").await;
        assert_eq!((replay.status.as_u16(), &replay.body), (201, &winner.body));
        app.assert_ledger_reconciles(&staff).await;
    }

    async fn a_thousand_buyers_with_pending_payments_hold_exactly_the_hundred_units(app: TestApp) {
        let staff = app.owner_token().await;
        german_rates(&app, &staff).await;
        stocked_product(&app, &staff, "Drop", &[("DROP-1", 5000, 100)]).await;
        let mut buyers = Vec::new();
        for _ in 0..1000 {
            let guest = app.guest_cart().await;
            app.add_to_cart(&guest, "DROP-1", 1).await;
            buyers.push(guest);
        }
        let keys: Vec<String> = (0..buyers.len()).map(|i| format!("drop-{i}")).collect();
        let answers = join_all(buyers.iter().zip(&keys).map(|(g, k)| app.checkout(g, k, "tok_pending"))).await;
        assert!(answers.iter().all(|a| !a.status.is_server_error()));
        assert_eq!(answers.iter().filter(|a| a.status == 201).count(), 100);
        assert_eq!(answers.iter().filter(|a| a.status == 409 && a.body["type"] == "out_of_stock").count(), 900);
        // Held, not sold: everything is reserved until the payments arrive.
        let stock = app.stock(&staff, "DROP-1").await;
        assert_eq!(
            (stock["on_hand"].as_i64(), stock["reserved"].as_i64(), stock["available"].as_i64()),
            (Some(100), Some(100), Some(0))
        );
        // None arrive: the reservations run out and every unit is back.
        let later = mercato::store::format_time(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
        assert_eq!(mercato::ops::checkout::expire_due(&app.store, &later).await.unwrap(), 100);
        let stock = app.stock(&staff, "DROP-1").await;
        assert_eq!((stock["on_hand"].as_i64(), stock["reserved"].as_i64()), (Some(100), Some(0)));
        app.assert_ledger_reconciles(&staff).await;
    }

    on_both_databases!(
        a_thousand_buyers_for_a_hundred_units_make_exactly_a_hundred_orders,
        carts_sharing_variants_in_any_order_neither_deadlock_nor_oversell,
        one_idempotency_key_sent_twice_at_once_places_one_order,
        a_thousand_buyers_with_pending_payments_hold_exactly_the_hundred_units,
    );
}
