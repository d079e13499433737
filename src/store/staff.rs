//! Staff accounts and refresh-token sessions.

use serde::Serialize;
use uuid::Uuid;

use super::audit::{self, Actor, Change};
use super::rows::{flag, id, text};
use super::{SqlBuilder, Store, StoreError, StoreResult, new_id, now};
use crate::domain::email::Email;
use crate::domain::rbac::Role;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StaffMember {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub active: bool,
    pub created_at: String,
}

/// A staff member with the stored password hash, for login only.
pub struct StaffCredentials {
    pub member: StaffMember,
    pub password_hash: String,
}

pub struct NewStaff {
    pub email: Email,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

/// What a refresh token row says when it is presented.
pub enum RefreshOutcome {
    /// The token was valid; it is now used and a successor was stored.
    Rotated { subject_id: Uuid },
    /// Unknown, expired or revoked.
    Invalid,
    /// Already used once: someone replayed it, so its whole session was revoked.
    Reused,
}

const SELECT_STAFF: &str = "SELECT id, email, name, role, active, created_at, password_hash FROM staff";

fn staff_row(r: &sqlx::any::AnyRow) -> StoreResult<StaffCredentials> {
    let role_text = text(r, "role")?;
    let role = Role::parse(&role_text).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role_text}")))?;
    Ok(StaffCredentials {
        member: StaffMember {
            id: id(r, "id")?,
            email: text(r, "email")?,
            name: text(r, "name")?,
            role,
            active: flag(r, "active")?,
            created_at: text(r, "created_at")?,
        },
        password_hash: text(r, "password_hash")?,
    })
}

impl Store {
    pub async fn create_staff(&self, new: &NewStaff, actor: &Actor) -> StoreResult<StaffMember> {
        let mut tx = self.begin().await?;
        let id = new_id();
        let ts = now();
        sqlx::query(
            "INSERT INTO staff (id, email, name, password_hash, role, active, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(id.to_string())
        .bind(new.email.as_str())
        .bind(new.name.as_str())
        .bind(new.password_hash.as_str())
        .bind(new.role.as_str())
        .bind(1i64)
        .bind(ts.as_str())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_db)?;
        let member = StaffMember {
            id,
            email: new.email.as_str().into(),
            name: new.name.clone(),
            role: new.role,
            active: true,
            created_at: ts,
        };
        let after = serde_json::to_value(&member).ok();
        audit::record(
            &mut tx,
            actor,
            Change { action: "staff.create", entity_type: "staff", entity_id: id, before: None, after },
        )
        .await?;
        tx.commit().await?;
        Ok(member)
    }

