use std::io::Cursor;

use mercato::ops::import::import_jsonl;
use serde_json::json;

use crate::helpers::{TestApp, product_body};

fn jsonl(lines: &[String]) -> String {
    lines.join("\n")
}

async fn importing_the_same_file_twice_changes_nothing(app: TestApp) {
    let token = app.owner_token().await;
    let category = app.create_category(&token, "Home", None).await;
    let cat = category["id"].as_str().unwrap();
    let lines = vec![
        product_body("Teapot", "TP", &[2900, 3100], Some(cat), json!({"material": "ceramic"})).to_string(),
        product_body("Kettle", "KT", &[4900], Some(cat), json!({})).to_string(),
        json!({"title": "Broken", "variants": [{"sku": "bad sku", "prices": []}]}).to_string(),
        "{not json".to_owned(),
    ];
    let file = jsonl(&lines);
    let report = import_jsonl(&app.store, Cursor::new(file.clone()), 4, false).await.unwrap();
    assert_eq!((report.created, report.updated, report.unchanged), (2, 0, 0));
    assert_eq!(report.failed.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [3, 4]);
    assert!(report.failed[0].1.contains("variants[0].sku"), "{:?}", report.failed);

    let audit_before =
        app.admin_get("/v1/admin/audit-log?limit=200", &token).await.expect(200)["items"].as_array().unwrap().len();
    let again = import_jsonl(&app.store, Cursor::new(file), 4, false).await.unwrap();
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 2));
    let audit_after = app.admin_get("/v1/admin/audit-log?limit=200", &token).await.expect(200)["items"].as_array().unwrap().len();
    assert_eq!(audit_before, audit_after, "an unchanged import writes no audit rows");

    // A changed price updates the product owning the SKU instead of duplicating it.
    let changed = product_body("Teapot", "TP", &[2500, 3100], Some(cat), json!({"material": "ceramic"})).to_string();
    let third = import_jsonl(&app.store, Cursor::new(changed), 1, false).await.unwrap();
    assert_eq!((third.created, third.updated), (0, 1));
    let list = app.get("/v1/products?sort=title_asc").await.expect(200);
    let titles: Vec<_> = list["items"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Kettle", "Teapot"]);
    assert_eq!(list["items"][1]["price"]["min"], 2500);
}

on_both_databases!(importing_the_same_file_twice_changes_nothing);
