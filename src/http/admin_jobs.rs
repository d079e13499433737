//! The job queue for staff: what is queued, running, done or dead, and retrying
//! the dead.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::extract::{ApiQuery, PathId, Staff, perm};
use crate::domain::cursor;
use crate::error::{ApiError, ApiResult, Problem};
use crate::store::jobs::{Job, QueueStats};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobListParams {
    /// `queued`, `running`, `done` or `dead`.
    pub status: Option<String>,
    /// e.g. `order.paid`.
    pub kind: Option<String>,
    /// 1-200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobList {
    pub items: Vec<Job>,
    pub next_cursor: Option<String>,
    pub stats: QueueStats,
}

/// Jobs, newest first, with the queue's depth and the age of its oldest due job.
#[utoipa::path(get, path = "/v1/admin/jobs", tag = "admin-jobs", params(JobListParams),
    responses((status = 200, body = JobList), (status = 400, body = Problem)), security(("staff_token" = ["jobs:manage"])))]
pub async fn list_jobs(
    _staff: Staff<perm::JobsManage>,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<JobListParams>,
) -> ApiResult<Json<JobList>> {
    let limit = p.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_field("invalid_limit", "limit", "limit must be between 1 and 200"));
    }
    if let Some(s) = &p.status
        && !matches!(s.as_str(), "queued" | "running" | "done" | "dead")
    {
        return Err(ApiError::bad_field("invalid_status", "status", "status is queued, running, done or dead"));
    }
    let before = p
        .cursor
        .as_deref()
        .map(|c| cursor::decode::<Uuid>("jobs", c))
        .transpose()
        .map_err(|_| ApiError::bad_field("invalid_cursor", "cursor", "the cursor is not valid for this list"))?;
    let mut items = state.store.list_jobs(p.status.as_deref(), p.kind.as_deref(), before, limit + 1).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|j| cursor::encode("jobs", &j.id))
    } else {
        None
    };
    Ok(Json(JobList { items, next_cursor, stats: state.store.queue_stats().await? }))
}

/// Puts a dead job back in the queue with fresh attempts.
#[utoipa::path(post, path = "/v1/admin/jobs/{id}/retry", tag = "admin-jobs", params(("id" = Uuid, Path)),
    responses((status = 200, body = Job), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("staff_token" = ["jobs:manage"])))]
pub async fn retry_job(
    staff: Staff<perm::JobsManage>,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<Job>> {
    match state.store.retry_job(id).await? {
        Some(job) => {
            tracing::info!(job.id = %id, staff.id = %staff.id, "dead job requeued");
            Ok(Json(job))
        }
        None => match state.store.job(id).await? {
            Some(_) => Err(ApiError::conflict("job_not_dead", None, "only dead jobs can be retried")),
            None => Err(ApiError::NotFound("job")),
        },
    }
}
