//! The job queue against the real databases: a worker killed mid-job loses
//! nothing and repeats no effect; failing jobs back off and end in the dead
//! letters, from which staff can retry them.

use std::sync::Arc;
use std::time::Duration;

use mercato::jobs::{JobFuture, JobHandler, Registry, WorkerSettings, run_once, work};
use mercato::store::Store;
use mercato::store::jobs::Job;
use reqwest::Method;
use serde_json::json;
use tokio::sync::Notify;

use crate::helpers::TestApp;

/// Records its effect keyed by the job id (idempotent), after taking its time
/// over it (as a job sending an e-mail does).
struct RecordEffect {
    started: Arc<Notify>,
    takes: Duration,
}

/// Long enough to stand for a side effect during which the worker dies.
const FOREVER: Duration = Duration::from_secs(3600);

impl JobHandler for RecordEffect {
    fn run<'a>(&'a self, store: &'a Store, job: &'a Job) -> JobFuture<'a> {
        Box::pin(async move {
            self.started.notify_one();
            tokio::time::sleep(self.takes).await;
            sqlx::query("INSERT INTO test_effects (job_id) VALUES ($1) ON CONFLICT (job_id) DO NOTHING")
                .bind(job.id.to_string())
                .execute(store.pool())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string().into())
        })
    }
}

struct AlwaysFails;

impl JobHandler for AlwaysFails {
    fn run<'a>(&'a self, _store: &'a Store, _job: &'a Job) -> JobFuture<'a> {
        Box::pin(async { Err("the provider said no".into()) })
    }
}

fn quick() -> WorkerSettings {
    WorkerSettings {
        lease: Duration::from_millis(300),
        idle_poll: Duration::from_millis(20),
        batch: 10,
        retry_base: Duration::ZERO,
        retry_cap: Duration::ZERO,
        ..WorkerSettings::default()
    }
}

async fn a_worker_killed_mid_job_loses_nothing_and_repeats_no_effect(app: TestApp) {
    sqlx::query("CREATE TABLE test_effects (job_id TEXT PRIMARY KEY)").execute(app.store.pool()).await.unwrap();
    let job_id = app.store.enqueue_job("test.effect", json!({"n": 1})).await.unwrap();

    let started = Arc::new(Notify::new());
    let stuck = Registry::default().with("test.effect", Arc::new(RecordEffect { started: started.clone(), takes: FOREVER }));
    let doomed = tokio::spawn(work(app.store.clone(), stuck, "doomed".into(), quick()));
    tokio::time::timeout(Duration::from_secs(10), started.notified()).await.expect("the first worker starts the job");
    doomed.abort();
    let _ = doomed.await;
    assert_eq!(app.store.job(job_id).await.unwrap().unwrap().status, "running");

    // Another worker takes the job over once the dead one's lease has run out.
    let healthy = Registry::default()
        .with("test.effect", Arc::new(RecordEffect { started: Arc::new(Notify::new()), takes: Duration::ZERO }));
    let mut job = app.store.job(job_id).await.unwrap().unwrap();
    for _ in 0..200 {
        run_once(&app.store, &healthy, "rescuer", &quick()).await.unwrap();
        job = app.store.job(job_id).await.unwrap().unwrap();
        if job.status == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((job.status.as_str(), job.attempts), ("done", 2));
    let row = sqlx::query("SELECT COUNT(*) AS n FROM test_effects").fetch_one(app.store.pool()).await.unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&row, "n"), 1);
}

async fn failing_jobs_end_in_the_dead_letters_and_staff_can_retry_them(app: TestApp) {
    let job_id = app.store.enqueue_job("test.fails", json!({})).await.unwrap();
    let registry = Registry::default().with("test.fails", Arc::new(AlwaysFails));
    for _ in 0..50 {
        run_once(&app.store, &registry, "w", &quick()).await.unwrap();
    }
    let job = app.store.job(job_id).await.unwrap().unwrap();
    assert_eq!(job.status, "dead");
    assert_eq!(job.attempts, job.max_attempts);
    assert_eq!(job.last_error.as_deref(), Some("the provider said no"));

    let staff = app.owner_token().await;
    let dead = app.admin_get("/v1/admin/jobs?status=dead", &staff).await.expect(200);
    assert_eq!(dead["items"][0]["id"], job_id.to_string());
    assert_eq!(dead["stats"]["dead"], 1);
    let retried = app.send(Method::POST, &format!("/v1/admin/jobs/{job_id}/retry"), Some(&staff), None).await.expect(200);
    assert_eq!((retried["status"].as_str(), retried["attempts"].as_i64()), (Some("queued"), Some(0)));
    app.send(Method::POST, &format!("/v1/admin/jobs/{job_id}/retry"), Some(&staff), None).await.problem(409, "job_not_dead");
    app.admin_get("/v1/admin/jobs?status=lost", &staff).await.problem(400, "invalid_status");
    let analyst = app.token_for(mercato::domain::rbac::Role::Analyst).await;
    app.admin_get("/v1/admin/jobs", &analyst).await.problem(403, "forbidden");
}

