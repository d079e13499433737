//! E-mail notifications against a real SMTP server (aiosmtpd, started by the
//! test) and the outbox folder: messages arrive once with their text and HTML
//! parts, refusals are dead letters, temporary failures are retried, and the
//! password reset e-mail's link resets the password exactly once.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mercato::jobs::{JobHandler, Registry, WorkerSettings, run_once};
use mercato::notify::{EMAIL_SEND, Template, enqueue_email};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp};

/// The SMTP sink (`tests/support/smtp_sink.py`) as a child process, killed on drop.
struct SmtpSink {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl SmtpSink {
    /// Starts the sink, or returns `None` (after saying why) when aiosmtpd is not
    /// installed. Under CI a missing aiosmtpd fails the test: CI installs it.
    fn start() -> Option<Self> {
        let importable =
            Command::new("python3").args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        if !importable {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "aiosmtpd is missing but CI=true: install it (`python3 -m pip install aiosmtpd==1.4.6`, as .ci/run does)"
            );
            eprintln!(
                "SKIPPED: python3 with aiosmtpd is not available (`python3 -m pip install aiosmtpd==1.4.6` to run this test)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = std::env::temp_dir().join(format!("mercato-smtp-{}", Uuid::now_v7().simple()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        // The sink says `ready` once it accepts connections (or exits on failure).
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("sink output");
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Some(Self { child, port, dir })
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in arrival order.
    fn messages(&self) -> Vec<Value> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
            .collect();
        files.sort();
        files.iter().map(|(_, p)| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A message split into what a mail client shows: headers, the text part and the HTML part.
struct Mail {
    headers: String,
    text: String,
    html: String,
}

fn parse_mail(raw: &str) -> Mail {
    let raw = raw.replace("\r\n", "\n");
    let (headers, body) = raw.split_once("\n\n").expect("headers and body");
    let boundary = headers.split("boundary=\"").nth(1).and_then(|b| b.split('"').next()).expect("a multipart message");
    let (mut text, mut html) = (String::new(), String::new());
    for part in body.split(&format!("--{boundary}")) {
        let Some((part_headers, content)) = part.trim_start_matches('\n').split_once("\n\n") else { continue };
        let lower = part_headers.to_lowercase();
        let decoded = if lower.contains("content-transfer-encoding: quoted-printable") {
            decode_quoted_printable(content)
        } else if lower.contains("content-transfer-encoding: base64") {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(content.replace('\n', "")).expect("base64 part");
            String::from_utf8(bytes).expect("utf-8 part")
        } else {
            content.to_owned()
        };
        if lower.contains("content-type: text/plain") {
            text = decoded;
        } else if lower.contains("content-type: text/html") {
            html = decoded;
        }
    }
    Mail { headers: headers.to_owned(), text, html }
}

fn decode_quoted_printable(s: &str) -> String {
    let joined = s.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(b) = joined.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 part")
}

fn quick() -> WorkerSettings {
    WorkerSettings {
        lease: Duration::from_secs(30),
        idle_poll: Duration::from_millis(20),
        batch: 10,
        retry_base: Duration::ZERO,
        retry_cap: Duration::ZERO,
        ..WorkerSettings::default()
    }
}

/// The job handlers as `mercato serve` registers them, with `SMTP_URL` set to `smtp_url`.
fn registry(app: &TestApp, smtp_url: Option<String>) -> Registry {
    let settings = mercato::config::Settings { smtp_url, ..app.settings.clone() };
    let providers = mercato::startup::payment_providers(&settings, Default::default()).expect("providers");
    mercato::startup::job_registry(&settings, &app.address, &providers).expect("registry")
}

/// Runs due jobs until none is left (bounded).
async fn drain(app: &TestApp, registry: &Registry) {
    for _ in 0..20 {
        if run_once(&app.store, registry, "test-worker", &quick()).await.unwrap() == 0 {
            return;
        }
    }
    panic!("the queue did not drain");
}

async fn enqueue(app: &TestApp, template: Template, to: &str, context: Value, dedupe_key: &str) -> Uuid {
    let mut tx = app.store.begin().await.unwrap();
    let id = enqueue_email(&mut tx, template, to, context, dedupe_key).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// A real order (placed and paid through the API) as the API shows it.
async fn placed_order(app: &TestApp) -> Value {
    let staff = app.owner_token().await;
    crate::checkout::german_rates(app, &staff).await;
    crate::checkout::stocked_product(app, &staff, "Honey <Jar> & Lid", &[("JAR-1", 1250, 5)]).await;
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "JAR-1", 2).await;
    let order = app.checkout(&guest, &format!("k-{}", Uuid::now_v7()), "tok_ok").await.expect(201)["order"].clone();
    // The order's own events (and its confirmation, to the outbox) are handled
    // now, so the SMTP sink sees only what each test sends.
    app.drain_jobs().await;
    order
}

fn shipment_context(order: &Value) -> Value {
    json!({"order": order, "shipment": {"carrier": "DHL", "tracking_number": "00340434", "tracking_url": "https://track.example/00340434",
        "lines": [{"title": "Honey <Jar> & Lid", "sku": "JAR-1", "quantity": 2}]}})
}

async fn an_email_job_is_delivered_over_smtp_with_text_and_html(app: TestApp) {
    let Some(sink) = SmtpSink::start() else { return };
    let order = placed_order(&app).await;
    let key = format!("order_shipped:{}", order["id"].as_str().unwrap());
    let job_id = enqueue(&app, Template::OrderShipped, "ann@example.com", shipment_context(&order), &key).await;
    drain(&app, &registry(&app, Some(sink.url()))).await;

    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["rcpt_tos"], json!(["ann@example.com"]));
    assert_eq!(messages[0]["mail_from"], "shop@localhost");
    let mail = parse_mail(messages[0]["data"].as_str().unwrap());
    let number = order["number"].as_str().unwrap();
    assert!(mail.headers.contains(&format!("Subject: Your order {number} is on its way")), "{}", mail.headers);
    assert!(mail.headers.contains("From: Mercato <shop@localhost>"), "{}", mail.headers);
    let message_id = mercato::notify::send_email::message_id(&key);
    assert!(mail.headers.contains(&format!("Message-ID: <{message_id}@localhost>")), "{}", mail.headers);
    assert!(mail.text.contains("your order") && mail.text.contains(number), "{}", mail.text);
    assert!(
        mail.text.contains("Tracking number: 00340434") && mail.text.contains("2 x Honey <Jar> & Lid (JAR-1)"),
        "{}",
        mail.text
    );
    assert!(mail.html.contains("Honey &lt;Jar&gt; &amp; Lid"), "{}", mail.html);
    assert!(mail.html.contains(">00340434</a>"), "{}", mail.html);

    let job = app.store.job(job_id).await.unwrap().unwrap();
    assert_eq!((job.kind.as_str(), job.status.as_str()), (EMAIL_SEND, "done"));
    let record = app.store.notification(&key).await.unwrap().unwrap();
    assert_eq!((record.status.as_str(), record.attempts, record.recipient.as_str()), ("sent", 1, "ann@example.com"));
    let metrics = app.get("/metrics").await.body;
    assert!(metrics.as_str().unwrap_or("").contains(r#"emails_sent_total{template="order_shipped"}"#), "{metrics}");
}

async fn without_smtp_url_messages_are_written_to_the_outbox(app: TestApp) {
    let order = placed_order(&app).await;
    let key = format!("order_confirmed:{}", order["id"].as_str().unwrap());
    enqueue(&app, Template::OrderConfirmed, "ann@example.com", json!({"order": order}), &key).await;
    drain(&app, &registry(&app, None)).await;

    let file = app.settings.data_dir.join("outbox").join(format!("{}.eml", mercato::notify::send_email::message_id(&key)));
    let mail = parse_mail(&std::fs::read_to_string(&file).expect("the .eml file"));
    let number = order["number"].as_str().unwrap();
    assert!(mail.headers.contains(&format!("Subject: Your order {number} is confirmed")), "{}", mail.headers);
    assert!(mail.headers.contains("To: ann@example.com"), "{}", mail.headers);
    // 2 × 12.50 EUR, shown from minor units.
    assert!(mail.text.contains("2 x Honey <Jar> & Lid (JAR-1): 25.00 EUR"), "{}", mail.text);
    assert!(mail.html.contains("Honey &lt;Jar&gt; &amp; Lid"), "{}", mail.html);
    assert_eq!(app.store.notification(&key).await.unwrap().unwrap().status, "sent");
}

async fn a_refused_recipient_sends_the_job_to_the_dead_letters_and_is_not_resent(app: TestApp) {
    let Some(sink) = SmtpSink::start() else { return };
    let order = placed_order(&app).await;
    let key = "order_delivered:refused";
    let job_id = enqueue(&app, Template::OrderDelivered, "refuse-me@example.com", json!({"order": order}), key).await;
    let registry = registry(&app, Some(sink.url()));
    drain(&app, &registry).await;

    let job = app.store.job(job_id).await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.attempts), ("dead", 1), "{job:?}");
    assert!(job.last_error.as_deref().unwrap_or("").contains("550"), "{job:?}");
    let record = app.store.notification(key).await.unwrap().unwrap();
    assert_eq!((record.status.as_str(), record.attempts), ("failed", 1));
    // Running the workers again sends nothing and touches nothing.
    drain(&app, &registry).await;
    assert_eq!(app.store.job(job_id).await.unwrap().unwrap().attempts, 1);
    assert!(sink.messages().is_empty());
}

async fn a_temporary_refusal_is_retried_and_then_delivered(app: TestApp) {
    let Some(sink) = SmtpSink::start() else { return };
    let order = placed_order(&app).await;
    let registry = registry(&app, Some(sink.url()));
    // The checkout's own events first, so the next run holds only the e-mail.
    drain(&app, &registry).await;
    let key = "order_delivered:greylisted";
    let job_id = enqueue(&app, Template::OrderDelivered, "tempfail@example.com", json!({"order": order}), key).await;

    // First attempt: 451, so the job goes back to the queue (due at once here: no backoff in the test settings).
    assert_eq!(run_once(&app.store, &registry, "w", &quick()).await.unwrap(), 1);
    let job = app.store.job(job_id).await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.attempts), ("queued", 1), "{job:?}");
    assert!(job.last_error.as_deref().unwrap_or("").contains("451"), "{job:?}");
    assert_eq!(app.store.notification(key).await.unwrap().unwrap().status, "pending");
    assert!(sink.messages().is_empty());

    // Second attempt: accepted.
    drain(&app, &registry).await;
    let job = app.store.job(job_id).await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.attempts), ("done", 2));
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["rcpt_tos"], json!(["tempfail@example.com"]));
    assert_eq!(app.store.notification(key).await.unwrap().unwrap().attempts, 2);
}

