//! The flash-sale path: checkouts of one hot variant placed in batches by two
//! server instances on one database, and the sold-out memory that answers late
//! buyers, forgotten the moment stock comes back.

use futures_util::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::checkout::{Guest, german_rates, stocked_product};
use crate::helpers::TestApp;

async fn buyers(app: &TestApp, sku: &str, n: usize) -> Vec<Guest> {
    let mut guests = Vec::with_capacity(n);
    for _ in 0..n {
        let guest = app.guest_cart().await;
        app.add_to_cart(&guest, sku, 1).await;
        guests.push(guest);
    }
    guests
}

fn variant_id(product: &serde_json::Value) -> Uuid {
    Uuid::parse_str(product["variants"][0]["id"].as_str().unwrap()).unwrap()
}

async fn two_instances_racing_for_one_variant_sell_exactly_the_stock(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    stocked_product(&app, &staff, "Drop", &[("DROP-1", 4900, 60)]).await;
    let other = app.another_instance(None).await;
    let guests = buyers(&app, "DROP-1", 400).await;
    // The second instance's database connections opened before the race, as the
    // first one's are (by the carts above): else its first batch starts late and
    // the first instance may sell everything before it.
    let paths: Vec<(String, &Guest)> =
        guests.iter().skip(1).step_by(2).take(32).map(|g| (format!("/v1/carts/{}", g.cart), g)).collect();
    let warm = paths.iter().map(|(path, g)| other.cart_request(reqwest::Method::GET, path, g, None));
    assert!(join_all(warm).await.iter().all(|a| a.status == 200));
    let keys: Vec<String> = (0..guests.len()).map(|i| format!("drop-{i}")).collect();
    let answers = join_all(guests.iter().zip(&keys).enumerate().map(|(i, (g, k))| {
        // Every other buyer goes through the second instance.
        let via = if i % 2 == 0 { &app } else { &other };
        via.checkout(g, k, "tok_ok")
    }))
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert!(answers.iter().all(|a| a.status == 201 || (a.status == 409 && a.body["type"] == "out_of_stock")), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 60);
    // Both instances sold some: the batches of the two really met on the stock row.
    for parity in 0..2 {
        assert!(answers.iter().enumerate().any(|(i, a)| i % 2 == parity && a.status == 201), "instance {parity} sold nothing");
    }
    let stock = app.stock(&staff, "DROP-1").await;
    assert_eq!((stock["on_hand"].as_i64(), stock["reserved"].as_i64()), (Some(0), Some(0)));
    let row = sqlx::query("SELECT COUNT(*) AS n FROM orders WHERE status = 'paid'").fetch_one(app.store.pool()).await.unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&row, "n"), 60);
    app.assert_ledger_reconciles(&staff).await;
}

async fn late_buyers_are_answered_from_memory_until_stock_comes_back(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    let product = stocked_product(&app, &staff, "Last Ones", &[("LAST-1", 4900, 2)]).await;
    let variant = variant_id(&product);
    let guests = buyers(&app, "LAST-1", 5).await;
    app.checkout(&guests[0], "k0", "tok_ok").await.expect(201);
    // The batch that took the last unit remembers the variant as sold out.
    let second = app.checkout(&guests[1], "k1", "tok_ok").await.expect(201);
    assert!(app.store.sold_out().is_sold_out(variant));

    // Answered from memory: the same problem as from the database, and nothing is
    // stored under the key.
    let refused = app.checkout(&guests[2], "k2", "tok_ok").await.problem(409, "out_of_stock");
    assert_eq!(refused["errors"][0]["field"], "items[0]");
    assert_eq!(refused["errors"][0]["message"], "LAST-1: 1 requested, 0 available");
    let stored = sqlx::query("SELECT COUNT(*) AS n FROM idempotency_keys WHERE idem_key = 'k2'")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&stored, "n"), 0);
    // The shortcut still checks whose cart it is.
    let stranger = Guest { cart: guests[2].cart.clone(), token: guests[4].token.clone() };
    app.checkout(&stranger, "k9", "tok_ok").await.problem(404, "not_found");

    // A receipt brings stock back: forgotten at once, and the same key now buys.
    app.admin_post("/v1/admin/inventory/adjustments", &staff, json!({"sku": "LAST-1", "delta": 1, "reason": "found one"}))
        .await
        .expect(201);
    assert!(!app.store.sold_out().is_sold_out(variant));
    app.checkout(&guests[2], "k2", "tok_ok").await.expect(201);
    assert!(app.store.sold_out().is_sold_out(variant));
    app.checkout(&guests[3], "k3", "tok_ok").await.problem(409, "out_of_stock");

    // A cancelled sale restocks: forgotten at once again.
    let order = second["order"]["id"].as_str().unwrap();
    app.admin_post(&format!("/v1/admin/orders/{order}/cancel"), &staff, json!({"reason": "customer asked"})).await.expect(200);
    assert!(!app.store.sold_out().is_sold_out(variant));
    app.checkout(&guests[3], "k3", "tok_ok").await.expect(201);
    let stock = app.stock(&staff, "LAST-1").await;
    assert_eq!((stock["on_hand"].as_i64(), stock["reserved"].as_i64()), (Some(0), Some(0)));
    app.assert_ledger_reconciles(&staff).await;
}

