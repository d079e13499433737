//! `mercato loadtest` against the real server: each scenario with small numbers,
//! the invariant check catching books that do not add up, and bad input ending
//! with its documented exit code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mercato::domain::rbac::Role;
use mercato::loadtest::plan::{Load, Options, Scenario, StaffAuth};
use mercato::loadtest::report::{Report, StepReport, Verdict};
use mercato::loadtest::runner::Stop;
use mercato::loadtest::stats::Op;
use mercato::loadtest::{FailureKind, Outcome, invariants};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, product_body};

async fn owner_options(app: &TestApp, scenario: Scenario) -> Options {
    let email = app.create_staff(Role::Owner).await;
    let mut o = Options::new(&app.address, scenario);
    o.staff = StaffAuth::Login { email, password: PASSWORD.into() };
    o.step = Duration::from_secs(1);
    o
}

async fn run(options: Options) -> Outcome {
    match mercato::loadtest::run(options, Arc::new(Stop::default())).await {
        Ok(o) => o,
        Err(e) => panic!("the run failed: {e}"),
    }
}

#[track_caller]
fn assert_passed(report: &Report) {
    assert_eq!(report.verdict, Verdict::Passed, "{}", report.text());
    assert_eq!(report.invariants.len(), 4, "every invariant was checked: {}", report.text());
}

fn op(step: &StepReport, op: Op) -> &mercato::loadtest::report::OpReport {
    step.ops.iter().find(|o| o.op == op).unwrap_or_else(|| panic!("no {op:?} in step {}", step.name))
}

/// A second server on the same database, as a shop with two instances runs.
async fn second_instance(app: &TestApp) -> String {
    let settings = mercato::config::Settings {
        search_path: Some(app.settings.data_dir.join(format!("search-{}", uuid::Uuid::now_v7().simple()))),
        ..app.settings.clone()
    };
    let second = mercato::startup::Application::build(&settings).await.expect("second instance builds");
    let address = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until(std::future::pending()));
    address
}

async fn a_flash_sale_sells_exactly_the_stock_and_the_books_add_up(app: TestApp) {
    let mut o = owner_options(&app, Scenario::FlashSale).await;
    o.buyers = 60;
    o.stock = 10;
    o.load = Load::Closed { concurrency: 20 };
    // Buyers alternate between two instances of the shop.
    o.targets.push(second_instance(&app).await);
    let Outcome { report, books } = run(o).await;
    assert_passed(&report);
    let json: Value = serde_json::from_str(&report.json()).unwrap();
    let names: Vec<&str> = json["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cart c=20", "checkout c=20"]);
    let (carts, storm) = (&report.steps[0], &report.steps[1]);
    assert_eq!((op(carts, Op::Cart).ok, op(carts, Op::AddItem).ok), (60, 60));
    assert_eq!(carts.orders, 0);
    let checkout = op(storm, Op::Checkout);
    assert_eq!((checkout.requests, checkout.ok, storm.orders), (60, 10, 10));
    assert_eq!(checkout.errors.len(), 1, "{:?}", checkout.errors);
    assert_eq!((checkout.errors[0].key.status, checkout.errors[0].key.kind.as_str()), (Some(409), "out_of_stock"));
    assert_eq!(checkout.errors[0].count, 50);
    assert_eq!(json["steps"][1]["ops"][0]["errors"][0]["type"], "out_of_stock");
    assert!(storm.latency_ms.p50 > 0.0 && storm.latency_ms.p50 <= storm.latency_ms.max);
    // The buyers who got an order and the refused ones, each on their own.
    assert!(checkout.ok_latency_ms.p50 > 0.0 && checkout.ok_latency_ms.max <= checkout.latency_ms.max);
    assert!(checkout.errors[0].latency_ms.p50 > 0.0 && checkout.errors[0].latency_ms.max <= checkout.latency_ms.max);
    assert!(report.text().contains("      ok: 10   ms p50 "), "{}", report.text());
    assert_eq!(books.answered.len(), 10);
    let stock = app.store.stock_level(&books.stocked[0].sku).await.unwrap().unwrap();
    assert_eq!(stock.on_hand - stock.reserved, 0, "sold out, not oversold");
    assert_eq!(report.timeline.iter().map(|s| s.requests).sum::<u64>(), 180);
}

