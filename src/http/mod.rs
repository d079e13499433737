//! The HTTP edge: routes and their OpenAPI description are registered together,
//! then wrapped in the cross-cutting layers (request id, tracing, metrics, rate
//! limits, body limits, CORS, security headers).

pub mod admin_catalog;
pub mod admin_inventory;
pub mod admin_jobs;
pub mod admin_order_actions;
pub mod admin_orders;
pub mod admin_settings;
pub mod admin_staff;
pub mod admin_webhooks;
pub mod cache;
pub mod carts;
pub mod catalog;
pub mod customers;
pub mod extract;
pub mod health;
pub mod orders;
pub mod payments;
pub mod promotions;
pub mod rate_limit;
pub mod search;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::LatencyUnit;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::tokens::TokenKeys;
use crate::config::{PaymentUnavailable, Secret, Settings};
use crate::domain::money::Currency;
use crate::error::ApiError;
use crate::ops::carts::CartSettings;
use crate::ops::checkout::CheckoutContext;
use crate::payments::PaymentProvider;
use crate::store::Store;
use rate_limit::{LimitState, RateLimiter};

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub tokens: TokenKeys,
    pub default_currency: Currency,
    pub metrics: PrometheusHandle,
    pub shop: Arc<Shop>,
    pub providers: Arc<[Arc<dyn PaymentProvider>]>,
    pub order_batches: crate::ops::order_batches::OrderBatches,
    pub payment_batches: crate::ops::payment_batches::PaymentBatches,
    pub catalog: Arc<CatalogReads>,
    /// Checkouts in flight, which this process's job workers make way for.
    pub foreground: Arc<crate::jobs::Foreground>,
}

/// What public catalog reads are served from.
pub struct CatalogReads {
    pub cache: crate::cache::CatalogCache,
    pub search: Arc<crate::search::SearchIndex>,
    pub categories: crate::ops::search::CategorySnapshot,
    /// `Cache-Control` of catalog answers.
    pub cache_control: HeaderValue,
}

/// Shop-wide settings the storefront handlers need.
pub struct Shop {
    pub carts: CartSettings,
    pub reservation_ttl: Duration,
    pub payment_unavailable: PaymentUnavailable,
    /// Derives guest order access tokens.
    pub order_secret: Vec<u8>,
    /// Verifies the `test` provider's webhooks.
    pub test_payment_secret: Vec<u8>,
    /// Whether the `test` provider (and its webhook route) is on.
    pub test_payments: bool,
    /// Highest refund total per order for `support` staff (minor units).
    pub support_refund_limit: i64,
    /// Verifies Stripe's webhooks, when Stripe is configured.
    pub stripe_webhook_secret: Option<Secret>,
    /// Derives password reset tokens (`auth::reset`).
    pub reset_key: Vec<u8>,
}

impl AppState {
    pub fn checkout_context(&self) -> CheckoutContext<'_> {
        CheckoutContext {
            store: &self.store,
            batches: &self.order_batches,
            payments: &self.payment_batches,
            providers: &self.providers,
            carts: self.shop.carts,
            reservation_ttl: self.shop.reservation_ttl,
            payment_unavailable: self.shop.payment_unavailable,
            secret: &self.shop.order_secret,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mercato",
        description = "Headless commerce engine. Storefront under `/v1`, staff under `/v1/admin`. \
            Errors are RFC 9457 problem+json with a stable `type` code. Admin routes list the \
            permission they need as the scope of `staff_token`.",
    ),
    modifiers(&SecurityAddon),
    components(schemas(crate::error::Problem, crate::domain::validation::FieldError)),
    tags(
        (name = "storefront", description = "Public catalog reads"),
        (name = "admin-auth", description = "Staff sessions"),
        (name = "admin-catalog", description = "Products, variants, categories"),
        (name = "admin-staff", description = "Staff accounts and the audit log"),
        (name = "admin-inventory", description = "Stock locations, levels, adjustments and the ledger"),
        (name = "admin-settings", description = "Shipping options and tax rates"),
        (name = "admin-promotions", description = "Promotions, coupon codes and redemptions"),
        (name = "admin-orders", description = "Orders and their history"),
        (name = "admin-jobs", description = "The durable job queue"),
        (name = "customers", description = "Customer accounts, addresses and order history"),
        (name = "carts", description = "Carts, checkout and order lookup"),
        (name = "payments", description = "Payment provider webhooks"),
        (name = "operations", description = "Health and metrics"),
    )
)]
struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        components.add_security_scheme("staff_token", SecurityScheme::Http(bearer.clone()));
        components.add_security_scheme("customer_token", SecurityScheme::Http(bearer));
    }
}