async fn an_expired_reservation_gives_the_unit_back_to_the_next_buyer(app: TestApp) {
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    let product = stocked_product(&app, &staff, "Held", &[("HELD-1", 4900, 1)]).await;
    let variant = variant_id(&product);
    let guests = buyers(&app, "HELD-1", 2).await;
    // A payment that stays pending holds the only unit.
    app.checkout(&guests[0], "p0", "tok_pending").await.expect(201);
    assert!(app.store.sold_out().is_sold_out(variant));
    app.checkout(&guests[1], "p1", "tok_ok").await.problem(409, "out_of_stock");
    // Its reservation runs out: the unit is back, and so is the buyer's chance.
    let later = mercato::store::format_time(time::OffsetDateTime::now_utc() + time::Duration::hours(2));
    assert_eq!(mercato::ops::checkout::expire_due(&app.store, &later).await.unwrap(), 1);
    assert!(!app.store.sold_out().is_sold_out(variant));
    app.checkout(&guests[1], "p1", "tok_ok").await.expect(201);
}

fn order_for(cart: Uuid, seen: &str, variant: Uuid, quantity: i64) -> mercato::store::orders::NewOrder {
    use mercato::domain::address::Address;
    let address = Address {
        name: "A".into(),
        line1: "x".into(),
        line2: String::new(),
        city: "B".into(),
        region: String::new(),
        postal_code: "1".into(),
        country: "DE".into(),
        phone: String::new(),
    };
    let id = Uuid::now_v7();
    mercato::store::orders::NewOrder {
        id,
        number: id.to_string(),
        cart_id: cart,
        cart_seen: seen.into(),
        customer_id: None,
        email: "a@example.com".into(),
        currency: "EUR".into(),
        tax_mode: "inclusive",
        subtotal: 100 * quantity,
        shipping_total: 0,
        discount_total: 0,
        tax_total: 0,
        grand_total: 100 * quantity,
        shipping_option_id: None,
        shipping_address: address.clone(),
        billing_address: address,
        access_token_hash: "h".into(),
        reserved_until: "2999-01-01T00:00:00.000000Z".into(),
        discounts: Vec::new(),
        customer_key: "email:a@example.com".into(),
        payment_provider: "test".into(),
        created_at: mercato::store::now(),
        lines: vec![mercato::store::orders::NewOrderLine {
            id: Uuid::now_v7(),
            variant_id: variant,
            sku: "TWIN-1".into(),
            title: "t".into(),
            options: Default::default(),
            quantity,
            unit_price: 100,
            line_total: 100 * quantity,
            discount: 0,
            tax: 0,
        }],
    }
}

/// Two checkouts of one cart land in one batch: the one that priced the cart's
/// current version is placed, whatever the arrival order; the one that priced an
/// older version is refused.
async fn a_batch_places_the_checkout_of_the_carts_current_version(app: TestApp) {
    use mercato::store::orders::Placed;
    use mercato::store::placement::Placement;
    let staff = app.owner_token().await;
    german_rates(&app, &staff).await;
    let product = stocked_product(&app, &staff, "Twin", &[("TWIN-1", 100, 10)]).await;
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "TWIN-1", 1).await;
    let cart = Uuid::parse_str(&guest.cart).unwrap();
    let old = app.store.cart(cart).await.unwrap().unwrap().updated_at;
    app.add_to_cart(&guest, "TWIN-1", 1).await;
    let current = app.store.cart(cart).await.unwrap().unwrap().updated_at;
    assert!(current > old, "the change made a newer version");
    let (stale, fresh) = (order_for(cart, &old, variant_id(&product), 1), order_for(cart, &current, variant_id(&product), 2));
    let actor = mercato::store::audit::Actor { kind: "guest", id: None, request_id: None };
    let batch = [
        Placement { order: &stale, idempotency: ("s", "k1"), actor: &actor },
        Placement { order: &fresh, idempotency: ("s", "k2"), actor: &actor },
    ];
    let done = app.store.place_orders(&batch).await.unwrap();
    assert!(matches!(done.placed[..], [Placed::CartClosed, Placed::Order]));
    let stock = app.stock(&staff, "TWIN-1").await;
    assert_eq!(stock["reserved"], 2, "the current version's two units");
}