async fn a_message_is_sent_once_however_often_its_job_runs(app: TestApp) {
    let Some(sink) = SmtpSink::start() else { return };
    let order = placed_order(&app).await;
    let key = "order_confirmed:once";
    let first = enqueue(&app, Template::OrderConfirmed, "ann@example.com", json!({"order": order}), key).await;
    // The same event enqueued twice (a retried transaction, a replayed webhook).
    let second = enqueue(&app, Template::OrderConfirmed, "ann@example.com", json!({"order": order}), key).await;
    drain(&app, &registry(&app, Some(sink.url()))).await;
    for id in [first, second] {
        assert_eq!(app.store.job(id).await.unwrap().unwrap().status, "done");
    }
    // And one job run again by hand, as a worker whose lease ran out would.
    let job = app.store.job(first).await.unwrap().unwrap();
    let settings = mercato::config::Settings { smtp_url: Some(sink.url()), ..app.settings.clone() };
    let handler = mercato::notify::email_handler(&settings, &app.address).unwrap();
    handler.run(&app.store, &job).await.unwrap();

    assert_eq!(sink.messages().len(), 1);
    let record = app.store.notification(key).await.unwrap().unwrap();
    assert_eq!((record.status.as_str(), record.attempts), ("sent", 1));
}

/// The reset token in the link of the newest password reset e-mail in the outbox.
fn reset_token_from_outbox(app: &TestApp) -> String {
    let outbox = app.settings.data_dir.join("outbox");
    let mut mails: Vec<Mail> = std::fs::read_dir(&outbox)
        .expect("the outbox")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| parse_mail(&std::fs::read_to_string(e.path()).unwrap()))
        .filter(|m| m.headers.contains("Subject: Reset your password"))
        .collect();
    assert_eq!(mails.len(), 1, "one reset e-mail");
    let mail = mails.remove(0);
    assert!(mail.headers.contains("To: reset-me@example.com"), "{}", mail.headers);
    let link = mail.text.lines().find(|l| l.contains("/reset-password?token=")).expect("a reset link in the text");
    assert!(link.starts_with(&app.address), "{link}");
    let token = link.rsplit("token=").next().unwrap().trim().to_owned();
    assert!(mail.html.contains(&format!("token={token}")), "{}", mail.html);
    token
}

