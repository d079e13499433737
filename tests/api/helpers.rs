//! `spawn_app`: a fresh database (a SQLite file or a new PostgreSQL database), the
//! real application bound to port 0, and a typed client for it.

use std::path::PathBuf;

use mercato::auth::tokens::{Audience, TokenKeys};
use mercato::config::Settings;
use mercato::domain::rbac::Role;
use mercato::ops::staff::NewStaffInput;
use mercato::startup::Application;
use mercato::store::Store;
use mercato::store::audit::Actor;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per database for each listed `async fn(TestApp)`.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
                    let cleanup = app.cleanup();
                    super::$name(app).await;
                    cleanup.run().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
                    let cleanup = app.cleanup();
                    super::$name(app).await;
                    cleanup.run().await;
                }
            )*
        }
    };
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Store,
    /// The shop's job handlers, for tests that run the queue themselves.
    pub jobs: mercato::jobs::Registry,
    pub settings: Settings,
    database: Database,
}

#[derive(Clone)]
enum Database {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

/// Removes the test's database once the test body has passed.
pub struct Cleanup {
    store: Store,
    database: Database,
}

impl Cleanup {
    pub async fn run(self) {
        self.store.close().await;
        match self.database {
            Database::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Database::Postgres { admin_url, name } => {
                if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin_url).await {
                    let _ = conn.execute(sqlx::AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))).await;
                }
            }
        }
    }
}

pub fn test_settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".into(),
        jwt_secret: Some(JWT_SECRET.into()),
        rate_limit_reads_per_second: 10_000,
        rate_limit_writes_per_second: 10_000,
        rate_limit_logins_per_minute: 10_000,
        rate_limit_code_attempts_per_minute: 10_000,
        database_max_connections: 8,
        test_payment_webhook_secret: Some(crate::checkout::WEBHOOK_SECRET.into()),
        test_payment_latency_ms: 50,
        // Tests start the job workers they need, so nothing races them for a job.
        workers: 0,
        housekeeping: false,
        ..Settings::default()
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, test_settings()).await
}

fn postgres_admin_url() -> String {
    std::env::var("MERCATO_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub async fn spawn_app_with(backend: Backend, mut settings: Settings) -> TestApp {
    sqlx::any::install_default_drivers();
    if std::env::var_os("TEST_LOG").is_some() {
        mercato::telemetry::init("pretty");
    }
    let dir = std::env::temp_dir().join(format!("mercato-test-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    settings.data_dir = dir.clone();
    let database = match backend {
        Backend::Sqlite => {
            settings.database_url = Some(format!("sqlite://{}?mode=rwc", dir.join("mercato.db").display()));
            Database::Sqlite(dir)
        }
        Backend::Postgres => {
            let admin_url = postgres_admin_url();
            let name = format!("mercato_test_{}", Uuid::now_v7().simple());
            let mut conn = sqlx::AnyConnection::connect(&admin_url).await.unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is required for the PostgreSQL half of the tests and is not reachable at {admin_url}: {e}. \
                     Start it (see README, 'Running the tests') or point MERCATO_TEST_POSTGRES_URL at one."
                )
            });
            conn.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#))).await.expect("create test database");
            let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin_url.clone());
            settings.database_url = Some(format!("{base}/{name}"));
            Database::Postgres { admin_url, name }
        }
    };
    let app = Application::build(&settings).await.expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store().clone();
    let jobs = app.job_registry().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        address,
        client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client"),
        store,
        jobs,
        settings,
        database,
    }
}

/// An answer: status, headers and the JSON body (or `Null`).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// Asserts a problem+json answer with this status and `type`, and returns it.
    #[track_caller]
    pub fn problem(self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        let ct = self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(ct, "application/problem+json", "content type of {}", self.body);
        assert_eq!(self.body["type"], kind, "problem type of {}", self.body);
        self.body
    }

    /// The `field` of every error in a problem document.
    pub fn fields(body: &Value) -> Vec<String> {
        body["errors"]
            .as_array()
            .map(|a| a.iter().map(|e| e["field"].as_str().unwrap_or("").to_owned()).collect())
            .unwrap_or_default()
    }
}

