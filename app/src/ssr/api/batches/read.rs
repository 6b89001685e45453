//! Reading the caller's batches: a page of them, one, a page of its members, and every
//! member's row as CSV or JSON.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{BatchDoc, batch_id, owned_batch};
use crate::ssr::api::extract::{ApiQuery, Owner, position};
use crate::ssr::api::problem::{ApiError, Problem};
use crate::ssr::api::tasks::TaskDoc;
use crate::ssr::batches::results::{self, Columns};
use crate::ssr::{AppState, SessionId};
use model::page::TaskStatus;

/// Position of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 100).
    limit: Option<usize>,
    /// Where the previous page ended (its `next_cursor`).
    cursor: Option<String>,
}

/// A page of batches, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchPage {
    pub batches: Vec<BatchDoc>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The caller's batches, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/batches",
    tag = "batches",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of batches", body = BatchPage),
        (status = 400, description = "A limit or cursor that means nothing", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(in crate::ssr::api) async fn list(
    owner: Owner,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<BatchPage>, ApiError> {
    let (limit, before) = position(query.limit, query.cursor.as_deref())?;
    let (records, more) = state
        .sessions
        .store()
        .batches(&owner.0.0, before, limit)
        .await?;
    let batches: Vec<BatchDoc> = records
        .iter()
        .map(|record| BatchDoc::of(&state, &owner.0, record))
        .collect();
    let next_cursor = more
        .then(|| batches.last().map(|b| b.id.to_string()))
        .flatten();
    Ok(Json(BatchPage {
        batches,
        next_cursor,
    }))
}

/// One of the caller's batches: its counts, progress and times.
#[utoipa::path(
    get,
    path = "/api/v1/batches/{id}",
    tag = "batches",
    params(("id" = u64, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch", body = BatchDoc),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's batch", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(in crate::ssr::api) async fn show(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BatchDoc>, ApiError> {
    let record = owned_batch(&state, &owner.0, batch_id(&id)?).await?;
    Ok(Json(BatchDoc::of(&state, &owner.0, &record)))
}

/// One member of a batch: its index and its task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberDoc {
    /// Its place in the batch, from 0.
    pub index: u64,
    pub task: TaskDoc,
}

/// A page of a batch's members, in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberPage {
    /// The members handed to the queue so far (the others are still waiting in the batch).
    pub members: Vec<MemberDoc>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The members of one of the caller's batches that were handed to the queue, in order.
#[utoipa::path(
    get,
    path = "/api/v1/batches/{id}/tasks",
    tag = "batches",
    params(("id" = u64, Path, description = "The batch's id"), PageQuery),
    responses(
        (status = 200, description = "A page of members", body = MemberPage),
        (status = 400, description = "A limit or cursor that means nothing", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's batch", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(in crate::ssr::api) async fn members(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    let (limit, after) = position(query.limit, query.cursor.as_deref())?;
    let record = owned_batch(&state, &owner.0, batch_id(&id)?).await?;
    let (records, more) = state
        .sessions
        .store()
        .members(record.id, after, limit)
        .await?;
    let run = state.batches.get(&owner.0, record.id);
    let members: Vec<MemberDoc> = records
        .into_iter()
        .map(|member| {
            let live = run.as_ref().and_then(|run| run.standing(member.index)).map(
                |(started, progress)| {
                    let status = if started {
                        TaskStatus::Running
                    } else {
                        TaskStatus::Queued
                    };
                    (status, progress, None)
                },
            );
            MemberDoc {
                index: member.index,
                task: TaskDoc::from_record(member.task, live),
            }
        })
        .collect();
    let next_cursor = more
        .then(|| members.last().map(|m| m.index.to_string()))
        .flatten();
    Ok(Json(MemberPage {
        members,
        next_cursor,
    }))
}

/// Every member's row of `owner`'s batch `id`, with the columns' names.
async fn results(
    state: &AppState,
    owner: &SessionId,
    id: &str,
) -> Result<(u64, Columns, Vec<Vec<Value>>), ApiError> {
    let record = owned_batch(state, owner, batch_id(id)?).await?;
    let kind = crate::ssr::runner::task_type(state, &record.task_type)?;
    let columns = Columns::of(&kind);
    let (members, _) = state
        .sessions
        .store()
        .members(record.id, None, record.members as usize)
        .await?;
    let rows = members.iter().map(|member| columns.row(member)).collect();
    Ok((record.id, columns, rows))
}

/// One of the caller's batches as CSV: a row per member handed to the queue so far (index,
/// task, outcome, input fields, the output's scalar fields, seconds), with a header.
#[utoipa::path(
    get,
    path = "/api/v1/batches/{id}/results.csv",
    tag = "batches",
    params(("id" = u64, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The rows, as CSV", content_type = "text/csv", body = String),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's batch", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(in crate::ssr::api) async fn results_csv(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, columns, rows) = results(&state, &owner.0, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"batch-{id}.csv\""),
            ),
        ],
        results::csv(&columns, rows),
    )
        .into_response())
}

/// One of the caller's batches as JSON: an object per member handed to the queue so far,
/// with the CSV's columns as keys.
#[utoipa::path(
    get,
    path = "/api/v1/batches/{id}/results.json",
    tag = "batches",
    params(("id" = u64, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The rows", body = Vec<Object>),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's batch", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(in crate::ssr::api) async fn results_json(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let (_, columns, rows) = results(&state, &owner.0, &id).await?;
    Ok(Json(
        rows.into_iter().map(|row| columns.object(row)).collect(),
    ))
}