    /// Changes role and/or active flag; deactivation also revokes every session.
    pub async fn update_staff(
        &self,
        staff_id: Uuid,
        role: Option<Role>,
        active: Option<bool>,
        actor: &Actor,
    ) -> StoreResult<StaffMember> {
        let mut tx = self.begin().await?;
        let mut select = SqlBuilder::new(SELECT_STAFF);
        select.push(" WHERE id = ").bind(staff_id.to_string());
        let before = select
            .build()
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(staff_row)
            .transpose()?
            .ok_or(StoreError::NotFound("staff"))?
            .member;
        let ts = now();
        sqlx::query("UPDATE staff SET role = COALESCE($1, role), active = COALESCE($2, active), updated_at = $3 WHERE id = $4")
            .bind(role.map(|r| r.as_str()))
            .bind(active.map(i64::from))
            .bind(ts.as_str())
            .bind(staff_id.to_string())
            .execute(&mut *tx)
            .await?;
        if active == Some(false) {
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE subject_id = $2 AND revoked_at IS NULL")
                .bind(ts.as_str())
                .bind(staff_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let after = StaffMember { role: role.unwrap_or(before.role), active: active.unwrap_or(before.active), ..before.clone() };
        audit::record(
            &mut tx,
            actor,
            Change {
                action: "staff.update",
                entity_type: "staff",
                entity_id: staff_id,
                before: serde_json::to_value(&before).ok(),
                after: serde_json::to_value(&after).ok(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn staff_by_email(&self, email: &Email) -> StoreResult<Option<StaffCredentials>> {
        let mut sql = SqlBuilder::new(SELECT_STAFF);
        sql.push(" WHERE email = ").bind(email.as_str());
        let row = sql.build().fetch_optional(&self.pool).await?;
        row.as_ref().map(staff_row).transpose()
    }

    pub async fn staff_by_id(&self, staff_id: Uuid) -> StoreResult<Option<StaffMember>> {
        let mut sql = SqlBuilder::new(SELECT_STAFF);
        sql.push(" WHERE id = ").bind(staff_id.to_string());
        let row = sql.build().fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(staff_row).transpose()?.map(|c| c.member))
    }

    pub async fn list_staff(&self) -> StoreResult<Vec<StaffMember>> {
        let mut sql = SqlBuilder::new(SELECT_STAFF);
        sql.push(" ORDER BY email");
        let rows = sql.build().fetch_all(&self.pool).await?;
        rows.iter().map(|r| staff_row(r).map(|c| c.member)).collect()
    }

    /// Stores the hash of a new refresh token starting (or continuing) a session.
    pub async fn insert_refresh_token(
        &self,
        audience: &str,
        subject_id: Uuid,
        family_id: Uuid,
        token_hash: &str,
        expires_at: &str,
    ) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_refresh_row(&mut conn, audience, subject_id, &family_id.to_string(), token_hash, expires_at).await
    }

    /// Uses a refresh token exactly once and stores its successor in the same
    /// transaction. The conditional update (`used_at IS NULL`) is what makes two
    /// concurrent refreshes with one token yield one winner.
    pub async fn rotate_refresh_token(
        &self,
        audience: &str,
        presented_hash: &str,
        successor_hash: &str,
        successor_expires_at: &str,
    ) -> StoreResult<RefreshOutcome> {
        let mut tx = self.begin().await?;
        let ts = now();
        let row = sqlx::query(
            "SELECT subject_id, family_id, expires_at, used_at, revoked_at FROM refresh_tokens
             WHERE token_hash = $1 AND audience = $2",
        )
        .bind(presented_hash)
        .bind(audience)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(RefreshOutcome::Invalid) };
        let family = text(&row, "family_id")?;
        let subject_id = id(&row, "subject_id")?;
        if super::rows::opt_text(&row, "revoked_at")?.is_some() || text(&row, "expires_at")? <= ts {
            return Ok(RefreshOutcome::Invalid);
        }
        let claimed = sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL")
            .bind(ts.as_str())
            .bind(presented_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
                .bind(ts.as_str())
                .bind(family.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::Reused);
        }
        insert_refresh_row(&mut tx, audience, subject_id, &family, successor_hash, successor_expires_at).await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated { subject_id })
    }

    /// Revokes the session the token belongs to (logout). Unknown tokens are ignored.
    pub async fn revoke_refresh_family(&self, audience: &str, token_hash: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1
             WHERE revoked_at IS NULL AND family_id IN (SELECT family_id FROM refresh_tokens WHERE token_hash = $2 AND audience = $3)",
        )
        .bind(now())
        .bind(token_hash)
        .bind(audience)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

async fn insert_refresh_row(
    conn: &mut sqlx::AnyConnection,
    audience: &str,
    subject_id: Uuid,
    family_id: &str,
    token_hash: &str,
    expires_at: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, audience, subject_id, family_id, token_hash, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id().to_string())
    .bind(audience)
    .bind(subject_id.to_string())
    .bind(family_id)
    .bind(token_hash)
    .bind(expires_at)
    .bind(now())
    .execute(conn)
    .await
    .map_err(StoreError::from_db)?;
    Ok(())
}
