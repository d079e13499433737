//! The `mercato` command line.

use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::domain::rbac::Role;
use crate::loadtest::args::LoadtestCommand;
use crate::ops;
use crate::startup::Application;
use crate::store::Store;
use crate::store::audit::Actor;

#[derive(Parser)]
#[command(name = "mercato", version, about = "A headless commerce engine that does not break on sale day")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the API (migrations are applied at start).
    Serve {
        /// Load the demo catalog first if the shop has no products.
        #[arg(long)]
        demo: bool,
        /// How many demo products to create.
        #[arg(long, default_value_t = 300)]
        demo_products: usize,
    },
    /// Run job workers only (no HTTP): any number of these may share a database.
    Worker {
        /// How many workers in this process.
        #[arg(long, default_value_t = 4)]
        count: usize,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Fill an empty catalog.
    Seed {
        /// The demo catalog (the only seed there is).
        #[arg(long, required = true)]
        demo: bool,
        #[arg(long, default_value_t = 300)]
        products: usize,
    },
    /// Import products from a JSON Lines file (one product per line), idempotent by SKU.
    Import { file: PathBuf },
    /// Staff and maintenance tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Load a running shop (flash-sale, steady-checkout, browse or mixed), then
    /// check its invariants; `loadtest queue` measures the job queue instead.
    Loadtest(Box<crate::loadtest::args::LoadtestArgs>),
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create a staff account (the first owner, typically).
    CreateStaff {
        #[arg(long)]
        email: String,
        /// owner, catalog_manager, fulfilment, support or analyst.
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Compare every stock level with the sum of its ledger movements; exits
    /// non-zero when any differs.
    ReconcileStock,
    /// Show the database's plan for a storefront product list, e.g.
    /// `mercato admin explain-products 'category=women&sort=price_asc'`.
    /// On PostgreSQL the query runs (EXPLAIN ANALYZE).
    ExplainProducts {
        /// The query string of `GET /v1/products`.
        #[arg(default_value = "")]
        query: String,
    },
    /// Rebuild the search index (MERCATO_SEARCH_PATH, default data/search) from
    /// the catalog. A running server holds its index: use
    /// `POST /v1/admin/search/reindex` on it instead.
    Reindex,
}

pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { demo, demo_products } => {
            let app = Application::build(&settings).await?;
            if demo {
                seed_demo(app.store(), demo_products).await?;
            }
            app.run_until_stopped().await
        }
        Command::Worker { count } => {
            let store = connect(&settings).await?;
            // A worker has no server of its own: the `test` provider's webhooks go to the shop's.
            let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{}", settings.listen));
            let base_url = std::sync::Arc::new(std::sync::OnceLock::new());
            let _ = base_url.set(public_url.clone());
            let providers = crate::startup::payment_providers(&settings, base_url)?;
            let registry = crate::startup::job_registry(&settings, &public_url, &providers)?;
            let workers =
                crate::jobs::spawn_workers(&store, &registry, count.max(1), &crate::startup::worker_settings(&settings));
            crate::ops::housekeeping::spawn_sales_folder(store.clone(), crate::ops::housekeeping::FOLD_SALES_EVERY);
            if settings.housekeeping {
                let every = std::time::Duration::from_secs(settings.expiry_sweep_secs);
                crate::ops::housekeeping::spawn_expiry_sweeper(store.clone(), every);
                crate::ops::housekeeping::spawn_scheduler(store.clone(), crate::ops::housekeeping::schedule());
            }
            tracing::info!(workers = workers.len(), "job workers running");
            crate::startup::shutdown_signal().await;
            workers.stop(crate::startup::WORKERS_STOP_WITHIN).await;
            store.close().await;
            Ok(())
        }
        Command::Migrate => {
            connect(&settings).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Seed { demo: _, products } => seed_demo(&connect(&settings).await?, products).await,
        Command::Import { file } => {
            let store = connect(&settings).await?;
            let total = std::io::BufReader::new(std::fs::File::open(&file)?).lines().count() as u64;
            let reader = std::io::BufReader::new(std::fs::File::open(&file)?);
            let report = ops::import::import_jsonl(&store, reader, total, std::io::stderr().is_terminal()).await?;
            eprintln!(
                "{} created, {} updated, {} unchanged, {} failed",
                report.created,
                report.updated,
                report.unchanged,
                report.failed.len()
            );
            for (line, why) in &report.failed {
                eprintln!("line {line}: {why}");
            }
            if report.failed.is_empty() { Ok(()) } else { Err(anyhow::anyhow!("{} line(s) failed", report.failed.len())) }
        }
        Command::Admin { command: AdminCommand::CreateStaff { email, role, name, password_stdin } } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!("unknown role `{role}`; use owner, catalog_manager, fulfilment, support or analyst")
            })?;
            let password = if password_stdin {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s.trim_end_matches(['\n', '\r']).to_owned()
            } else {
                let first = rpassword::prompt_password("Password: ")?;
                if first != rpassword::prompt_password("Repeat password: ")? {
                    anyhow::bail!("the passwords differ");
                }
                first
            };
            let store = connect(&settings).await?;
            let input = ops::staff::NewStaffInput { email, name, role, password };
            let member = ops::staff::create_staff(&store, input, &Actor::cli()).await.map_err(describe)?;
            eprintln!("created {} ({}) with id {}", member.email, member.role.as_str(), member.id);
            Ok(())
        }
        Command::Admin { command: AdminCommand::ReconcileStock } => {
            let store = connect(&settings).await?;
            let report = store.reconcile_stock().await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if report.discrepancies.is_empty() {
                eprintln!("{} stock rows checked, the ledger matches", report.checked);
                Ok(())
            } else {
                Err(anyhow::anyhow!("{} of {} stock rows differ from the ledger", report.discrepancies.len(), report.checked))
            }
        }
        Command::Admin { command: AdminCommand::ExplainProducts { query } } => {
            let store = connect(&settings).await?;
            let params = ops::catalog::ListParams::parse(Some(&query), false).map_err(describe)?;
            let currency = crate::domain::money::Currency::parse(&settings.default_currency)?;
            let q = ops::catalog::product_query(&store, &params, currency, true).await.map_err(describe)?;
            for line in store.explain_product_list(&q).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Admin { command: AdminCommand::Reindex } => {
            let store = connect(&settings).await?;
            let path = settings.search_path();
            let index = std::sync::Arc::new(crate::search::SearchIndex::open(&path)?);
            let bar =
                if std::io::stderr().is_terminal() { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() };
            bar.set_style(indicatif::ProgressStyle::with_template(
                "indexing {bar:40} {pos}/{len} products  {per_sec}  eta {eta}",
            )?);
            let started = std::time::Instant::now();
            let documents = ops::catalog_feed::rebuild(&store, &index, &bar).await?;
            eprintln!(
                "indexed {documents} products in {:.1} s; {} at {} (catalog position {})",
                started.elapsed().as_secs_f64(),
                human_bytes(index.size_bytes()),
                path.display(),
                index.position()
            );
            Ok(())
        }
        Command::Loadtest(args) => match args.command {
            Some(LoadtestCommand::Queue { jobs, workers, batch }) => {
                let store = connect(&settings).await?;
                crate::loadtest::queue::run(&store, jobs, workers.max(1), batch.max(1)).await
            }
            None => {
                let emails = if args.run.emails { Some(connect(&settings).await?) } else { None };
                Ok(args.run.execute(emails).await?)
            }
        },
        Command::Openapi => {
            println!("{}", crate::http::openapi().to_pretty_json()?);
            Ok(())
        }
    }
}

async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    settings.check_safety()?;
    let store = Store::connect(
        &settings.database_url(),
        settings.database_max_connections,
        std::time::Duration::from_secs(settings.database_acquire_timeout_secs),
    )
    .await?;
    store.migrate().await?;
    Ok(store)
}

async fn seed_demo(store: &Store, products: usize) -> anyhow::Result<()> {
    let report = ops::demo::seed(store, products, std::io::stderr().is_terminal()).await?;
    if report.products == 0 {
        tracing::info!("catalog already has products; demo seed skipped");
    } else {
        tracing::info!(categories = report.categories, products = report.products, "demo catalog loaded");
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

/// Turns an API error into a message for the terminal, field by field.
fn describe(err: crate::error::ApiError) -> anyhow::Error {
    match err {
        crate::error::ApiError::Validation(fields) => {
            anyhow::anyhow!("{}", fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("\n"))
        }
        other => anyhow::anyhow!("{other}"),
    }
}
