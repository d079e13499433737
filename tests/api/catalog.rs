use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, product_body};

async fn a_product_is_created_with_its_variants_and_published(app: TestApp) {
    let token = app.owner_token().await;
    let created = app
        .create_product(
            &token,
            json!({
                "title": "Linen Shirt",
                "description": "Breezy.",
                "brand": "Fjord & Co",
                "options": [{"name": "size", "values": ["S", "M"]}, {"name": "colour", "values": ["white", "navy"]}],
                "variants": [
                    {"sku": "LS-S-W", "options": {"size": "S", "colour": "white"}, "prices": [{"currency": "EUR", "amount": 4900}, {"currency": "USD", "amount": 5300}], "weight_grams": 250, "barcode": "4006381333931"},
                    {"sku": "LS-M-N", "options": {"size": "M", "colour": "navy"}, "prices": [{"currency": "EUR", "amount": 5100}]}
                ],
                "attributes": {"material": "linen", "care": ["hand wash", "line dry"]},
                "images": [{"url": "https://cdn.example.com/ls.jpg", "alt": "Linen shirt"}]
            }),
        )
        .await;
    assert_eq!(created["slug"], "linen-shirt");
    assert_eq!(created["status"], "draft");
    assert_eq!(created["variants"].as_array().unwrap().len(), 2);
    assert_eq!(
        created["variants"][0]["prices"],
        json!([{"currency": "EUR", "amount": 4900}, {"currency": "USD", "amount": 5300}])
    );
    assert_eq!(created["attributes"]["care"], json!(["hand wash", "line dry"]));
    let id = created["id"].as_str().unwrap();

    // A draft is invisible to shoppers, by id and by slug, and absent from lists.
    app.get(&format!("/v1/products/{id}")).await.problem(404, "not_found");
    app.get("/v1/products/linen-shirt").await.problem(404, "not_found");
    assert_eq!(app.get("/v1/products").await.expect(200)["items"], json!([]));

    let published =
        app.admin_patch(&format!("/v1/admin/products/{id}"), &token, json!({"status": "published"})).await.expect(200);
    assert_eq!(published["version"], 2);
    let shown = app.get("/v1/products/linen-shirt").await.expect(200);
    assert_eq!(shown["id"], id);
    let list = app.get("/v1/products").await.expect(200);
    assert_eq!(list["items"][0]["price"], json!({"currency": "EUR", "min": 4900, "max": 5100}));
    let usd = app.get("/v1/products?currency=USD").await.expect(200);
    assert_eq!(usd["items"][0]["price"], json!({"currency": "USD", "min": 5300, "max": 5300}));
}

async fn invalid_products_name_every_bad_field_and_write_nothing(app: TestApp) {
    let token = app.owner_token().await;
    let body = app
        .admin_post(
            "/v1/admin/products",
            &token,
            json!({
                "title": " ",
                "slug": "Not A Slug",
                "options": [{"name": "size", "values": ["S", "S"]}],
                "variants": [
                    {"sku": "bad sku", "options": {"size": "XL"}, "prices": [{"currency": "EUR", "amount": -100}]},
                    {"sku": "OK-1", "options": {"size": "S"}, "prices": [{"currency": "EUR", "amount": 200000000000i64}]}
                ],
                "images": [{"url": "javascript:alert(1)"}]
            }),
        )
        .await
        .problem(422, "validation_failed");
    let fields = Answer::fields(&body);
    for f in [
        "title",
        "slug",
        "options[0].values[1]",
        "variants[0].sku",
        "variants[0].options",
        "variants[0].prices[0].amount",
        "variants[1].prices[0].amount",
        "images[0].url",
    ] {
        assert!(fields.contains(&f.to_owned()), "{f} not in {fields:?}");
    }
    assert_eq!(app.admin_get("/v1/admin/products", &token).await.expect(200)["items"], json!([]));
}

