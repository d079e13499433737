//! The role × route matrix, derived from the OpenAPI document: every admin route
//! declares the permission it needs as the scope of `staff_token`, and every role
//! must get 403 exactly where it lacks that permission.

use mercato::domain::rbac::{Permission, Role};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// `(method, path with ids filled in, required permission)` for every admin operation.
fn admin_operations(spec: &Value) -> Vec<(Method, String, Option<Permission>)> {
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/admin") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let scope = op["security"]
                .as_array()
                .and_then(|s| s.iter().find_map(|req| req["staff_token"].as_array()))
                .and_then(|scopes| scopes.first())
                .and_then(|s| s.as_str())
                .map(|s| Permission::from_scope(s).unwrap_or_else(|| panic!("{method} {path}: unknown scope {s}")));
            let filled = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { seg.to_owned() })
                .collect::<Vec<_>>()
                .join("/");
            ops.push((method.to_uppercase().parse().unwrap(), filled, scope));
        }
    }
    ops
}

async fn every_role_is_refused_exactly_where_it_lacks_the_permission(app: TestApp) {
    let spec = app.get("/v1/openapi.json").await.expect(200);
    let ops = admin_operations(&spec);
    assert!(ops.len() >= 28, "admin operations found: {}", ops.len());
    for (method, path, permission) in &ops {
        if path.starts_with("/v1/admin/auth/") {
            assert!(permission.is_none(), "{method} {path} must not need a permission");
            continue;
        }
        assert!(permission.is_some(), "{method} {path} declares no permission");
        // Without a token: 401, whatever the route.
        let anonymous = app.send(method.clone(), path, None, Some(json!({}))).await;
        assert_eq!(anonymous.status, 401, "{method} {path} without a token: {}", anonymous.body);
    }
    for role in Role::ALL {
        let token = app.token_for(role).await;
        for (method, path, permission) in &ops {
            let Some(permission) = permission else { continue };
            // An empty body: a permitted role gets past authorisation and fails later
            // (404 for the random id, 422 for the body), a refused one gets 403 first.
            let answer = app.send(method.clone(), path, Some(&token), Some(json!({}))).await;
            if role.grants(*permission) {
                assert_ne!(answer.status, 403, "{role:?} {method} {path}: {}", answer.body);
                assert!(answer.status.as_u16() < 500, "{role:?} {method} {path}: {}", answer.body);
            } else {
                let body = answer.problem(403, "forbidden");
                assert_eq!(body["required_permission"], permission.scope(), "{role:?} {method} {path}");
            }
        }
    }
}

async fn a_demoted_member_loses_access_on_the_next_request(app: TestApp) {
    let owner = app.owner_token().await;
    let email = app.create_staff(Role::CatalogManager).await;
    let session = app.login(&email).await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    app.admin_post("/v1/admin/categories", &token, json!({"name": "Hats"})).await.expect(201);
    let staff = app.admin_get("/v1/admin/staff", &owner).await.expect(200);
    let member = staff["items"].as_array().unwrap().iter().find(|s| s["email"] == email.as_str()).unwrap().clone();
    let path = format!("/v1/admin/staff/{}", member["id"].as_str().unwrap());

    let demoted = app.admin_patch(&path, &owner, json!({"role": "analyst"})).await.expect(200);
    assert_eq!(demoted["role"], "analyst");
    app.admin_post("/v1/admin/categories", &token, json!({"name": "Caps"})).await.problem(403, "forbidden");

    app.admin_patch(&path, &owner, json!({"active": false})).await.expect(200);
    app.admin_get("/v1/admin/products", &token).await.problem(401, "invalid_token");
    // Deactivation also ends the member's sessions, and login is refused.
    let refresh = json!({"refresh_token": session["refresh_token"]});
    app.send(Method::POST, "/v1/admin/auth/refresh", None, Some(refresh)).await.problem(401, "invalid_refresh_token");
    let login = json!({"email": email, "password": crate::helpers::PASSWORD});
    app.send(Method::POST, "/v1/admin/auth/login", None, Some(login)).await.problem(401, "invalid_credentials");

    // Nobody locks themselves out.
    let me = staff["items"].as_array().unwrap().iter().find(|s| s["role"] == "owner").unwrap()["id"].as_str().unwrap().to_owned();
    app.admin_patch(&format!("/v1/admin/staff/{me}"), &owner, json!({"role": "analyst"}))
        .await
        .problem(409, "cannot_change_self");
    app.admin_patch(&format!("/v1/admin/staff/{}", uuid::Uuid::now_v7()), &owner, json!({"active": false}))
        .await
        .problem(404, "not_found");
}

