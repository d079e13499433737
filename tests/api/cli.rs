//! The `mercato` binary as an operator uses it: staff creation, serving with a
//! graceful stop on SIGTERM, import, and the refusal of unsafe settings.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{PASSWORD, product_body};

struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("mercato-cli-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mercato(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mercato"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MERCATO_DATA_DIR", data)
        .env("MERCATO_LISTEN", "127.0.0.1:0")
        .env("MERCATO_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    cmd
}

fn create_staff(data: &Path, email: &str, role: &str, password: &str) -> std::process::Output {
    let mut child = mercato(data)
        .args(["admin", "create-staff", "--email", email, "--role", role, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn an_owner_created_from_the_cli_logs_in_and_sigterm_stops_the_server() {
    let data = DataDir::new();
    let out = create_staff(&data.0, "boss@example.com", "owner", PASSWORD);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad_role = create_staff(&data.0, "x@example.com", "wizard", PASSWORD);
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role `wizard`"));
    let short = create_staff(&data.0, "y@example.com", "support", "short");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("password: must be at least 12 characters"));

    let mut server = mercato(&data.0).args(["serve", "--demo", "--demo-products", "30"]).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = server.stderr.take().unwrap();
    // The JSON log line `listening` carries the port the OS chose; the rest of the
    // log is kept (and the pipe drained) until the process exits.
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
            if event["fields"]["message"] == "listening" {
                let _ = port_tx.send(event["fields"]["port"].as_u64().unwrap());
            }
            lines.push(line);
        }
        lines
    });
    let port = tokio::task::spawn_blocking(move || {
        port_rx.recv_timeout(Duration::from_secs(60)).expect("the server says where it listens")
    })
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let login = client
        .post(format!("{base}/v1/admin/auth/login"))
        .json(&json!({"email": "boss@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let products: serde_json::Value =
        client.get(format!("{base}/v1/products?limit=100")).send().await.unwrap().json().await.unwrap();
    assert_eq!(products["items"].as_array().unwrap().len(), 27, "30 demo products, every tenth a draft");

    let killed = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), tokio::task::spawn_blocking(move || server.wait().unwrap()))
        .await
        .expect("the server stops after SIGTERM")
        .unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{status:?}: {log:#?}");
    assert!(log.iter().any(|l| l.contains("shutdown signal received")), "{log:#?}");
    // Every request was logged with its request id.
    assert!(log.iter().any(|l| l.contains("\"request_id\"")), "{log:#?}");
}

#[test]
fn the_import_command_reports_each_bad_line_and_fails() {
    let data = DataDir::new();
    let file = data.0.join("products.jsonl");
    let good = product_body("Teapot", "TP", &[2900], None, json!({})).to_string();
    std::fs::write(&file, format!("{good}\n{{\"title\": \"No variants\", \"variants\": []}}\n")).unwrap();
    let out = mercato(&data.0).arg("import").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("1 created, 0 updated, 0 unchanged, 1 failed"), "{stderr}");
    assert!(stderr.contains("line 2: variants: a product needs at least one variant"), "{stderr}");
    // The good line landed; importing again changes nothing.
    std::fs::write(&file, format!("{good}\n")).unwrap();
    let again = mercato(&data.0).arg("import").arg(&file).output().unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 created, 0 updated, 1 unchanged, 0 failed"));
}

#[tokio::test]
async fn reconcile_stock_reports_through_its_exit_code() {
    let data = DataDir::new();
    let seeded = mercato(&data.0).args(["seed", "--demo", "--products", "20"]).output().unwrap();
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
    let ok = mercato(&data.0).args(["admin", "reconcile-stock"]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stderr).contains("the ledger matches"));
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(report["checked"].as_i64().unwrap() > 20, "{report}");
    // Tamper with one level behind the ledger's back.
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", data.0.join("mercato.db").display());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::Executor::execute(&mut conn, "UPDATE stock_levels SET on_hand = on_hand + 1 WHERE rowid = 1").await.unwrap();
    drop(conn);
    let bad = mercato(&data.0).args(["admin", "reconcile-stock"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("1 of"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn settings_come_from_mercato_toml_and_the_environment_wins() {
    let data = DataDir::new();
    let file = data.0.join("mercato.toml");
    std::fs::write(&file, "default_currency = \"euro\"\nmax_line_quantity = 5\n").unwrap();
    let out = mercato(&data.0).arg("serve").env("MERCATO_CONFIG", &file).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MERCATO_DEFAULT_CURRENCY `euro` is not an ISO 4217 code"), "{stderr}");
    // The environment overrides the file.
    let out =
        mercato(&data.0).arg("migrate").env("MERCATO_CONFIG", &file).env("MERCATO_DEFAULT_CURRENCY", "USD").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn postgres_without_a_jwt_secret_refuses_to_start() {
    let data = DataDir::new();
    let out = mercato(&data.0).arg("serve").env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unsafe configuration") && stderr.contains("MERCATO_JWT_SECRET"), "{stderr}");
}