async fn steady_checkout_ramps_through_its_steps(app: TestApp) {
    let mut o = owner_options(&app, Scenario::SteadyCheckout).await;
    o.load = Load::Closed { concurrency: 2 };
    o.ramp = vec![1.0, 2.0];
    o.variants = 5;
    let Outcome { report, books } = run(o).await;
    assert_passed(&report);
    let loads: Vec<Load> = report.steps.iter().map(|s| s.load).collect();
    assert_eq!(loads, [Load::Closed { concurrency: 2 }, Load::Closed { concurrency: 4 }]);
    for step in &report.steps {
        assert!(step.orders > 0 && step.errors == 0, "{}", report.text());
        assert!((0.9..3.0).contains(&step.seconds), "a one-second step took {}", step.seconds);
        assert_eq!(op(step, Op::Checkout).ok, step.orders);
    }
    assert_eq!(books.stocked.len(), 5);
    assert_eq!(books.answered.len() as u64, report.steps.iter().map(|s| s.orders).sum::<u64>());
}

async fn confirmation_emails_are_timed_against_the_checkout_answers(app: TestApp) {
    let workers = mercato::jobs::spawn_workers(&app.store, &app.jobs, 1, &Default::default());
    let mut o = owner_options(&app, Scenario::SteadyCheckout).await;
    o.load = Load::Closed { concurrency: 2 };
    o.variants = 2;
    o.emails = Some(app.store.clone());
    let Outcome { report, books } = run(o).await;
    workers.abort();
    let emails = report.emails.as_ref().expect("measured");
    assert!(emails.orders > 0);
    assert_eq!((emails.orders, emails.sent), (books.answered.len(), books.answered.len()));
    assert!(emails.latency_ms.p50 > 0.0 && emails.latency_ms.p50 < 60_000.0, "{:?}", emails.latency_ms);
    let sent = report.invariants.last().unwrap();
    assert!(sent.name.contains("e-mail") && sent.holds, "{sent:?}");
    assert_eq!(report.verdict, Verdict::Passed, "{}", report.text());
}

async fn browse_reads_what_the_catalog_holds_without_staff(app: TestApp) {
    let staff = app.owner_token().await;
    let shoes = app.create_category(&staff, "Shoes", None).await;
    for i in 0..6 {
        let body = product_body(
            &format!("Shoe {i}"),
            &format!("SH{i}"),
            &[4900 + i * 100],
            shoes["id"].as_str(),
            json!({"colour": ["navy"]}),
        );
        app.create_product(&staff, body).await;
    }
    let mut o = Options::new(&app.address, Scenario::Browse);
    o.load = Load::Closed { concurrency: 4 };
    o.step = Duration::from_secs(1);
    let Outcome { report, .. } = run(o).await;
    let step = &report.steps[0];
    assert!(step.requests > 20, "{}", report.text());
    assert_eq!(step.errors, 0, "{}", report.text());
    for kind in [Op::Products, Op::FilteredProducts, Op::Product, Op::Categories, Op::Search] {
        assert!(op(step, kind).ok > 0);
    }
    assert_eq!(report.verdict, Verdict::Passed);
    assert!(report.invariants.is_empty());

    // The search scenario: words of the titles with two filters each.
    let mut o = Options::new(&app.address, Scenario::Search);
    o.load = Load::Closed { concurrency: 4 };
    o.step = Duration::from_secs(1);
    let Outcome { report, .. } = run(o).await;
    let step = &report.steps[0];
    assert_eq!(step.errors, 0, "{}", report.text());
    assert!(op(step, Op::Search).ok > 10, "{}", report.text());
    assert_eq!(step.ops.len(), 1, "{}", report.text());
    assert!(report.invariants_note.as_deref().unwrap().contains("no staff credentials"));
}

