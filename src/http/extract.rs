//! Request extractors: JSON bodies that fail as problem+json naming the field,
//! staff authentication with the permission a route declares, and the request id.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::AppState;
use crate::auth::tokens::{Audience, TokenError};
use crate::domain::rbac::{Permission, Role};
use crate::domain::validation::FieldError;
use crate::error::ApiError;
use crate::store::audit::Actor;

/// A JSON body. Syntax errors are 400 `malformed_json`; a well-formed body of the
/// wrong shape (missing field, unknown field, wrong type) is 422 naming the field.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::bad_request("unreadable_body", "the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::Validation(vec![FieldError {
                field: if path == "." { String::new() } else { path },
                code: "invalid".into(),
                message: strip_position(&inner.to_string()),
            }]),
            _ => ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {}", inner)),
        }
    })
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A permission a route requires, as a type, so the handler signature declares it.
pub trait RequiredPermission {
    const PERMISSION: Permission;
}

pub mod perm {
    use super::{Permission, RequiredPermission};

    macro_rules! markers {
        ($($name:ident => $perm:ident),* $(,)?) => {$(
            pub struct $name;
            impl RequiredPermission for $name {
                const PERMISSION: Permission = Permission::$perm;
            }
        )*};
    }

    markers! {
        CatalogRead => CatalogRead,
        CatalogWrite => CatalogWrite,
        InventoryRead => InventoryRead,
        InventoryWrite => InventoryWrite,
        OrdersRead => OrdersRead,
        OrdersFulfil => OrdersFulfil,
        OrdersRefund => OrdersRefund,
        StaffManage => StaffManage,
        SettingsManage => SettingsManage,
        JobsManage => JobsManage,
        AuditRead => AuditRead,
        PromotionsRead => PromotionsRead,
        CustomersManage => CustomersManage,
        PromotionsManage => PromotionsManage,
    }
}

/// The authenticated staff member of a request, already checked for `P`.
pub struct Staff<P> {
    pub id: Uuid,
    pub role: Role,
    pub request_id: Option<String>,
    _permission: PhantomData<P>,
}

impl<P> Staff<P> {
    pub fn actor(&self) -> Actor {
        Actor::staff(self.id, self.request_id.clone())
    }
}

impl<S, P> FromRequestParts<S> for Staff<P>
where
    AppState: FromRef<S>,
    S: Send + Sync,
    P: RequiredPermission + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = bearer(parts).ok_or(ApiError::Unauthorized("missing_token"))?;
        let claims = state.tokens.verify(Audience::Staff, token).map_err(token_error)?;
        // The role is read from the database, not the token, so a demotion or a
        // deactivation takes effect on the next request.
        let member =
            state.store.staff_by_id(claims.sub).await?.filter(|m| m.active).ok_or(ApiError::Unauthorized("invalid_token"))?;
        if !member.role.grants(P::PERMISSION) {
            return Err(ApiError::Forbidden(P::PERMISSION.scope()));
        }
        Ok(Staff { id: member.id, role: member.role, request_id: request_id(parts), _permission: PhantomData })
    }
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::Expired => ApiError::Unauthorized("token_expired"),
        TokenError::Invalid => ApiError::Unauthorized("invalid_token"),
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

pub fn request_id(parts: &Parts) -> Option<String> {
    parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A path id that answers 404, not 400, when it is not a UUID (it cannot exist).
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await.map_err(|_| ApiError::NotFound("resource"))?;
        Uuid::parse_str(&raw).map(PathId).map_err(|_| ApiError::NotFound("resource"))
    }
}

/// Query parameters that fail as problem+json.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request("invalid_query", format!("invalid query parameters: {e}")))
    }
}

/// A signed-in customer (storefront audience). Staff tokens are refused here.
pub struct Customer {
    pub id: Uuid,
}

impl<S> FromRequestParts<S> for Customer
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = bearer(parts).ok_or(ApiError::Unauthorized("missing_token"))?;
        customer_from_token(&state, token).await.map(|id| Customer { id })
    }
}

async fn customer_from_token(state: &AppState, token: &str) -> Result<Uuid, ApiError> {
    let claims = state.tokens.verify(Audience::Customer, token).map_err(token_error)?;
    state.store.customer_by_id(claims.sub).await?.map(|c| c.id).ok_or(ApiError::Unauthorized("invalid_token"))
}

/// Whoever is shopping: a customer (when a bearer token is sent, it must be
/// valid) and/or the holder of a guest cart token (`X-Cart-Token`).
pub struct ShopperAuth(pub crate::ops::carts::Shopper);

impl<S> FromRequestParts<S> for ShopperAuth
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let customer_id = match bearer(parts) {
            Some(token) => Some(customer_from_token(&state, token).await?),
            None => None,
        };
        let cart_token = parts.headers.get("x-cart-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(ShopperAuth(crate::ops::carts::Shopper { customer_id, cart_token }))
    }
}

/// Two path ids (`/carts/{id}/items/{item_id}`); anything not a UUID is a 404.
pub struct PathIds(pub Uuid, pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((a, b)) = axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("resource"))?;
        match (Uuid::parse_str(&a), Uuid::parse_str(&b)) {
            (Ok(a), Ok(b)) => Ok(PathIds(a, b)),
            _ => Err(ApiError::NotFound("resource")),
        }
    }
}