async fn every_admin_write_is_in_the_audit_log_with_before_and_after(app: TestApp) {
    let owner = app.owner_token().await;
    let analyst = app.token_for(Role::Analyst).await;
    let product = app.create_product(&owner, crate::helpers::product_body("Scarf", "SC", &[2500], None, json!({}))).await;
    let id = product["id"].as_str().unwrap();
    app.admin_patch(&format!("/v1/admin/products/{id}"), &owner, json!({"title": "Wool Scarf"})).await.expect(200);
    let category = app.create_category(&owner, "Accessories", None).await;

    let log = app.admin_get(&format!("/v1/admin/audit-log?entity_type=product&entity_id={id}"), &analyst).await.expect(200);
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action"], "product.update");
    assert_eq!(items[0]["before"]["title"], "Scarf");
    assert_eq!(items[0]["after"]["title"], "Wool Scarf");
    assert_eq!(items[0]["actor_type"], "staff");
    assert!(items[0]["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(items[1]["action"], "product.create");
    assert_eq!(items[1]["before"], Value::Null);

    let all = app.admin_get("/v1/admin/audit-log?limit=2", &analyst).await.expect(200);
    assert_eq!(all["items"][0]["entity_id"], category["id"]);
    let next = all["next_cursor"].as_str().unwrap();
    let older = app.admin_get(&format!("/v1/admin/audit-log?limit=50&cursor={next}"), &analyst).await.expect(200);
    // The staff accounts made by the test, then the product create.
    assert!(older["items"].as_array().unwrap().iter().any(|e| e["action"] == "product.create"));
    app.admin_get("/v1/admin/audit-log?cursor=nope", &analyst).await.problem(400, "invalid_cursor");

    // Every other kind of admin write is there too, with its actor.
    let variant_id = product["variants"][0]["id"].as_str().unwrap();
    app.admin_patch(
        &format!("/v1/admin/variants/{variant_id}"),
        &owner,
        json!({"prices": [{"currency": "EUR", "amount": 2000}]}),
    )
    .await
    .expect(200);
    app.admin_post(
        &format!("/v1/admin/products/{id}/variants"),
        &owner,
        json!({"sku": "SC-S1", "options": {"size": "S1"}, "prices": [{"currency": "EUR", "amount": 1}]}),
    )
    .await
    .problem(422, "validation_failed");
    let cat_id = category["id"].as_str().unwrap();
    app.admin_patch(&format!("/v1/admin/categories/{cat_id}"), &owner, json!({"name": "Extras"})).await.expect(200);
    app.send(Method::DELETE, &format!("/v1/admin/categories/{cat_id}"), Some(&owner), None).await.expect(204);
    let ann = app
        .admin_post(
            "/v1/admin/staff",
            &owner,
            json!({"email": "ann@example.com", "role": "support", "password": crate::helpers::PASSWORD}),
        )
        .await
        .expect(201);
    app.admin_patch(&format!("/v1/admin/staff/{}", ann["id"].as_str().unwrap()), &owner, json!({"role": "analyst"}))
        .await
        .expect(200);
    let recent = app.admin_get("/v1/admin/audit-log?limit=5", &analyst).await.expect(200);
    let actions: Vec<&str> = recent["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["staff.update", "staff.create", "category.delete", "category.update", "variant.update"]);
    assert_eq!(recent["items"][0]["before"]["role"], "support");
    assert_eq!(recent["items"][0]["after"]["role"], "analyst");
    assert_eq!(recent["items"][2]["after"], Value::Null);
    assert_eq!(recent["items"][4]["after"]["variants"][0]["prices"][0]["amount"], 2000);
    assert!(recent["items"][1]["after"].get("password_hash").is_none());
    app.admin_get("/v1/admin/audit-log?bogus=1", &analyst).await.problem(400, "invalid_query");
}

on_both_databases!(
    every_role_is_refused_exactly_where_it_lacks_the_permission,
    a_demoted_member_loses_access_on_the_next_request,
    every_admin_write_is_in_the_audit_log_with_before_and_after,
);