async fn an_open_model_sends_on_the_clock_and_counts_what_it_could_not_send(app: TestApp) {
    let mut o = owner_options(&app, Scenario::Mixed).await;
    o.load = Load::Open { rate: 40.0, max_in_flight: 100 };
    o.variants = 3;
    let Outcome { report, .. } = run(o).await;
    assert_passed(&report);
    let step = &report.steps[0];
    assert_eq!(step.name, "40/s");
    assert_eq!(step.dropped, 0);
    // 40 visits: most are one read, a cart is two requests, a checkout three.
    let visits = step.ops.iter().filter(|o| o.op != Op::AddItem && o.op != Op::Checkout).map(|o| o.requests).sum::<u64>();
    assert_eq!(visits, 40, "{}", report.text());

    // Far more arrivals than two requests in flight can take: the rest are dropped, not delayed.
    let mut o = Options::new(&app.address, Scenario::Browse);
    o.load = Load::Open { rate: 3000.0, max_in_flight: 2 };
    o.step = Duration::from_secs(1);
    let started = Instant::now();
    let Outcome { report, .. } = run(o).await;
    let step = &report.steps[0];
    assert!(step.dropped > 0, "{}", report.text());
    assert_eq!(step.requests + step.dropped, 3000);
    assert!(started.elapsed() < Duration::from_secs(10));
}

async fn books_that_do_not_add_up_fail_the_check(app: TestApp) {
    let mut o = owner_options(&app, Scenario::FlashSale).await;
    o.buyers = 8;
    o.stock = 10;
    o.load = Load::Closed { concurrency: 4 };
    let Outcome { report, books } = run(o).await;
    assert_passed(&report);
    let admin = mercato::loadtest::admin::Admin::with_token(&app.client, &app.address, &app.owner_token().await);
    let broken = |checked: Vec<invariants::Invariant>| -> Vec<&'static str> {
        checked.into_iter().filter(|i| !i.holds).map(|i| i.name).collect()
    };
    assert!(broken(invariants::check(&admin, &books).await.unwrap()).is_empty());

    // A unit written off through the admin API: in the ledger, but not in any order of the run.
    let sku = &books.stocked[0].sku;
    let off = json!({"sku": sku, "delta": -1, "reason": "dropped on the floor"});
    app.admin_post("/v1/admin/inventory/adjustments", &admin_token(&app).await, off).await.expect(201);
    let checked = invariants::check(&admin, &books).await.unwrap();
    assert_eq!(broken(checked.clone()), ["nothing oversold"]);
    assert!(checked[2].detail.contains("stocked 10, now available 1"), "{}", checked[2].detail);

    // Stock changed behind the ledger's back.
    sqlx::query("UPDATE stock_levels SET on_hand = on_hand + 1").execute(app.store.pool()).await.unwrap();
    assert_eq!(broken(invariants::check(&admin, &books).await.unwrap()), ["stock ledger reconciles"]);

    // An answered order the shop does not list (here: answered to another run).
    let mut books = books;
    books.email = "load+someone-else@example.com".into();
    assert_eq!(
        broken(invariants::check(&admin, &books).await.unwrap()),
        ["orders created = successful answers", "no order lost", "nothing oversold", "stock ledger reconciles"]
    );
}

async fn admin_token(app: &TestApp) -> String {
    app.token_for(Role::Owner).await
}

async fn bad_input_ends_with_a_clear_reason_and_its_exit_code(app: TestApp) {
    let fail = |o: Options| async move {
        match mercato::loadtest::run(o, Arc::new(Stop::default())).await {
            Ok(_) => panic!("the run should have failed"),
            Err(e) => e,
        }
    };
    // Nothing listens on port 9.
    let e = fail(Options::new("http://127.0.0.1:9", Scenario::Browse)).await;
    assert_eq!((e.kind, e.exit_code()), (FailureKind::Unreachable, 3));
    assert!(e.message.starts_with("http://127.0.0.1:9 unreachable"), "{}", e.message);

    let mut o = owner_options(&app, Scenario::SteadyCheckout).await;
    o.staff = StaffAuth::Login { email: "nobody@example.com".into(), password: "wrong password".into() };
    let e = fail(o).await;
    assert_eq!((e.kind, e.exit_code()), (FailureKind::Credentials, 3));
    assert!(e.message.contains("the e-mail or the password is wrong"), "{}", e.message);

    let mut o = owner_options(&app, Scenario::SteadyCheckout).await;
    o.staff = StaffAuth::Token(app.token_for(Role::Analyst).await);
    let e = fail(o).await;
    assert_eq!((e.kind, e.exit_code()), (FailureKind::Credentials, 3));
    assert!(e.message.contains("permission"), "{}", e.message);

    let e = fail(Options::new(&app.address, Scenario::Browse)).await;
    assert_eq!((e.kind, e.exit_code()), (FailureKind::Setup, 2));
    assert!(e.message.contains("no published products"), "{}", e.message);

    // A shop without a stock location cannot receive the test stock.
    sqlx::query("DELETE FROM stock_locations").execute(app.store.pool()).await.unwrap();
    let e = fail(owner_options(&app, Scenario::FlashSale).await).await;
    assert_eq!((e.kind, e.exit_code()), (FailureKind::Setup, 2));
    assert!(e.message.contains("no stock location"), "{}", e.message);
}

