//! The shared half of the sold-out memory: flags and forget generations in Redis,
//! and a pub/sub channel that keeps every instance's local copy current.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use uuid::Uuid;

use super::SoldOut;

/// How long Redis keeps a flag nobody renewed: a safety net, as stock coming back
/// deletes it at once.
const FLAG_TTL: Duration = Duration::from_secs(600);

/// Sets each flag only if its generation is still the one the batch read, and
/// announces it on the channel. KEYS: flag, generation pairs; ARGV: channel, ttl
/// ms, then generation, message pairs.
const MARK: &str = r"
for i = 1, #KEYS, 2 do
  local seen = ARGV[3 + (i - 1)]
  local now = redis.call('GET', KEYS[i + 1]) or '0'
  if now == seen then
    redis.call('SET', KEYS[i], '1', 'PX', ARGV[2])
    redis.call('PUBLISH', ARGV[1], ARGV[4 + (i - 1)])
  end
end
return 0
";

pub(super) enum Message {
    Marked(Uuid),
    Forgotten(Uuid),
}

impl Message {
    fn parse(payload: &str) -> Option<Self> {
        let (kind, id) = payload.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "m" => Some(Message::Marked(id)),
            "f" => Some(Message::Forgotten(id)),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct RedisSoldOut {
    client: redis::Client,
    conn: ConnectionManager,
    /// Key prefix, so instances of different shops (or tests) can share a server.
    prefix: String,
    mark: redis::Script,
}

impl RedisSoldOut {
    pub async fn connect(url: &str, prefix: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_connection_manager().await?;
        Ok(Self { client, conn, prefix: prefix.to_owned(), mark: redis::Script::new(MARK) })
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    // The variant is the hash tag: a variant's flag and generation share a Redis
    // Cluster slot, so the mark script may touch both.
    fn flag_key(&self, v: &Uuid) -> String {
        format!("{}soldout:{{{v}}}", self.prefix)
    }

    fn generation_key(&self, v: &Uuid) -> String {
        format!("{}stockgen:{{{v}}}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}stock", self.prefix)
    }

    pub(super) async fn generations(&self, variants: &[Uuid]) -> redis::RedisResult<HashMap<Uuid, u64>> {
        if variants.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = variants.iter().map(|v| self.generation_key(v)).collect();
        let values: Vec<Option<u64>> = self.conn.clone().mget(keys).await?;
        Ok(variants.iter().zip(values).map(|(v, g)| (*v, g.unwrap_or(0))).collect())
    }

    /// One script call per variant (a variant's keys share a cluster slot).
    pub(super) async fn mark(&self, variants: &[(Uuid, u64)]) -> redis::RedisResult<()> {
        for (v, g) in variants {
            let mut invocation = self.mark.prepare_invoke();
            invocation.arg(self.channel()).arg(FLAG_TTL.as_millis() as u64);
            invocation.key(self.flag_key(v)).key(self.generation_key(v));
            invocation.arg(g.to_string()).arg(format!("m:{v}"));
            let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        }
        Ok(())
    }

    pub(super) async fn forget(&self, variants: &[Uuid]) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for v in variants {
            pipe.incr(self.generation_key(v), 1).ignore();
            pipe.del(self.flag_key(v)).ignore();
            pipe.publish(self.channel(), format!("f:{v}")).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await
    }

    /// Keeps `memory`'s local copy in step with the channel, reconnecting after
    /// errors, and loads the flags already set whenever it (re)subscribes.
    pub(super) fn follow(&self, memory: Weak<SoldOut>) {
        let (client, channel, conn, prefix) = (self.client.clone(), self.channel(), self.conn.clone(), self.prefix.clone());
        tokio::spawn(async move {
            loop {
                match listen(&client, &channel, conn.clone(), &prefix, &memory).await {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(error = %e, "sold-out memory: lost the Redis channel; reconnecting"),
                }
                // What was announced while away: forget everything local and reload.
                let Some(m) = memory.upgrade() else { return };
                m.lock().flags.clear();
                drop(m);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// Returns `Ok` when the memory is gone (the process is ending).
async fn listen(
    client: &redis::Client,
    channel: &str,
    mut conn: ConnectionManager,
    prefix: &str,
    memory: &Weak<SoldOut>,
) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    // Subscribed first, then read what is set: nothing falls between the two.
    let mut keys: Vec<String> = Vec::new();
    let mut scan = conn.scan_match::<_, String>(format!("{prefix}soldout:*")).await?;
    while let Some(key) = scan.next_item().await {
        keys.push(key?);
    }
    drop(scan);
    let flagged: Vec<Uuid> = keys
        .iter()
        .filter_map(|k| k.rsplit(':').next())
        .filter_map(|tagged| Uuid::parse_str(tagged.trim_matches(|c| c == '{' || c == '}')).ok())
        .collect();
    match memory.upgrade() {
        Some(m) => m.set_local(&flagged),
        None => return Ok(()),
    }
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let Some(memory) = memory.upgrade() else { return Ok(()) };
        if let Ok(payload) = msg.get_payload::<String>()
            && let Some(message) = Message::parse(&payload)
        {
            memory.heard(&message);
        }
    }
    Err(redis::RedisError::from((redis::ErrorKind::Io, "the pub/sub connection closed")))
}