/// Every route with its OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(catalog::list_products))
        .routes(routes!(catalog::get_product))
        .routes(routes!(catalog::list_categories))
        .routes(routes!(search::search))
        .routes(routes!(search::suggest))
        .routes(routes!(search::index_status))
        .routes(routes!(search::reindex))
        .routes(routes!(admin_staff::login))
        .routes(routes!(admin_staff::refresh))
        .routes(routes!(admin_staff::logout))
        .routes(routes!(admin_staff::list_staff, admin_staff::create_staff))
        .routes(routes!(admin_staff::update_staff))
        .routes(routes!(admin_staff::audit_log))
        .routes(routes!(admin_catalog::list_products, admin_catalog::create_product))
        .routes(routes!(admin_catalog::get_product, admin_catalog::update_product))
        .routes(routes!(admin_catalog::add_variant))
        .routes(routes!(admin_catalog::update_variant))
        .routes(routes!(admin_catalog::list_categories, admin_catalog::create_category))
        .routes(routes!(admin_catalog::update_category, admin_catalog::delete_category))
        .routes(routes!(admin_inventory::list_locations, admin_inventory::create_location))
        .routes(routes!(admin_inventory::adjust))
        .routes(routes!(admin_inventory::low_stock))
        .routes(routes!(admin_inventory::reconcile))
        .routes(routes!(admin_inventory::level, admin_inventory::set_threshold))
        .routes(routes!(admin_settings::list_shipping, admin_settings::create_shipping))
        .routes(routes!(admin_settings::list_tax, admin_settings::put_tax))
        .routes(routes!(admin_webhooks::list_subscriptions, admin_webhooks::create_subscription))
        .routes(routes!(admin_webhooks::delete_subscription))
        .routes(routes!(promotions::list_promotions, promotions::create_promotion))
        .routes(routes!(promotions::get_promotion, promotions::update_promotion))
        .routes(routes!(promotions::list_codes, promotions::add_codes))
        .routes(routes!(promotions::redemptions))
        .routes(routes!(promotions::set_segments))
        .routes(routes!(promotions::list_collections, promotions::create_collection))
        .routes(routes!(promotions::update_collection))
        .routes(routes!(promotions::apply_code))
        .routes(routes!(promotions::remove_code))
        .routes(routes!(admin_jobs::list_jobs))
        .routes(routes!(admin_jobs::retry_job))
        .routes(routes!(admin_orders::list_orders))
        .routes(routes!(admin_orders::get_order))
        .routes(routes!(admin_orders::order_history))
        .routes(routes!(admin_order_actions::create_shipment))
        .routes(routes!(admin_order_actions::deliver))
        .routes(routes!(admin_order_actions::cancel))
        .routes(routes!(admin_order_actions::create_refund))
        .routes(routes!(admin_order_actions::resolve_refund))
        .routes(routes!(admin_order_actions::request_return))
        .routes(routes!(admin_order_actions::receive_return))
        .routes(routes!(admin_order_actions::customer_return))
        .routes(routes!(customers::register))
        .routes(routes!(customers::login))
        .routes(routes!(customers::refresh))
        .routes(routes!(customers::logout))
        .routes(routes!(customers::me))
        .routes(routes!(customers::list_addresses, customers::add_address))
        .routes(routes!(customers::delete_address))
        .routes(routes!(customers::my_orders))
        .routes(routes!(customers::request_password_reset))
        .routes(routes!(customers::confirm_password_reset))
        .routes(routes!(carts::create_cart))
        .routes(routes!(carts::get_cart))
        .routes(routes!(carts::add_item))
        .routes(routes!(carts::set_item, carts::remove_item))
        .routes(routes!(carts::checkout))
        .routes(routes!(orders::get_order))
        .routes(routes!(payments::test_webhook))
        .routes(routes!(payments::stripe_webhook))
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

pub fn router(state: AppState, settings: &Settings, limiter: Arc<dyn RateLimiter>) -> Router {
    let (routes, openapi) = api().split_for_parts();
    let docs = Router::<AppState>::new().merge(SwaggerUi::new("/docs").url("/v1/openapi.json", openapi)).layer(
        SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'",
            ),
        ),
    );
    let request_id = HeaderName::from_static("x-request-id");
    let limits = LimitState { limiter, trust_forwarded_for: settings.trust_forwarded_for };

    let app = routes
        .merge(docs)
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        // Metrics wrap the limiter so refused requests are counted too.
        .layer(axum::middleware::from_fn_with_state(limits, rate_limit::middleware))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes));

    let security_headers = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")));

    let app = app.layer(security_headers);
    let app = match cors(settings) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(
        ServiceBuilder::new()
            .layer(axum::middleware::map_request(drop_unusable_request_id))
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &axum::http::Request<_>| {
                        let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                    })
                    // One access-log line per request, inside the request span.
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Micros)),
            )
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(settings.request_timeout_secs),
            )),
    )
}

/// A client-supplied request id is logged and stored in the audit log, so only
/// short, plain ones are kept; anything else is replaced by a generated one.
async fn drop_unusable_request_id(mut req: axum::extract::Request) -> axum::extract::Request {
    let usable = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).is_some_and(|v| {
        !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    if !usable {
        req.headers_mut().remove("x-request-id");
    }
    req
}

fn cors(settings: &Settings) -> Option<CorsLayer> {
    let origins = settings.cors_origins();
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-cart-token"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([header::ETAG, header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
            .max_age(Duration::from_secs(3600)),
    )
}