on_both_databases!(
    a_batch_places_the_checkout_of_the_carts_current_version,
    two_instances_racing_for_one_variant_sell_exactly_the_stock,
    late_buyers_are_answered_from_memory_until_stock_comes_back,
    an_expired_reservation_gives_the_unit_back_to_the_next_buyer,
);

mod redis {
    //! The shared memory across instances, against the real Redis server; each
    //! test under its own key prefix.

    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use mercato::sold_out::{RedisSoldOut, SoldOut};
    use uuid::Uuid;

    fn redis_url() -> String {
        std::env::var("MERCATO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    /// Two instances' memories sharing one prefix, or `None` (outside CI) when no
    /// Redis runs here. Under CI a missing Redis fails the test.
    async fn two_instances() -> Option<(Arc<SoldOut>, Arc<SoldOut>)> {
        let prefix = format!("mercato_test:{}:", Uuid::now_v7().simple());
        let mut memories = Vec::new();
        for _ in 0..2 {
            match RedisSoldOut::connect(&redis_url(), &prefix).await {
                Ok(r) => {
                    let m = Arc::new(SoldOut::with_redis(r));
                    m.follow();
                    memories.push(m);
                }
                Err(e) => {
                    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                    assert!(!ci, "Redis is required under CI=true and is not reachable at {}: {e}", redis_url());
                    eprintln!("skipping: no Redis at {} ({e})", redis_url());
                    return None;
                }
            }
        }
        let b = memories.pop()?;
        let a = memories.pop()?;
        // Both subscriptions are live once a mark made now reaches both.
        let probe = Uuid::now_v7();
        a.mark(&a.generations(&[probe]).await, &[probe]).await;
        eventually("both instances subscribed", || a.is_sold_out(probe) && b.is_sold_out(probe)).await;
        Some((a, b))
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "{what} did not happen within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn one_instance_learns_what_another_marked_and_forgot() {
        let Some((a, b)) = two_instances().await else { return };
        let v = Uuid::now_v7();
        let seen = a.generations(&[v]).await;
        a.mark(&seen, &[v]).await;
        eventually("the instance hearing its own mark", || a.is_sold_out(v)).await;
        eventually("the other instance hearing of the sell-out", || b.is_sold_out(v)).await;
        b.forget(&[v]).await;
        assert!(!b.is_sold_out(v));
        eventually("the first instance hearing stock came back", || !a.is_sold_out(v)).await;
    }

    #[tokio::test]
    async fn a_mark_racing_a_restock_on_another_instance_is_dropped() {
        let Some((a, b)) = two_instances().await else { return };
        let v = Uuid::now_v7();
        // A batch on `a` read the stock as zero; before it could mark, `b` restocked.
        let seen = a.generations(&[v]).await;
        b.forget(&[v]).await;
        a.mark(&seen, &[v]).await;
        // The channel keeps order: once a later mark has arrived, a mark of `v`
        // would have too.
        let later = Uuid::now_v7();
        a.mark(&a.generations(&[later]).await, &[later]).await;
        eventually("the later mark arriving", || a.is_sold_out(later) && b.is_sold_out(later)).await;
        assert!(!a.is_sold_out(v) && !b.is_sold_out(v));
        // A fresh read marks as usual.
        let seen = a.generations(&[v]).await;
        a.mark(&seen, &[v]).await;
        eventually("the mark reaching the other instance", || b.is_sold_out(v)).await;
    }

    #[tokio::test]
    async fn a_new_instance_starts_with_the_flags_already_set() {
        let Some((a, _)) = two_instances().await else { return };
        let v = Uuid::now_v7();
        let seen = a.generations(&[v]).await;
        a.mark(&seen, &[v]).await;
        let prefix = a.redis_prefix().expect("backed by Redis").to_owned();
        let late = Arc::new(SoldOut::with_redis(RedisSoldOut::connect(&redis_url(), &prefix).await.unwrap()));
        late.follow();
        eventually("the new instance loading the flags", || late.is_sold_out(v)).await;
    }
}