async fn checkout_events_are_queued_and_workers_work_them_off(app: TestApp) {
    let staff = app.owner_token().await;
    crate::checkout::german_rates(&app, &staff).await;
    crate::checkout::stocked_product(&app, &staff, "Jar", &[("JAR-1", 800, 3)]).await;
    let guest = app.guest_cart().await;
    app.add_to_cart(&guest, "JAR-1", 1).await;
    app.checkout(&guest, "j-1", "tok_ok").await.expect(201);
    let queued = app.admin_get("/v1/admin/jobs?status=queued", &staff).await.expect(200);
    assert_eq!(queued["stats"]["queued"], 2, "{queued}");
    // Sold, not yet taken off on-hand: available is right already.
    let level = app.admin_get("/v1/admin/inventory/JAR-1", &staff).await.expect(200);
    assert_eq!((level["on_hand"].as_i64(), level["reserved"].as_i64(), level["available"].as_i64()), (Some(3), Some(1), Some(2)));
    // order.placed and order.paid were enqueued with the order; workers as
    // `mercato serve` starts them work them off: the queue drains.
    let workers = mercato::jobs::spawn_workers(&app.store, &app.jobs, 2, &quick());
    let mut remaining = i64::MAX;
    for _ in 0..250 {
        let list = app.admin_get("/v1/admin/jobs", &staff).await.expect(200);
        remaining = list["stats"]["queued"].as_i64().unwrap() + list["stats"]["running"].as_i64().unwrap();
        if remaining == 0 {
            let kinds: Vec<_> =
                list["items"].as_array().unwrap().iter().map(|j| j["kind"].as_str().unwrap().to_owned()).collect();
            assert!(kinds.contains(&"order.placed".to_owned()) && kinds.contains(&"order.paid".to_owned()), "{kinds:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(remaining, 0);
    // The sales folder `mercato serve` runs takes the sale off on-hand stock.
    let folder = mercato::ops::housekeeping::spawn_sales_folder(app.store.clone(), Duration::from_millis(20));
    let mut level = serde_json::Value::Null;
    for _ in 0..250 {
        level = app.admin_get("/v1/admin/inventory/JAR-1", &staff).await.expect(200);
        if level["on_hand"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    folder.abort();
    assert_eq!((level["on_hand"].as_i64(), level["reserved"].as_i64(), level["available"].as_i64()), (Some(2), Some(0), Some(2)));
    app.assert_ledger_reconciles(&staff).await;
    workers.abort();
}

/// A stopping process lets its workers finish the jobs in their hands (and
/// record them) before it closes the pool.
async fn stopping_workers_finish_the_jobs_in_hand(app: TestApp) {
    sqlx::query("CREATE TABLE test_effects (job_id TEXT PRIMARY KEY)").execute(app.store.pool()).await.unwrap();
    let job_id = app.store.enqueue_job("test.effect", json!({"n": 1})).await.unwrap();
    let started = Arc::new(Notify::new());
    let registry = Registry::default()
        .with("test.effect", Arc::new(RecordEffect { started: started.clone(), takes: Duration::from_millis(300) }));
    // A lease far longer than the job: nobody else could take it over.
    let settings = WorkerSettings { lease: Duration::from_secs(60), ..quick() };
    let workers = mercato::jobs::spawn_workers(&app.store, &registry, 2, &settings);
    tokio::time::timeout(Duration::from_secs(10), started.notified()).await.expect("a worker starts the job");
    // Workers that ignored the stop would keep their tasks alive until `within`.
    tokio::time::timeout(Duration::from_secs(30), workers.stop(Duration::from_secs(120)))
        .await
        .expect("the workers stopped once the job in hand was done");
    let job = app.store.job(job_id).await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.attempts), ("done", 1), "finished and recorded once, not cut off");
    let effects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM test_effects").fetch_one(app.store.pool()).await.unwrap();
    assert_eq!(effects, 1);
}

/// A worker stopping in the middle of a claimed batch runs no more of it: what
/// it had not started is queued again at once, no attempt counted.
async fn a_stopping_worker_gives_back_the_jobs_it_has_not_started(app: TestApp) {
    sqlx::query("CREATE TABLE test_effects (job_id TEXT PRIMARY KEY)").execute(app.store.pool()).await.unwrap();
    // More than a worker runs at once (10; 2 on SQLite), all claimed in one batch.
    let payloads: Vec<_> = (0..12).map(|n| json!({ "n": n })).collect();
    app.store.enqueue_many("test.effect", &payloads).await.unwrap();
    let started = Arc::new(Notify::new());
    let registry = Registry::default()
        .with("test.effect", Arc::new(RecordEffect { started: started.clone(), takes: Duration::from_millis(300) }));
    let settings = WorkerSettings { lease: Duration::from_secs(60), batch: 12, ..quick() };
    let workers = mercato::jobs::spawn_workers(&app.store, &registry, 1, &settings);
    tokio::time::timeout(Duration::from_secs(10), started.notified()).await.expect("the worker starts its first jobs");
    tokio::time::timeout(Duration::from_secs(30), workers.stop(Duration::from_secs(120))).await.expect("stopped");
    let jobs = app.store.list_jobs(None, Some("test.effect"), None, 20).await.unwrap();
    let done = jobs.iter().filter(|j| j.status == "done").count();
    let queued: Vec<_> = jobs.iter().filter(|j| j.status == "queued").collect();
    let at_once = if app.store.writers_queue() { 2 } else { 10 };
    assert_eq!((done, queued.len()), (at_once, 12 - at_once), "the first group ran, the rest went back");
    assert!(queued.iter().all(|j| j.attempts == 0), "a job given back has not used an attempt");
}

/// Several instances schedule the same slot at once; the slot runs once. The
/// low-stock scan announces a variant once a day, however often it runs.
async fn housekeeping_runs_once_per_slot_and_alerts_once_a_day(app: TestApp) {
    use mercato::ops::{events, housekeeping};
    let key = housekeeping::slot_key(housekeeping::LOW_STOCK_SCAN, Duration::from_secs(900), 1_800_000_000);
    let attempts = (0..10).map(|_| app.store.enqueue_unique_job(housekeeping::LOW_STOCK_SCAN, serde_json::json!({}), &key));
    let created = futures_util::future::join_all(attempts).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(created, 1);

    let owner = app.owner_token().await;
    crate::checkout::stocked_product(&app, &owner, "Tea", &[("TEA-1", 500, 3)]).await;
    app.store.set_low_stock_threshold("TEA-1", Some(5)).await.unwrap();
    app.drain_jobs().await;
    // A second scan the same day adds nothing.
    app.store.enqueue_unique_job(housekeeping::LOW_STOCK_SCAN, serde_json::json!({}), "another-slot").await.unwrap();
    app.drain_jobs().await;
    let alerts = app.store.list_jobs(None, Some(events::LOW_STOCK), None, 10).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].payload["sku"].as_str(), alerts[0].status.as_str()), (Some("TEA-1"), "done"));
    // The staff who look after stock (here the owner) get one e-mail about it.
    let outbox = app.settings.data_dir.join("outbox");
    let mails: Vec<String> =
        std::fs::read_dir(&outbox).unwrap().map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap()).collect();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("Subject: Low stock: TEA-1 (3 left)"), "{}", mails[0]);
}

on_both_databases!(
    a_worker_killed_mid_job_loses_nothing_and_repeats_no_effect,
    failing_jobs_end_in_the_dead_letters_and_staff_can_retry_them,
    checkout_events_are_queued_and_workers_work_them_off,
    housekeeping_runs_once_per_slot_and_alerts_once_a_day,
    stopping_workers_finish_the_jobs_in_hand,
    a_stopping_worker_gives_back_the_jobs_it_has_not_started,
);
