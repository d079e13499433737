//! Rate limits per client and per route: every (client, route) pair has its own
//! budget, sized by the route's class (logins are the strictest). The limiter is a
//! trait so the in-process implementation (one process) can be swapped for a
//! shared one (several instances behind a load balancer) without touching the
//! middleware.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};

use crate::config::Settings;
use crate::error::ApiError;

/// Which budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitClass {
    Login,
    /// Applying coupon codes to carts: each try could be a guess.
    CodeAttempt,
    Read,
    Write,
}

impl LimitClass {
    pub fn of(method: &Method, path: &str) -> Option<Self> {
        // Health checks, and payment providers' webhooks: a provider delivering a
        // burst after a flash sale must not be throttled into giving up.
        if matches!(path, "/healthz" | "/readyz" | "/metrics") || path.starts_with("/v1/payments/webhooks/") {
            return None;
        }
        // Password resets mail a stranger's inbox and try tokens: as strict as logins.
        if path.ends_with("/auth/login") || path.starts_with("/v1/customers/password-reset") {
            return Some(LimitClass::Login);
        }
        if method == Method::POST && path.starts_with("/v1/carts/") && path.ends_with("/promotions") {
            return Some(LimitClass::CodeAttempt);
        }
        if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
            Some(LimitClass::Read)
        } else {
            Some(LimitClass::Write)
        }
    }
}

pub type Check<'a> = Pin<Box<dyn Future<Output = Result<(), Duration>> + Send + 'a>>;

/// Whose budget a request draws from: a client on one route (method and matched path).
pub type ClientRoute = (IpAddr, Arc<str>);

/// Decides whether `key` may spend one unit of `class` now; `Err(wait)` when not.
pub trait RateLimiter: Send + Sync {
    fn check<'a>(&'a self, class: LimitClass, key: &'a ClientRoute) -> Check<'a>;
}

type Keyed = Governor<ClientRoute, DefaultKeyedStateStore<ClientRoute>, DefaultClock>;

/// Token buckets (GCRA) in this process's memory.
pub struct InProcessLimiter {
    login: Keyed,
    code_attempt: Keyed,
    read: Keyed,
    write: Keyed,
    clock: DefaultClock,
}

impl InProcessLimiter {
    pub fn new(settings: &Settings) -> Self {
        let nz = |n: u32| NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        let per_second = |n: u32| Quota::per_second(nz(n)).allow_burst(nz(n.saturating_mul(2)));
        Self {
            login: Governor::keyed(Quota::per_minute(nz(settings.rate_limit_logins_per_minute))),
            code_attempt: Governor::keyed(Quota::per_minute(nz(settings.rate_limit_code_attempts_per_minute))),
            read: Governor::keyed(per_second(settings.rate_limit_reads_per_second)),
            write: Governor::keyed(per_second(settings.rate_limit_writes_per_second)),
            clock: DefaultClock::default(),
        }
    }

    /// Forgets clients whose buckets are full again, so memory follows active clients.
    pub fn forget_idle(&self) {
        self.login.retain_recent();
        self.code_attempt.retain_recent();
        self.read.retain_recent();
        self.write.retain_recent();
    }
}

impl RateLimiter for InProcessLimiter {
    fn check<'a>(&'a self, class: LimitClass, key: &'a ClientRoute) -> Check<'a> {
        let limiter = match class {
            LimitClass::Login => &self.login,
            LimitClass::CodeAttempt => &self.code_attempt,
            LimitClass::Read => &self.read,
            LimitClass::Write => &self.write,
        };
        let result = limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(self.clock.now()));
        Box::pin(std::future::ready(result))
    }
}

#[derive(Clone)]
pub struct LimitState {
    pub limiter: Arc<dyn RateLimiter>,
    pub trust_forwarded_for: bool,
}

pub async fn middleware(State(state): State<LimitState>, req: Request, next: Next) -> Response {
    let Some(class) = LimitClass::of(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str());
    let key: ClientRoute = (client_ip(&req, state.trust_forwarded_for), Arc::from(format!("{} {route}", req.method())));
    match state.limiter.check(class, &key).await {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            metrics::counter!("http_rate_limited_total", "class" => format!("{class:?}").to_lowercase()).increment(1);
            ApiError::RateLimited { retry_after_secs: wait.as_secs_f64().ceil() as u64 }.into_response()
        }
    }
}

fn client_ip(req: &Request, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for {
        // The last entry is the one our own proxy appended; earlier ones are
        // whatever the client chose to send.
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip()).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_over_its_budget_is_told_when_to_come_back() {
        let settings = Settings { rate_limit_logins_per_minute: 2, ..Settings::default() };
        let limiter = InProcessLimiter::new(&settings);
        let key = |ip: &str, route: &str| -> ClientRoute { (ip.parse().unwrap(), Arc::from(route)) };
        let a = key("10.0.0.1", "POST /v1/admin/auth/login");
        assert!(limiter.check(LimitClass::Login, &a).await.is_ok());
        assert!(limiter.check(LimitClass::Login, &a).await.is_ok());
        let wait = limiter.check(LimitClass::Login, &a).await.unwrap_err();
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(30), "{wait:?}");
        // Another client, another route and another class each have their own budget.
        assert!(limiter.check(LimitClass::Login, &key("10.0.0.2", "POST /v1/admin/auth/login")).await.is_ok());
        assert!(limiter.check(LimitClass::Login, &key("10.0.0.1", "POST /v1/auth/login")).await.is_ok());
        assert!(limiter.check(LimitClass::Read, &key("10.0.0.1", "GET /v1/products")).await.is_ok());
    }

    #[test]
    fn routes_are_classified() {
        assert_eq!(LimitClass::of(&Method::POST, "/v1/admin/auth/login"), Some(LimitClass::Login));
        assert_eq!(LimitClass::of(&Method::POST, "/v1/customers/password-reset"), Some(LimitClass::Login));
        assert_eq!(LimitClass::of(&Method::POST, "/v1/customers/password-reset/confirm"), Some(LimitClass::Login));
        assert_eq!(LimitClass::of(&Method::GET, "/v1/products"), Some(LimitClass::Read));
        assert_eq!(LimitClass::of(&Method::PATCH, "/v1/admin/products/x"), Some(LimitClass::Write));
        assert_eq!(LimitClass::of(&Method::GET, "/healthz"), None);
        assert_eq!(LimitClass::of(&Method::POST, "/v1/carts/x/promotions"), Some(LimitClass::CodeAttempt));
        assert_eq!(LimitClass::of(&Method::DELETE, "/v1/carts/x/promotions/CODE"), Some(LimitClass::Write));
        assert_eq!(LimitClass::of(&Method::POST, "/v1/payments/webhooks/test"), None);
    }
}
