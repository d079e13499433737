use mercato::domain::rbac::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

async fn refresh_tokens_rotate_and_a_replayed_one_ends_the_session(app: TestApp) {
    let email = app.create_staff(Role::CatalogManager).await;
    let first = app.login(&email).await;
    assert_eq!(first["token_type"], "Bearer");
    let r1 = first["refresh_token"].as_str().unwrap();

    let second = app.send(Method::POST, "/v1/admin/auth/refresh", None, Some(json!({"refresh_token": r1}))).await.expect(200);
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2);
    app.admin_get("/v1/admin/products", second["access_token"].as_str().unwrap()).await.expect(200);

    // Replaying the spent token is treated as theft: it fails, and so does its successor.
    app.send(Method::POST, "/v1/admin/auth/refresh", None, Some(json!({"refresh_token": r1})))
        .await
        .problem(401, "refresh_token_reused");
    app.send(Method::POST, "/v1/admin/auth/refresh", None, Some(json!({"refresh_token": r2})))
        .await
        .problem(401, "invalid_refresh_token");

    // Logout ends a fresh session too.
    let third = app.login(&email).await;
    let r3 = third["refresh_token"].as_str().unwrap();
    app.send(Method::POST, "/v1/admin/auth/logout", None, Some(json!({"refresh_token": r3}))).await.expect(204);
    app.send(Method::POST, "/v1/admin/auth/refresh", None, Some(json!({"refresh_token": r3})))
        .await
        .problem(401, "invalid_refresh_token");
    app.send(Method::POST, "/v1/admin/auth/refresh", None, Some(json!({"refresh_token": "made-up"})))
        .await
        .problem(401, "invalid_refresh_token");

    // Refresh tokens are stored hashed, never as given.
    let row = sqlx::query("SELECT COUNT(*) AS n FROM refresh_tokens WHERE token_hash = $1")
        .bind(r3)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&row, "n"), 0);
}

async fn wrong_passwords_and_unknown_accounts_look_the_same(app: TestApp) {
    let email = app.create_staff(Role::Support).await;
    let wrong =
        app.send(Method::POST, "/v1/admin/auth/login", None, Some(json!({"email": email, "password": "not the password"}))).await;
    let unknown = app
        .send(Method::POST, "/v1/admin/auth/login", None, Some(json!({"email": "nobody@example.com", "password": PASSWORD})))
        .await;
    let a = wrong.problem(401, "invalid_credentials");
    let b = unknown.problem(401, "invalid_credentials");
    assert_eq!(a, b);
}

async fn only_valid_staff_tokens_open_the_admin_api(app: TestApp) {
    app.send(Method::GET, "/v1/admin/products", None, None).await.problem(401, "missing_token");
    app.admin_get("/v1/admin/products", "not.a.jwt").await.problem(401, "invalid_token");
    // Correctly signed, but for the storefront audience.
    let customer = app.customer_token(uuid::Uuid::now_v7());
    app.admin_get("/v1/admin/products", &customer).await.problem(401, "invalid_token");
    // A staff token for an account that does not exist (e.g. deleted).
    let ghost = mercato::auth::tokens::TokenKeys::new(crate::helpers::JWT_SECRET, 600, 3600)
        .issue(mercato::auth::tokens::Audience::Staff, uuid::Uuid::now_v7(), Some("owner"))
        .unwrap();
    app.admin_get("/v1/admin/products", &ghost).await.problem(401, "invalid_token");
}

async fn staff_accounts_are_created_by_owners_with_checked_input(app: TestApp) {
    let owner = app.owner_token().await;
    let body = app
        .admin_post("/v1/admin/staff", &owner, json!({"email": "not-an-email", "role": "support", "password": "short"}))
        .await
        .problem(422, "validation_failed");
    assert_eq!(crate::helpers::Answer::fields(&body), ["email", "password"]);
    app.admin_post("/v1/admin/staff", &owner, json!({"email": "ann@example.com", "role": "wizard", "password": PASSWORD}))
        .await
        .problem(422, "validation_failed");
    let ann = app
        .admin_post("/v1/admin/staff", &owner, json!({"email": "Ann@Example.com", "role": "support", "password": PASSWORD}))
        .await
        .expect(201);
    assert_eq!(ann["email"], "ann@example.com");
    assert!(ann.get("password_hash").is_none());
    app.admin_post("/v1/admin/staff", &owner, json!({"email": "ann@example.com", "role": "analyst", "password": PASSWORD}))
        .await
        .problem(409, "duplicate_email");
    let list = app.admin_get("/v1/admin/staff", &owner).await.expect(200);
    assert!(list["items"].as_array().unwrap().iter().any(|s| s["email"] == "ann@example.com"));
    let login = app
        .send(Method::POST, "/v1/admin/auth/login", None, Some(json!({"email": "ANN@example.com", "password": PASSWORD})))
        .await;
    login.expect(200);
}

on_both_databases!(
    refresh_tokens_rotate_and_a_replayed_one_ends_the_session,
    wrong_passwords_and_unknown_accounts_look_the_same,
    only_valid_staff_tokens_open_the_admin_api,
    staff_accounts_are_created_by_owners_with_checked_input,
);
