//! The audit log: who changed what, when, with the state before and after. Rows
//! are written inside the transaction of the change they describe, so a change
//! without its audit row cannot be committed.

use serde::Serialize;
use uuid::Uuid;

use super::rows::{id, opt_id, opt_json, opt_text, text};
use super::{SqlBuilder, Store, StoreResult, Tx, new_id, now};

/// Who performed a change.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    /// `staff`, `cli` or `system`.
    pub kind: &'static str,
    pub id: Option<Uuid>,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn staff(id: Uuid, request_id: Option<String>) -> Self {
        Self { kind: "staff", id: Some(id), request_id }
    }

    pub fn cli() -> Self {
        Self { kind: "cli", id: None, request_id: None }
    }
}

pub struct Change<'a> {
    pub action: &'a str,
    pub entity_type: &'a str,
    pub entity_id: Uuid,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: Uuid,
    pub actor_type: String,
    pub actor_id: Option<Uuid>,
    /// e.g. `product.create`, `category.move`, `staff.create`.
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: Option<String>,
    pub created_at: String,
}

pub async fn record(tx: &mut Tx, actor: &Actor, change: Change<'_>) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, actor_type, actor_id, action, entity_type, entity_id, before, after, request_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(new_id().to_string())
    .bind(actor.kind)
    .bind(actor.id.map(|i| i.to_string()))
    .bind(change.action)
    .bind(change.entity_type)
    .bind(change.entity_id.to_string())
    .bind(change.before.map(|v| v.to_string()))
    .bind(change.after.map(|v| v.to_string()))
    .bind(actor.request_id.clone())
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Default)]
pub struct AuditQuery {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub actor_id: Option<Uuid>,
    /// Only entries older than this id (keyset paging, newest first).
    pub before_id: Option<Uuid>,
    pub limit: i64,
}

impl Store {
    pub async fn audit_log(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let mut sql = SqlBuilder::new(
            "SELECT id, actor_type, actor_id, action, entity_type, entity_id, before, after, request_id, created_at
             FROM audit_log WHERE 1 = 1",
        );
        if let Some(t) = &q.entity_type {
            sql.push(" AND entity_type = ").bind(t.as_str());
        }
        if let Some(e) = &q.entity_id {
            sql.push(" AND entity_id = ").bind(e.as_str());
        }
        if let Some(a) = q.actor_id {
            sql.push(" AND actor_id = ").bind(a.to_string());
        }
        if let Some(b) = q.before_id {
            sql.push(" AND id < ").bind(b.to_string());
        }
        // Callers ask for one more row than a page to learn whether another follows.
        sql.push(" ORDER BY id DESC LIMIT ").bind(q.limit.clamp(1, 201));
        let query = sql.build();
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: id(r, "id")?,
                    actor_type: text(r, "actor_type")?,
                    actor_id: opt_id(r, "actor_id")?,
                    action: text(r, "action")?,
                    entity_type: text(r, "entity_type")?,
                    entity_id: text(r, "entity_id")?,
                    before: opt_json(r, "before")?,
                    after: opt_json(r, "after")?,
                    request_id: opt_text(r, "request_id")?,
                    created_at: text(r, "created_at")?,
                })
            })
            .collect()
    }
}