async fn a_password_reset_email_resets_the_password_once(app: TestApp) {
    let email = "reset-me@example.com";
    let new_password = "a completely new passphrase";
    let session = app
        .send(Method::POST, "/v1/auth/register", None, Some(json!({"email": email, "password": PASSWORD, "name": "Ann"})))
        .await
        .expect(201);
    let old_refresh = session["tokens"]["refresh_token"].as_str().unwrap().to_owned();

    // Known and unknown addresses get the same answer; only the account gets mail.
    app.send(Method::POST, "/v1/customers/password-reset", None, Some(json!({"email": "Reset-Me@Example.com"})))
        .await
        .expect(202);
    app.send(Method::POST, "/v1/customers/password-reset", None, Some(json!({"email": "nobody@example.com"}))).await.expect(202);
    let jobs = app.store.list_jobs(None, Some(EMAIL_SEND), None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    drain(&app, &registry(&app, None)).await;
    let token = reset_token_from_outbox(&app);
    // The queue never held the token (staff can read job payloads).
    assert!(!jobs[0].payload.to_string().contains(&token));

    let confirm = |token: String, password: &str| {
        app.send(Method::POST, "/v1/customers/password-reset/confirm", None, Some(json!({"token": token, "password": password})))
    };
    let weak = confirm(token.clone(), "short").await.problem(422, "validation_failed");
    assert_eq!(crate::helpers::Answer::fields(&weak), vec!["password"]);
    confirm(token.clone(), new_password).await.expect(204);

    let login =
        |password: &str| app.send(Method::POST, "/v1/auth/login", None, Some(json!({"email": email, "password": password})));
    login(PASSWORD).await.problem(401, "invalid_credentials");
    login(new_password).await.expect(200);
    // Sessions from before the reset are over.
    app.send(Method::POST, "/v1/auth/refresh", None, Some(json!({"refresh_token": old_refresh}))).await.expect(401);

    let reused = confirm(token, "yet another passphrase").await.problem(400, "invalid_reset_token");
    assert_eq!(crate::helpers::Answer::fields(&reused), vec!["token"]);
    assert!(reused["detail"].as_str().unwrap().contains("already used"), "{reused}");
    confirm("not-a-token".into(), "yet another passphrase").await.problem(400, "invalid_reset_token");
    login(new_password).await.expect(200);
}

async fn an_expired_reset_token_is_refused(app: TestApp) {
    let email = "reset-me@example.com";
    app.send(Method::POST, "/v1/auth/register", None, Some(json!({"email": email, "password": PASSWORD}))).await.expect(201);
    app.send(Method::POST, "/v1/customers/password-reset", None, Some(json!({"email": email}))).await.expect(202);
    drain(&app, &registry(&app, None)).await;
    let token = reset_token_from_outbox(&app);
    // An hour passes.
    sqlx::query("UPDATE password_reset_tokens SET expires_at = $1")
        .bind(mercato::store::format_time(time::OffsetDateTime::now_utc() - time::Duration::seconds(1)))
        .execute(app.store.pool())
        .await
        .unwrap();
    let expired = app
        .send(
            Method::POST,
            "/v1/customers/password-reset/confirm",
            None,
            Some(json!({"token": token, "password": "a completely new passphrase"})),
        )
        .await
        .problem(400, "invalid_reset_token");
    assert!(expired["detail"].as_str().unwrap().contains("expired"), "{expired}");
    app.send(Method::POST, "/v1/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await.expect(200);
}

on_both_databases!(
    an_email_job_is_delivered_over_smtp_with_text_and_html,
    without_smtp_url_messages_are_written_to_the_outbox,
    a_refused_recipient_sends_the_job_to_the_dead_letters_and_is_not_resent,
    a_temporary_refusal_is_retried_and_then_delivered,
    a_message_is_sent_once_however_often_its_job_runs,
    a_password_reset_email_resets_the_password_once,
    an_expired_reset_token_is_refused,
);