async fn bad_bodies_are_problems_not_crashes(app: TestApp) {
    let token = app.owner_token().await;
    // Malformed JSON.
    let res = app
        .client
        .post(app.url("/v1/admin/products"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    crate::helpers::answer(res).await.problem(400, "malformed_json");
    // Not JSON at all.
    let res = app
        .client
        .post(app.url("/v1/admin/products"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    crate::helpers::answer(res).await.problem(415, "unsupported_media_type");
    // Unknown field, wrong type.
    let body = app
        .admin_post("/v1/admin/products", &token, json!({"title": "X", "variants": [], "colour": "red"}))
        .await
        .problem(422, "validation_failed");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("unknown field `colour`"), "{body}");
    let body = app
        .admin_post(
            "/v1/admin/products",
            &token,
            json!({"title": "X", "variants": [{"sku": "A", "prices": [{"currency": "EUR", "amount": "12.50"}]}]}),
        )
        .await
        .problem(422, "validation_failed");
    assert_eq!(Answer::fields(&body), ["variants[0].prices[0].amount"]);
    // Oversized body.
    let huge = "x".repeat(app.settings.body_limit_bytes + 10);
    app.admin_post("/v1/admin/products", &token, json!({"title": huge, "variants": []})).await.problem(413, "payload_too_large");
    // Unknown route and method.
    app.get("/v1/nope").await.problem(404, "not_found");
    app.send(Method::DELETE, "/v1/products", None, None).await.problem(405, "method_not_allowed");
    // An id that is not a UUID cannot exist.
    app.admin_get("/v1/admin/products/not-a-uuid", &token).await.problem(404, "not_found");
}

async fn duplicate_skus_and_slugs_are_conflicts(app: TestApp) {
    let token = app.owner_token().await;
    app.create_product(&token, product_body("Mug", "MUG", &[900], None, json!({}))).await;
    let body = app
        .admin_post("/v1/admin/products", &token, product_body("Other Mug", "MUG", &[900, 1000], None, json!({})))
        .await
        .problem(409, "duplicate_sku");
    assert_eq!(Answer::fields(&body), ["variants[0].sku"]);
    let body = app
        .admin_post("/v1/admin/products", &token, product_body("Mug", "CUP", &[900], None, json!({})))
        .await
        .problem(409, "duplicate_slug");
    assert_eq!(Answer::fields(&body), ["slug"]);
    // Neither attempt left anything behind.
    assert_eq!(app.admin_get("/v1/admin/products", &token).await.expect(200)["items"].as_array().unwrap().len(), 1);
}

async fn variants_are_added_and_repriced_within_the_matrix(app: TestApp) {
    let token = app.owner_token().await;
    let p = app.create_product(&token, product_body("Tee", "TEE", &[1500], None, json!({}))).await;
    let id = p["id"].as_str().unwrap();
    // S1 is not a declared size.
    let body = app
        .admin_post(
            &format!("/v1/admin/products/{id}/variants"),
            &token,
            json!({"sku": "TEE-S1", "options": {"size": "S1"}, "prices": [{"currency": "EUR", "amount": 1600}]}),
        )
        .await
        .problem(422, "validation_failed");
    assert_eq!(Answer::fields(&body), ["options"]);
    // The same selection as an existing variant.
    app.admin_post(
        &format!("/v1/admin/products/{id}/variants"),
        &token,
        json!({"sku": "TEE-X", "options": {"size": "S0"}, "prices": [{"currency": "EUR", "amount": 1600}]}),
    )
    .await
    .problem(422, "validation_failed");
    let variant_id = p["variants"][0]["id"].as_str().unwrap();
    let updated = app
        .admin_patch(
            &format!("/v1/admin/variants/{variant_id}"),
            &token,
            json!({"prices": [{"currency": "EUR", "amount": 1200}], "barcode": "036000291452"}),
        )
        .await
        .expect(200);
    assert_eq!(updated["variants"][0]["barcode"], "036000291452");
    let list = app.get("/v1/products").await.expect(200);
    assert_eq!(list["items"][0]["price"]["min"], 1200);
}

/// Creates root → child → grandchild, with products at each level and one elsewhere.
async fn catalog_fixture(app: &TestApp, token: &str) -> (Value, Value, Value) {
    let root = app.create_category(token, "Clothing", None).await;
    let child = app.create_category(token, "Shirts", Some(root["id"].as_str().unwrap())).await;
    let grandchild = app.create_category(token, "Linen Shirts", Some(child["id"].as_str().unwrap())).await;
    let other = app.create_category(token, "Kitchen", None).await;
    let c = |v: &Value| v["id"].as_str().unwrap().to_owned();
    app.create_product(token, product_body("Alpha Shirt", "A", &[3000, 3500], Some(&c(&child)), json!({"colour": "red"}))).await;
    app.create_product(
        token,
        product_body("Beta Shirt", "B", &[1000], Some(&c(&grandchild)), json!({"colour": ["blue", "red"]})),
    )
    .await;
    app.create_product(token, product_body("Gamma Shirt", "C", &[2000], Some(&c(&root)), json!({"colour": "green"}))).await;
    app.create_product(token, product_body("Delta Pan", "D", &[2500], Some(&c(&other)), json!({"colour": "red"}))).await;
    let mut draft = product_body("Epsilon Shirt", "E", &[100], Some(&c(&child)), json!({}));
    draft["status"] = json!("draft");
    app.create_product(token, draft).await;
    (root, child, grandchild)
}

fn titles(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap().to_owned()).collect()
}

async fn shoppers_filter_sort_and_page_the_catalog(app: TestApp) {
    let token = app.owner_token().await;
    let (root, child, _) = catalog_fixture(&app, &token).await;
    let root_id = root["id"].as_str().unwrap();

    // A category matches its whole branch; drafts never show.
    let page = app.get(&format!("/v1/products?category={root_id}&sort=title_asc")).await.expect(200);
    assert_eq!(titles(&page), ["Alpha Shirt", "Beta Shirt", "Gamma Shirt"]);
    let page = app.get(&format!("/v1/products?category={}&sort=title_asc", child["slug"].as_str().unwrap())).await.expect(200);
    assert_eq!(titles(&page), ["Alpha Shirt", "Beta Shirt"]);

    // Price range on the "from" price, price sorts both ways.
    let page = app.get("/v1/products?price_min=1500&price_max=2600&sort=price_asc").await.expect(200);
    assert_eq!(titles(&page), ["Gamma Shirt", "Delta Pan"]);
    let page = app.get("/v1/products?sort=price_desc").await.expect(200);
    assert_eq!(titles(&page), ["Alpha Shirt", "Delta Pan", "Gamma Shirt", "Beta Shirt"]);

    // Attribute values: any of the values of one attribute, combined with the category.
    let page = app.get(&format!("/v1/products?attr.colour=red&category={root_id}&sort=title_asc")).await.expect(200);
    assert_eq!(titles(&page), ["Alpha Shirt", "Beta Shirt"]);
    let page = app.get("/v1/products?attr.colour=green&attr.colour=blue&sort=title_asc").await.expect(200);
    assert_eq!(titles(&page), ["Beta Shirt", "Gamma Shirt"]);

    // Newest first by default.
    let page = app.get("/v1/products").await.expect(200);
    assert_eq!(titles(&page), ["Delta Pan", "Gamma Shirt", "Beta Shirt", "Alpha Shirt"]);

    // Every sort pages through the same set without gaps or repeats.
    for sort in ["newest", "price_asc", "price_desc", "title_asc"] {
        let mut seen = Vec::new();
        let mut url = format!("/v1/products?sort={sort}&limit=1");
        loop {
            let page = app.get(&url).await.expect(200);
            seen.extend(titles(&page));
            match page["next_cursor"].as_str() {
                Some(c) => url = format!("/v1/products?sort={sort}&limit=1&cursor={c}"),
                None => break,
            }
        }
        let all = titles(&app.get(&format!("/v1/products?sort={sort}")).await.expect(200));
        assert_eq!(seen, all, "paging by {sort}");
        assert_eq!(seen.len(), 4);
    }

    // Whitelists: sort, parameters, cursor, limit, currency.
    app.get("/v1/products?sort=password_hash").await.problem(400, "invalid_sort");
    app.get("/v1/products?status=draft").await.problem(400, "unknown_parameter");
    app.get("/v1/products?cursor=garbage").await.problem(400, "invalid_cursor");
    let newest_cursor = app.get("/v1/products?limit=1").await.expect(200)["next_cursor"].as_str().unwrap().to_owned();
    app.get(&format!("/v1/products?sort=price_asc&cursor={newest_cursor}")).await.problem(400, "invalid_cursor");
    app.get("/v1/products?limit=1000").await.problem(400, "invalid_limit");
    app.get("/v1/products?currency=euro").await.problem(400, "invalid_currency");
    app.get("/v1/products?category=no-such-category").await.problem(404, "not_found");

    // Staff see drafts and can filter by status.
    let drafts = app.admin_get("/v1/admin/products?status=draft", &token).await.expect(200);
    assert_eq!(titles(&drafts), ["Epsilon Shirt"]);

    // The category tree.
    let tree = app.get("/v1/categories").await.expect(200);
    let clothing = tree["items"].as_array().unwrap().iter().find(|c| c["slug"] == "clothing").unwrap().clone();
    assert_eq!(clothing["children"][0]["children"][0]["name"], "Linen Shirts");
}

async fn pages_never_skip_or_repeat_when_sort_keys_tie(app: TestApp) {
    let token = app.owner_token().await;
    for i in 0..5 {
        let mut body = product_body("Same Title", &format!("TIE{i}"), &[1000], None, json!({}));
        body["slug"] = json!(format!("same-title-{i}"));
        app.create_product(&token, body).await;
    }
    // Titles compare by code point: upper case before lower case, on both databases.
    app.create_product(&token, product_body("apple", "LOWER", &[1000], None, json!({}))).await;
    app.create_product(&token, product_body("Zebra", "UPPER", &[1000], None, json!({}))).await;
    for sort in ["newest", "price_asc", "price_desc", "title_asc"] {
        let mut seen = Vec::new();
        let mut url = format!("/v1/products?sort={sort}&limit=2");
        loop {
            let page = app.get(&url).await.expect(200);
            seen.extend(page["items"].as_array().unwrap().iter().map(|p| p["slug"].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(c) => url = format!("/v1/products?sort={sort}&limit=2&cursor={c}"),
                None => break,
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((seen.len(), unique.len()), (7, 7), "{sort}: {seen:?}");
        if sort == "title_asc" {
            assert_eq!(seen.last().unwrap(), "apple");
            assert_eq!(seen[5], "zebra");
        }
    }
}

async fn catalog_reads_carry_etags_and_answer_304(app: TestApp) {
    let token = app.owner_token().await;
    app.create_product(&token, product_body("Cap", "CAP", &[900], None, json!({}))).await;
    let first = app.get("/v1/products/cap").await;
    assert_eq!(first.status, 200);
    let etag = first.headers.get("etag").unwrap().to_str().unwrap().to_owned();
    assert!(first.headers.get("cache-control").unwrap().to_str().unwrap().contains("public"));
    let res = app.client.get(app.url("/v1/products/cap")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(res.status(), 304);
    // A change makes the old tag stale.
    let id = first.body["id"].as_str().unwrap();
    app.admin_patch(&format!("/v1/admin/products/{id}"), &token, json!({"title": "Cap 2"})).await.expect(200);
    let res = app.client.get(app.url("/v1/products/cap")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // Admin answers are never cached.
    let admin = app.admin_get(&format!("/v1/admin/products/{id}"), &token).await;
    assert_eq!(admin.headers.get("cache-control").unwrap(), "no-store");
}

async fn category_moves_that_would_create_a_cycle_are_refused(app: TestApp) {
    let token = app.owner_token().await;
    let a = app.create_category(&token, "A", None).await;
    let b = app.create_category(&token, "B", Some(a["id"].as_str().unwrap())).await;
    let c = app.create_category(&token, "C", Some(b["id"].as_str().unwrap())).await;
    let a_id = a["id"].as_str().unwrap();
    let body = app
        .admin_patch(&format!("/v1/admin/categories/{a_id}"), &token, json!({"parent_id": c["id"]}))
        .await
        .problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["code"], "category_cycle");
    assert_eq!(body["errors"][0]["field"], "parent_id");
    app.admin_patch(&format!("/v1/admin/categories/{a_id}"), &token, json!({"parent_id": a_id}))
        .await
        .problem(422, "validation_failed");
    // Moving C to the root is fine, and `null` means root.
    let moved = app
        .admin_patch(&format!("/v1/admin/categories/{}", c["id"].as_str().unwrap()), &token, json!({"parent_id": null}))
        .await
        .expect(200);
    assert_eq!(moved["parent_id"], Value::Null);
    // A category with children is not deleted; a leaf is.
    app.send(Method::DELETE, &format!("/v1/admin/categories/{a_id}"), Some(&token), None)
        .await
        .problem(409, "category_not_empty");
    app.send(Method::DELETE, &format!("/v1/admin/categories/{}", b["id"].as_str().unwrap()), Some(&token), None)
        .await
        .expect(204);
    // Duplicate slug.
    app.admin_post("/v1/admin/categories", &token, json!({"name": "A"})).await.problem(409, "duplicate_slug");
    // Unknown parent.
    let body = app
        .admin_post("/v1/admin/categories", &token, json!({"name": "Z", "parent_id": uuid::Uuid::now_v7()}))
        .await
        .problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["code"], "unknown_category");
}

on_both_databases!(
    a_product_is_created_with_its_variants_and_published,
    invalid_products_name_every_bad_field_and_write_nothing,
    bad_bodies_are_problems_not_crashes,
    duplicate_skus_and_slugs_are_conflicts,
    variants_are_added_and_repriced_within_the_matrix,
    shoppers_filter_sort_and_page_the_catalog,
    pages_never_skip_or_repeat_when_sort_keys_tie,
    catalog_reads_carry_etags_and_answer_304,
    category_moves_that_would_create_a_cycle_are_refused,
);
