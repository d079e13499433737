//! The cache of catalog answers (product pages, lists, categories, search):
//! in process (moka), and in Redis as a second layer shared by every instance
//! when `REDIS_URL` is set.
//!
//! Keys carry the catalog version they were read at (`CatalogVersions`, or the
//! search index position), so a change anywhere moves the key on every instance
//! as soon as its feed has read the change; nothing is ever invalidated in
//! place, and a short TTL bounds memory and any mistake. Only public catalog
//! reads go through here: carts and checkout price from the database every time.

mod redis_layer;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;
use moka::notification::RemovalCause;
use sha2::{Digest, Sha256};

pub use redis_layer::RedisLayer;

use crate::error::ApiError;

/// A serialised answer and its strong ETag.
#[derive(Debug, Clone)]
pub struct Cached {
    pub body: Bytes,
    pub etag: String,
}

impl Cached {
    pub fn new(body: Vec<u8>) -> Self {
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", digest[..12].iter().map(|b| format!("{b:02x}")).collect::<String>());
        Self { body: Bytes::from(body), etag }
    }
}

/// What is cached, for metrics and key spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Product,
    Slug,
    List,
    Categories,
    Search,
    Suggest,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Product => "product",
            Kind::Slug => "slug",
            Kind::List => "list",
            Kind::Categories => "categories",
            Kind::Search => "search",
            Kind::Suggest => "suggest",
        }
    }
}

#[derive(Clone)]
pub struct CatalogCache {
    /// None: caching is off (a size of 0), every read goes to the database.
    local: Option<Cache<String, Arc<Cached>>>,
    shared: Option<RedisLayer>,
}

impl CatalogCache {
    /// A cache of at most `max_bytes` of answers (0: no cache at all), each kept at most `ttl`.
    pub fn new(max_bytes: u64, ttl: Duration, shared: Option<RedisLayer>) -> Self {
        if max_bytes == 0 {
            return Self { local: None, shared: None };
        }
        let local = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, value: &Arc<Cached>| {
                u32::try_from(key.len() + value.body.len() + value.etag.len()).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .eviction_listener(|_, _, cause| {
                if cause == RemovalCause::Size {
                    metrics::counter!("mercato_cache_evictions_total", "layer" => "local").increment(1);
                }
            })
            .build();
        Self { local: Some(local), shared }
    }

    /// The answer under `key` (which must name the version it depends on), from
    /// this process, else Redis, else `load` — once per key however many ask at
    /// the same time.
    pub async fn get_or_load<F>(&self, kind: Kind, key: String, load: F) -> Result<Arc<Cached>, ApiError>
    where
        F: Future<Output = Result<Vec<u8>, ApiError>>,
    {
        let Some(local) = &self.local else {
            return Ok(Arc::new(Cached::new(load.await?)));
        };
        let missed = AtomicBool::new(false);
        let full_key = format!("{}:{key}", kind.as_str());
        let result = local
            .try_get_with(full_key.clone(), async {
                missed.store(true, Ordering::Relaxed);
                if let Some(shared) = &self.shared
                    && let Some(found) = shared.get(&full_key).await
                {
                    metrics::counter!("mercato_cache_requests_total", "cache" => kind.as_str(), "result" => "redis_hit")
                        .increment(1);
                    return Ok(Arc::new(found));
                }
                metrics::counter!("mercato_cache_requests_total", "cache" => kind.as_str(), "result" => "miss").increment(1);
                let cached = Arc::new(Cached::new(load.await?));
                if let Some(shared) = &self.shared {
                    shared.put(full_key.clone(), cached.clone());
                }
                Ok(cached)
            })
            .await
            .map_err(unshare);
        if !missed.load(Ordering::Relaxed) {
            metrics::counter!("mercato_cache_requests_total", "cache" => kind.as_str(), "result" => "hit").increment(1);
        }
        result
    }
}

/// The error of a load that several requests waited for, for each of them.
fn unshare(e: Arc<ApiError>) -> ApiError {
    match Arc::try_unwrap(e) {
        Ok(e) => e,
        Err(shared) => match &*shared {
            ApiError::NotFound(what) => ApiError::NotFound(what),
            ApiError::Unavailable => ApiError::Unavailable,
            ApiError::Validation(errors) => ApiError::Validation(errors.clone()),
            ApiError::BadRequest { code, detail, field } => {
                ApiError::BadRequest { code, detail: detail.clone(), field: field.clone() }
            }
            other => ApiError::Internal(anyhow::anyhow!("{other}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_misses_load_once_and_errors_are_not_kept() {
        let cache = CatalogCache::new(1 << 20, Duration::from_secs(60), None);
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ask = |key: &'static str| {
            let (cache, loads) = (cache.clone(), loads.clone());
            async move {
                cache
                    .get_or_load(Kind::Product, key.into(), async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(b"{}".to_vec())
                    })
                    .await
            }
        };
        let answers = futures_util::future::join_all((0..8).map(|_| ask("a:1"))).await;
        assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|c| &c.body[..] == b"{}")));
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        let failed = cache.get_or_load(Kind::Product, "b:1".into(), async { Err(ApiError::NotFound("product")) }).await;
        assert!(matches!(failed, Err(ApiError::NotFound("product"))));
        let later = cache.get_or_load(Kind::Product, "b:1".into(), async { Ok(b"[]".to_vec()) }).await.unwrap();
        assert_eq!(&later.body[..], b"[]");
    }

    #[test]
    fn the_etag_is_strong_and_follows_the_body() {
        let (a, b) = (Cached::new(b"one".to_vec()), Cached::new(b"two".to_vec()));
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"') && !a.etag.starts_with("W/"));
        assert_ne!(a.etag, b.etag);
        assert_eq!(a.etag, Cached::new(b"one".to_vec()).etag);
    }
}