async fn ctrl_c_stops_sending_and_reports_what_was_done(app: TestApp) {
    let mut o = owner_options(&app, Scenario::SteadyCheckout).await;
    o.step = Duration::from_secs(60);
    o.load = Load::Closed { concurrency: 4 };
    o.variants = 2;
    let stop = Arc::new(Stop::default());
    let run = tokio::spawn(mercato::loadtest::run(o, stop.clone()));
    // Stop once some orders are in.
    let started = Instant::now();
    let all = mercato::store::orders::OrderFilter { limit: 100, ..Default::default() };
    while app.store.list_orders(&all).await.map_or(0, |o| o.len()) < 3 {
        assert!(started.elapsed() < Duration::from_secs(20), "no orders came in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.stop();
    let report = tokio::time::timeout(Duration::from_secs(10), run).await.expect("stops promptly").unwrap().unwrap().report;
    assert_eq!((report.verdict, report.exit_code), (Verdict::Interrupted, 130));
    assert!(report.steps[0].seconds < 30.0);
    assert!(report.steps[0].orders >= 3, "{}", report.text());
    assert!(report.text().contains("invariants not checked: the run was interrupted"));
}

async fn the_command_writes_its_reports_and_exits_by_its_verdict(app: TestApp) {
    let email = app.create_staff(Role::Owner).await;
    let dir = std::env::temp_dir().join(format!("mercato-loadtest-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json_path, html_path) = (dir.join("report.json"), dir.join("report.html"));
    let mercato = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mercato"))
            .env_clear()
            .env("MERCATO_LOADTEST_PASSWORD", PASSWORD)
            .env("MERCATO_DATA_DIR", &dir)
            .arg("loadtest")
            .args(args)
            .output()
            .unwrap()
    };
    let out = mercato(&[
        "--target",
        &app.address,
        "--scenario",
        "flash-sale",
        "--buyers",
        "12",
        "--stock",
        "4",
        "--concurrency",
        "4",
        "--admin-email",
        &email,
        "--json",
        json_path.to_str().unwrap(),
        "--html",
        html_path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok     nothing oversold"), "{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(report["verdict"], "passed");
    assert_eq!(report["steps"][1]["orders"], 4);
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<svg") && html.contains("nothing oversold"));

    let out = mercato(&["--target", &app.address, "--scenario", "steady-checkout"]);
    assert_eq!(out.status.code(), Some(2));
    let out = mercato(&["--target", "http://127.0.0.1:9", "--scenario", "browse"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("mercato: target unreachable: http://127.0.0.1:9 unreachable"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

on_both_databases!(
    a_flash_sale_sells_exactly_the_stock_and_the_books_add_up,
    steady_checkout_ramps_through_its_steps,
    confirmation_emails_are_timed_against_the_checkout_answers,
    browse_reads_what_the_catalog_holds_without_staff,
    an_open_model_sends_on_the_clock_and_counts_what_it_could_not_send,
    books_that_do_not_add_up_fail_the_check,
    bad_input_ends_with_a_clear_reason_and_its_exit_code,
    ctrl_c_stops_sending_and_reports_what_was_done,
    the_command_writes_its_reports_and_exits_by_its_verdict,
);
