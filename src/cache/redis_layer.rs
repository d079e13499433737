//! The shared second layer: answers in Redis under the same versioned keys, so
//! one instance's database read serves the others. Redis trouble never fails a
//! read: every call is bounded by a short timeout and a failure is a miss.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::Cached;

/// Longest wait for Redis before reading the database instead.
const TIMEOUT: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct RedisLayer {
    conn: ConnectionManager,
    prefix: String,
    ttl: Duration,
}

impl RedisLayer {
    pub async fn connect(url: &str, prefix: &str, ttl: Duration) -> redis::RedisResult<Self> {
        let conn = redis::Client::open(url)?.get_connection_manager().await?;
        Ok(Self { conn, prefix: format!("{prefix}cache:"), ttl })
    }

    pub(super) async fn get(&self, key: &str) -> Option<Cached> {
        let mut conn = self.conn.clone();
        let key = format!("{}{key}", self.prefix);
        let raw: Vec<u8> = match tokio::time::timeout(TIMEOUT, conn.get::<_, Option<Vec<u8>>>(&key)).await {
            Ok(Ok(Some(raw))) => raw,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cache: Redis read failed");
                return None;
            }
            Err(_) => return None,
        };
        // Stored as `<etag>\n<body>`.
        let split = raw.iter().position(|b| *b == b'\n')?;
        let etag = String::from_utf8(raw[..split].to_vec()).ok()?;
        Some(Cached { body: bytes::Bytes::copy_from_slice(&raw[split + 1..]), etag })
    }

    /// Stores in the background: the answer is not held up by Redis.
    pub(super) fn put(&self, key: String, value: Arc<Cached>) {
        let mut conn = self.conn.clone();
        let key = format!("{}{key}", self.prefix);
        let ttl_ms = self.ttl.as_millis() as u64;
        tokio::spawn(async move {
            let mut raw = Vec::with_capacity(value.etag.len() + 1 + value.body.len());
            raw.extend_from_slice(value.etag.as_bytes());
            raw.push(b'\n');
            raw.extend_from_slice(&value.body);
            let stored = tokio::time::timeout(TIMEOUT * 4, conn.pset_ex::<_, _, ()>(&key, raw, ttl_ms)).await;
            if let Ok(Err(e)) = stored {
                tracing::debug!(error = %e, "cache: Redis write failed");
            }
        });
    }
}
