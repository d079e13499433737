//! The one place where failures become HTTP answers. Every error leaves as RFC 9457
//! `application/problem+json` whose `type` is a stable snake_case code: clients
//! branch on it, so a code never changes once shipped. Internal causes are logged
//! with the request id and never echoed.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::category_tree::MoveError;
use crate::domain::validation::FieldError;
use crate::store::StoreError;
use crate::store::catalog::CatalogError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422 with every offending field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 400: the request could not be understood at all (malformed JSON, bad cursor, unknown sort...).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String, field: Option<String> },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("missing permission {0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: the request conflicts with stored state (a duplicate SKU, a non-empty category...).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String, errors: Vec<FieldError> },
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("this route does not accept that method")]
    MethodNotAllowed,
    /// 410: the cart existed but is past its lifetime.
    #[error("this cart has expired; start a new one")]
    CartExpired,
    /// 422 about the request as a whole rather than a field.
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    /// The order's state does not allow this; the answer lists what it allows.
    #[error("{0}")]
    InvalidTransition(crate::domain::order_status::TransitionError),
    /// 403: the role may refund an order only up to a configured total.
    #[error("with your role, refunds on one order may total at most {limit} (minor units); ask an owner")]
    RefundLimitExceeded { limit: i64 },
    #[error("the payment was declined (order {0})")]
    PaymentDeclined(String),
    #[error("the payment provider is unavailable; nothing was charged and the items were released")]
    PaymentUnavailable,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error("the shop is too busy to answer now; retry shortly")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest { code, detail: detail.into(), field: None }
    }

    pub fn bad_field(code: &'static str, field: &str, detail: impl Into<String>) -> Self {
        Self::BadRequest { code, detail: detail.into(), field: Some(field.to_owned()) }
    }

    pub fn conflict(code: &'static str, field: Option<&str>, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let errors = field
            .map(|f| vec![FieldError { field: f.to_owned(), code: code.to_owned(), message: detail.clone() }])
            .unwrap_or_default();
        Self::Conflict { code, detail, errors }
    }

    pub fn invalid_field(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError { field: field.into(), code: code.into(), message: message.into() }])
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized(code) => (StatusCode::UNAUTHORIZED, code),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::CartExpired => (StatusCode::GONE, "cart_expired"),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::InvalidTransition(_) => (StatusCode::CONFLICT, "invalid_transition"),
            ApiError::RefundLimitExceeded { .. } => (StatusCode::FORBIDDEN, "refund_limit_exceeded"),
            ApiError::PaymentDeclined(_) => (StatusCode::PAYMENT_REQUIRED, "payment_declined"),
            ApiError::PaymentUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "payment_unavailable"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

