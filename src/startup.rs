//! Building and running the application. `Application::build` connects, migrates
//! and binds before it returns, so callers (tests included, with port 0) know the
//! port and that the shop is ready.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::tokens::TokenKeys;
use crate::config::Settings;
use crate::domain::money::Currency;
use crate::http::rate_limit::{InProcessLimiter, RateLimiter};
use crate::http::{AppState, router};
use crate::store::Store;

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    store: Store,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        settings.check_safety()?;
        let store = Store::connect(&settings.database_url(), settings.database_max_connections).await?;
        store.migrate().await?;
        Self::build_with_store(settings, store).await
    }

    pub async fn build_with_store(settings: &Settings, store: Store) -> anyhow::Result<Self> {
        let secret = settings.resolve_jwt_secret()?;
        let state = AppState {
            store: store.clone(),
            tokens: TokenKeys::new(&secret, settings.access_token_ttl_secs, settings.refresh_token_ttl_secs),
            default_currency: Currency::parse(&settings.default_currency)?,
            metrics: crate::metrics::handle()?,
        };
        let limiter = Arc::new(InProcessLimiter::new(settings));
        spawn_limiter_cleanup(limiter.clone());
        let limiter: Arc<dyn RateLimiter> = limiter;
        let router = router(state, settings, limiter);
        let listener = TcpListener::bind(settings.listen_addr()?).await?;
        Ok(Self { listener, router, store })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn store(&self) -> &Store {
        &self.store
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
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
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

async fn shutdown_signal() {
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
