//! Building and running the application. `Application::build` connects, migrates
//! and binds before it returns, so callers (tests included, with port 0) know the
//! port and that the shop is ready.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::tokens::TokenKeys;
use crate::cache::{CatalogCache, RedisLayer};
use crate::catalog_versions::CatalogVersions;
use crate::config::Settings;
use crate::domain::money::Currency;
use crate::domain::pricing::TaxMode;
use crate::domain::signature;
use crate::http::cache::cache_control;
use crate::http::rate_limit::{InProcessLimiter, RateLimiter};
use crate::http::{AppState, CatalogReads, Shop, router};
use crate::jobs;
use crate::ops::carts::CartSettings;
use crate::ops::catalog_feed;
use crate::ops::housekeeping;
use crate::ops::search::CategorySnapshot;
use crate::payments::PaymentProvider;
use crate::payments::guarded::Guarded;
use crate::payments::stripe::StripeProvider;
use crate::payments::test_provider::TestProvider;
use crate::search::SearchIndex;
use crate::store::Store;

/// Order batches placed in parallel on PostgreSQL (see `ops::order_batches`).
const ORDER_LANES: usize = 4;

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    store: Store,
    registry: jobs::Registry,
    workers: Option<jobs::Workers>,
}

/// How long a stopping process waits for its job workers to finish the jobs in
/// their hands.
pub const WORKERS_STOP_WITHIN: Duration = Duration::from_secs(10);

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        settings.check_safety()?;
        let store = Store::connect(
            &settings.database_url(),
            settings.database_max_connections,
            Duration::from_secs(settings.database_acquire_timeout_secs),
        )
        .await?;
        store.migrate().await?;
        Self::build_with_store(settings, store).await
    }

    pub async fn build_with_store(settings: &Settings, store: Store) -> anyhow::Result<Self> {
        // Catalog versions start where the log is now: anything read from here on is at least that new.
        let (_, log_position) = store.catalog_log_bounds().await?;
        let versions = Arc::new(CatalogVersions::starting_at(log_position));
        let store = store.with_versions(versions.clone());
        let search = Arc::new(SearchIndex::open(&settings.search_path())?);
        if catalog_feed::needs_rebuild(&store, &search).await? {
            let started = std::time::Instant::now();
            let documents = catalog_feed::rebuild(&store, &search, &indicatif::ProgressBar::hidden()).await?;
            tracing::info!(documents, elapsed_ms = started.elapsed().as_millis() as u64, "search index built");
        }
        catalog_feed::spawn(
            store.clone(),
            search.clone(),
            versions,
            log_position,
            Duration::from_millis(settings.search_poll_ms),
        );
        let shared_cache = match &settings.redis_url {
            Some(url) => Some(
                RedisLayer::connect(url, &settings.redis_prefix, Duration::from_secs(settings.cache_ttl_secs))
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot reach Redis at REDIS_URL: {e}"))?,
            ),
            None => None,
        };
        let catalog = Arc::new(CatalogReads {
            cache: CatalogCache::new(
                settings.cache_max_mb * 1024 * 1024,
                Duration::from_secs(settings.cache_ttl_secs),
                shared_cache,
            ),
            search,
            categories: CategorySnapshot::default(),
            cache_control: cache_control(settings.catalog_max_age_secs),
        });
        let store = match &settings.redis_url {
            Some(url) => {
                let redis = crate::sold_out::RedisSoldOut::connect(url, &settings.redis_prefix)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot reach Redis at REDIS_URL: {e}"))?;
                let sold_out = Arc::new(crate::sold_out::SoldOut::with_redis(redis));
                sold_out.follow();
                store.with_sold_out(sold_out)
            }
            None => store,
        };
        let secret = settings.resolve_jwt_secret()?;
        let test_secret = settings.resolve_test_payment_secret()?;
        let default_currency = Currency::parse(&settings.default_currency)?;
        let base_url = Arc::new(OnceLock::new());
        let providers = payment_providers(settings, base_url.clone())?;
        let shop = Shop {
            carts: CartSettings {
                max_line_quantity: settings.max_line_quantity,
                cart_ttl_days: settings.cart_ttl_days as i64,
                tax_mode: if settings.prices_include_tax { TaxMode::Inclusive } else { TaxMode::Exclusive },
                default_currency,
            },
            reservation_ttl: Duration::from_secs(settings.reservation_ttl_secs),
            payment_unavailable: settings.payment_unavailable,
            // Separate derivations of one secret, so an order token is no signing key.
            order_secret: signature::keyed_hash(secret.as_bytes(), b"order-access").into_bytes(),
            test_payment_secret: test_secret.into_bytes(),
            test_payments: settings.test_payments_enabled(),
            support_refund_limit: settings.support_refund_limit,
            stripe_webhook_secret: settings.stripe_webhook_secret.clone(),
            reset_key: crate::auth::reset::reset_key(&secret),
        };
        let foreground = Arc::new(jobs::Foreground::default());
        let state = AppState {
            store: store.clone(),
            tokens: TokenKeys::new(&secret, settings.access_token_ttl_secs, settings.refresh_token_ttl_secs),
            default_currency,
            metrics: crate::metrics::handle()?,
            shop: Arc::new(shop),
            providers: providers.clone(),
            order_batches: crate::ops::order_batches::OrderBatches::new(store.clone(), ORDER_LANES),
            payment_batches: crate::ops::payment_batches::PaymentBatches::new(store.clone()),
            catalog,
            foreground: foreground.clone(),
        };
        let limiter = Arc::new(InProcessLimiter::new(settings));
        spawn_limiter_cleanup(limiter.clone());
        let limiter: Arc<dyn RateLimiter> = limiter;
        let router = router(state, settings, limiter);
        let listener = TcpListener::bind(settings.listen_addr()?).await?;
        let port = listener.local_addr()?.port();
        let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
        let registry = job_registry(settings, &public_url, &providers)?;
        let _ = base_url.set(public_url);
        if settings.housekeeping {
            housekeeping::spawn_expiry_sweeper(store.clone(), Duration::from_secs(settings.expiry_sweep_secs));
            housekeeping::spawn_scheduler(store.clone(), housekeeping::schedule());
        }
        let workers = (settings.workers > 0).then(|| {
            let worker = jobs::WorkerSettings { foreground, ..worker_settings(settings) };
            jobs::spawn_workers(&store, &registry, settings.workers, &worker)
        });
        // Wherever the stock jobs used to run, and with the housekeeping: a shop
        // always has some process folding its sales.
        if settings.housekeeping || settings.workers > 0 {
            housekeeping::spawn_sales_folder(store.clone(), housekeeping::FOLD_SALES_EVERY);
        }
        jobs::spawn_queue_metrics(store.clone(), Duration::from_secs(15));
        Ok(Self { listener, router, store, registry, workers })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The job handlers this shop's workers run.
    pub fn job_registry(&self) -> &jobs::Registry {
        &self.registry
    }

    /// Serves until SIGTERM or Ctrl-C, then stops accepting, lets in-flight
    /// requests finish and closes the database pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    pub async fn run_until(self, stop: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "listening");
        axum::serve(self.listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop)
            .await?;
        if let Some(workers) = self.workers {
            workers.stop(WORKERS_STOP_WITHIN).await;
        }
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Every configured payment provider, each behind its timeout, retries and circuit
/// breaker. `base_url` is where the `test` provider sends its webhooks (known once
/// the server is bound).
pub fn payment_providers(
    settings: &Settings,
    base_url: Arc<OnceLock<String>>,
) -> anyhow::Result<Arc<[Arc<dyn PaymentProvider>]>> {
    let guard = settings.payment_guard();
    let test_secret = settings.resolve_test_payment_secret()?;
    let mut providers: Vec<Arc<dyn PaymentProvider>> = Vec::new();
    // The simulated gateway pays without money: never next to a real one unless asked.
    if settings.test_payments_enabled() {
        let test = TestProvider::new(&test_secret, Duration::from_millis(settings.test_payment_latency_ms), base_url);
        providers.push(Arc::new(Guarded::new(Arc::new(test), guard)));
    }
    if let Some(key) = &settings.stripe_secret_key {
        let on_shipment = settings.stripe_capture == crate::config::StripeCapture::OnShipment;
        let stripe = StripeProvider::new(key.clone(), &settings.stripe_api_base, on_shipment)?;
        providers.push(Arc::new(Guarded::new(Arc::new(stripe), guard)));
        tracing::info!(api = %settings.stripe_api_base, "stripe payments enabled");
    }
    Ok(Arc::from(providers))
}

/// The handler of every job kind, as `mercato serve` and `mercato worker` run
/// them. `public_url` is where this shop is reachable (for links in e-mails).
pub fn job_registry(
    settings: &Settings,
    public_url: &str,
    providers: &Arc<[Arc<dyn PaymentProvider>]>,
) -> anyhow::Result<jobs::Registry> {
    let registry = jobs::Registry::default()
        .with(crate::notify::EMAIL_SEND, Arc::new(crate::notify::email_handler(settings, public_url)?))
        .with(crate::ops::refunds::EXECUTE_JOB, Arc::new(crate::ops::refunds::ExecuteRefund { providers: providers.clone() }))
        .with(crate::store::webhooks::DELIVER_JOB, Arc::new(crate::ops::webhooks::Deliver::new(Duration::from_secs(10))))
        .with(crate::ops::holds::VOID_JOB, Arc::new(crate::ops::holds::VoidHold { providers: providers.clone() }))
        .with(crate::store::inventory::SETTLE_SALES_JOB, Arc::new(crate::ops::stock::SettleSales))
        .with(jobs::retry_payment::KIND, Arc::new(jobs::retry_payment::RetryPaymentHandler::new(providers.clone())));
    Ok(housekeeping::register(crate::ops::events::register(registry)))
}

pub fn worker_settings(settings: &Settings) -> jobs::WorkerSettings {
    jobs::WorkerSettings { lease: Duration::from_secs(settings.job_lease_secs.max(1)), ..jobs::WorkerSettings::default() }
}

fn spawn_limiter_cleanup(limiter: Arc<InProcessLimiter>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.forget_idle();
        }
    });
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received, draining");
}
