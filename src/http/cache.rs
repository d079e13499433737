//! HTTP caching of public catalog reads: a strong `ETag` over the exact body and
//! `Cache-Control` (max-age configurable) so a CDN can hold them;
//! `If-None-Match` answers 304.

use std::future::Future;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use crate::cache::{Cached, Kind};
use crate::error::{ApiError, ApiResult};

/// `Cache-Control` of catalog answers held for `max_age_secs`.
pub fn cache_control(max_age_secs: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("public, max-age={max_age_secs}, stale-while-revalidate={}", max_age_secs * 2))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

/// The answer under `key` from the catalog cache (else `load`), as an HTTP answer.
pub async fn cached_json<T, F>(state: &AppState, request: &HeaderMap, kind: Kind, key: String, load: F) -> ApiResult<Response>
where
    T: Serialize,
    F: Future<Output = ApiResult<T>>,
{
    let cached = state
        .catalog
        .cache
        .get_or_load(kind, key, async { Ok(serde_json::to_vec(&load.await?).map_err(anyhow::Error::from)?) })
        .await?;
    respond(request, &cached, state.catalog.cache_control.clone())
}

fn respond(request: &HeaderMap, cached: &Cached, cache_control: HeaderValue) -> Result<Response, ApiError> {
    let etag = HeaderValue::from_str(&cached.etag).map_err(anyhow::Error::from)?;
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == cached.etag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache_control)]).into_response());
    }
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache_control),
        ],
        cached.body.clone(),
    )
        .into_response())
}