impl TestApp {
    /// A second server on the same database, as a second `mercato serve` process
    /// would be: its own pool, order batches and sold-out memory. `settings`
    /// defaults to this one's.
    pub async fn another_instance(&self, settings: Option<Settings>) -> TestApp {
        let settings = Settings {
            database_url: self.settings.database_url.clone(),
            // Every instance keeps its own search index.
            search_path: Some(self.settings.data_dir.join(format!("search-{}", Uuid::now_v7().simple()))),
            ..settings.unwrap_or(self.settings.clone())
        };
        let app = Application::build(&settings).await.expect("application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let (store, jobs) = (app.store().clone(), app.job_registry().clone());
        tokio::spawn(app.run_until(std::future::pending()));
        TestApp { address, client: self.client.clone(), store, jobs, settings, database: self.database.clone() }
    }

    /// Runs due jobs until none is left (retries due at once with `retry_base` zero).
    pub async fn drain_jobs(&self) -> usize {
        let settings = mercato::jobs::WorkerSettings {
            retry_base: std::time::Duration::ZERO,
            retry_cap: std::time::Duration::ZERO,
            ..mercato::jobs::WorkerSettings::default()
        };
        let mut ran = 0;
        loop {
            match mercato::jobs::run_once(&self.store, &self.jobs, "test-worker", &settings).await.expect("queue") {
                0 => return ran,
                n => ran += n,
            }
        }
    }

    pub fn cleanup(&self) -> Cleanup {
        Cleanup { store: self.store.clone(), database: self.database.clone() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request sent");
        answer(res).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, None).await
    }

    pub async fn admin_get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn admin_post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn admin_patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(token), Some(body)).await
    }

    /// Creates a staff account with `role` (through the same use case as the CLI).
    pub async fn create_staff(&self, role: Role) -> String {
        let email = format!("{}-{}@example.com", role.as_str(), Uuid::now_v7().simple());
        let input = NewStaffInput { email: email.clone(), name: "Test".into(), role, password: PASSWORD.into() };
        mercato::ops::staff::create_staff(&self.store, input, &Actor::cli()).await.expect("staff created");
        email
    }

    pub async fn login(&self, email: &str) -> Value {
        self.send(Method::POST, "/v1/admin/auth/login", None, Some(json!({"email": email, "password": PASSWORD})))
            .await
            .expect(200)
    }

    /// An access token for a new staff member with `role`.
    pub async fn token_for(&self, role: Role) -> String {
        let email = self.create_staff(role).await;
        self.login(&email).await["access_token"].as_str().expect("access token").to_owned()
    }

    pub async fn owner_token(&self) -> String {
        self.token_for(Role::Owner).await
    }

    /// A correctly signed token for another audience, to prove audiences are enforced.
    pub fn customer_token(&self, subject: Uuid) -> String {
        TokenKeys::new(JWT_SECRET, 600, 3600).issue(Audience::Customer, subject, None).expect("token")
    }

    pub async fn create_category(&self, token: &str, name: &str, parent: Option<&str>) -> Value {
        self.admin_post("/v1/admin/categories", token, json!({"name": name, "parent_id": parent})).await.expect(201)
    }

    pub async fn create_product(&self, token: &str, body: Value) -> Value {
        self.admin_post("/v1/admin/products", token, body).await.expect(201)
    }
}

pub async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Answer { status, headers, body }
}

/// A published product in `category` with one variant per price given.
pub fn product_body(title: &str, sku_prefix: &str, prices_eur: &[i64], category: Option<&str>, attributes: Value) -> Value {
    let sizes: Vec<String> = (0..prices_eur.len()).map(|i| format!("S{i}")).collect();
    let variants: Vec<Value> = prices_eur
        .iter()
        .zip(&sizes)
        .map(|(p, s)| json!({"sku": format!("{sku_prefix}-{s}"), "options": {"size": s}, "prices": [{"currency": "EUR", "amount": p}]}))
        .collect();
    json!({
        "title": title,
        "status": "published",
        "options": [{"name": "size", "values": sizes}],
        "variants": variants,
        "category_ids": category.map(|c| vec![c]).unwrap_or_default(),
        "attributes": attributes,
    })
}