/// The problem document. `type` is a relative URI reference holding the stable code.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable machine-readable code, e.g. `validation_failed`, `duplicate_sku`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every offending field (validation failures), or the one field a 400/409 is about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The permission a 403 was missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_permission: Option<String>,
    /// For `invalid_transition`: the order's status now and what it allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_status: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_events: Vec<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut errors = Vec::new();
        let mut required_permission = None;
        let (mut current_status, mut allowed_events) = (None, Vec::new());
        let detail = match &self {
            ApiError::Validation(fields) => {
                errors = fields.clone();
                Some(format!("{} field(s) are invalid", fields.len()))
            }
            ApiError::BadRequest { detail, field, .. } => {
                if let Some(f) = field {
                    errors.push(FieldError { field: f.clone(), code: code.to_owned(), message: detail.clone() });
                }
                Some(detail.clone())
            }
            ApiError::Conflict { detail, errors: fields, .. } => {
                errors = fields.clone();
                Some(detail.clone())
            }
            ApiError::Unauthorized(code) => Some(
                match *code {
                    "missing_token" => "send `Authorization: Bearer <access token>`",
                    "token_expired" => "the access token has expired; refresh it",
                    "invalid_token" => "the access token is not valid here",
                    "invalid_credentials" => "the e-mail or the password is wrong",
                    "invalid_refresh_token" => "the refresh token is unknown, expired or revoked",
                    "refresh_token_reused" => "this refresh token was already used; the session has been ended, log in again",
                    other => other,
                }
                .to_owned(),
            ),
            ApiError::Forbidden(permission) => {
                required_permission = Some((*permission).to_owned());
                Some(format!("this action needs the `{permission}` permission"))
            }
            ApiError::InvalidTransition(t) => {
                current_status = Some(t.from.as_str().to_owned());
                allowed_events = t.allowed();
                Some(t.to_string())
            }
            ApiError::Internal(err) => {
                // The cause stays in the log (with the request id from the span); the client gets a code.
                tracing::error!(error = ?err, "internal error");
                None
            }
            other => Some(other.to_string()),
        };
        let body = Problem {
            kind: code.to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            errors,
            required_permission,
            current_status,
            allowed_events,
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
            }
            ApiError::Unavailable | ApiError::PaymentUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Unique("products_slug_key") => {
                ApiError::conflict("duplicate_slug", Some("slug"), "another product already uses this slug")
            }
            StoreError::Unique("categories_slug_key") => {
                ApiError::conflict("duplicate_slug", Some("slug"), "another category already uses this slug")
            }
            StoreError::Unique("variants_options_key") => {
                ApiError::invalid_field("options", "duplicate", "another variant already has these option values")
            }
            StoreError::ForeignKey => ApiError::conflict(
                "concurrent_change",
                None,
                "something this request refers to was changed or removed at the same moment; retry",
            ),
            StoreError::Unique("variants_sku_key") => {
                ApiError::conflict("duplicate_sku", Some("sku"), "this SKU is already in use")
            }
            StoreError::Unique("customers_email_key") => {
                ApiError::conflict("duplicate_email", Some("email"), "an account with this e-mail exists; log in instead")
            }
            StoreError::Unique("stock_locations_code_key") => {
                ApiError::conflict("duplicate_code", Some("code"), "a location with this code exists")
            }
            StoreError::Unique("staff_email_key") => {
                ApiError::conflict("duplicate_email", Some("email"), "a staff account with this e-mail exists")
            }
            StoreError::Db(e) if is_overload(&e) => {
                tracing::warn!(error = %e, "database overloaded");
                ApiError::Unavailable
            }
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Errors that mean "too busy right now", not "broken": no connection free in
/// time, SQLite's write lock still held after the busy timeout, a PostgreSQL
/// deadlock or serialisation failure. The client should retry.
fn is_overload(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("40P01" | "40001" | "55P03" | "5" | "6" | "517"))
                || db.message().contains("database is locked")
        }
        _ => false,
    }
}

impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::UnknownCategories(ids) => ApiError::Validation(
                ids.iter()
                    .map(|id| FieldError {
                        field: "category_ids".into(),
                        code: "unknown_category".into(),
                        message: format!("category {id} does not exist"),
                    })
                    .collect(),
            ),
            CatalogError::SkusTaken(skus) => ApiError::Conflict {
                code: "duplicate_sku",
                detail: format!("{} SKU(s) already in use", skus.len()),
                errors: skus
                    .iter()
                    .map(|s| FieldError {
                        field: "sku".into(),
                        code: "duplicate_sku".into(),
                        message: format!("SKU {s} is already in use"),
                    })
                    .collect(),
            },
            CatalogError::Move(e) => {
                let code = match e {
                    MoveError::UnknownParent => "unknown_category",
                    MoveError::Cycle => "category_cycle",
                    MoveError::TooDeep => "category_too_deep",
                };
                ApiError::invalid_field("parent_id", code, e.to_string())
            }
            CatalogError::CategoryInUse => {
                ApiError::conflict("category_not_empty", None, "the category still has subcategories or products")
            }
            CatalogError::Invalid(fields) => ApiError::Validation(fields),
            CatalogError::Store(e) => e.into(),
        }
    }
}
