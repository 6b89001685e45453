//! The caller's tasks: submit one (`POST /api/v1/tasks`, safe to repeat under an
//! `Idempotency-Key`), list them, show one, its binary output, cancel it, run it again.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery, Owner, TaskIdPath, position};
use super::idempotency::{self, Makes};
use super::problem::{ApiError, Problem};
use crate::AppError;
use crate::ssr::runner::Links;
use crate::ssr::store::{TaskFilter, TaskRecord};
use crate::ssr::{AppState, SessionId};
use model::TaskState;
use model::page::TaskStatus;

/// Unfinished tasks read to list the queued or the running ones: more than any owner can have
/// (the caps bound them), so that none is missed.
const MAX_UNFINISHED: usize = 100_000;

/// A task to run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// The task type's name (`GET /api/v1/task-types`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its input, as its type's input schema says (component `{type}.Input`); fields left
    /// out take their defaults.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub input: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Addresses of a task's other resources.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub cancel: String,
    pub retry: String,
    /// Its binary output (a picture), once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The task page's detail view.
    pub page: String,
}

/// One task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskDoc {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: TaskState,
    /// From 0 to 1 while it runs; 1 once finished.
    pub progress: f64,
    #[schema(value_type = Object)]
    pub input: Value,
    /// Its result (component `{type}.Output`), once finished; a binary field holds its
    /// media type and size, the bytes being at `links.output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// Its results-terminal line once it ended: the summary, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Server clock, ms since the Unix epoch.
    pub submitted_at_ms: u64,
    /// When a worker started it: while it runs, as this server heard; once it ended, the
    /// worker's own clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// The worker that ran it (`host-pid/thread`), once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// 1, plus one each time it was run again: its NATS worker died while running it, or
    /// the server restarted before it ended (whether or not it had started). Known once it
    /// ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The task this one runs again (`POST …/retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<u64>,
    /// The task whose result this batch member took instead of running (`"reuse": true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<u64>,
    pub links: TaskLinks,
}

impl TaskDoc {
    /// The task as it was accepted: what a submission answers, the same however often it is
    /// repeated under its `Idempotency-Key`.
    fn accepted(record: TaskRecord) -> Value {
        let record = TaskRecord {
            outcome: None,
            line: None,
            output: None,
            output_media: None,
            finished_at_ms: None,
            ran: None,
            ..record
        };
        serde_json::to_value(Self::from_record(record, None)).unwrap_or_default()
    }

    /// `live`: its status, progress and start, while this server follows it.
    pub(super) fn from_record(
        record: TaskRecord,
        live: Option<(TaskStatus, f64, Option<u64>)>,
    ) -> Self {
        let state = match (record.outcome, live) {
            (Some(outcome), _) => TaskState::from(outcome),
            (None, Some((TaskStatus::Running, _, _))) => TaskState::Running,
            (None, _) => TaskState::Queued,
        };
        let progress = match state {
            TaskState::Finished => 1.0,
            _ => live.map_or(0.0, |(_, p, _)| p),
        };
        let started_at_ms = match &record.ran {
            Some(ran) => Some(ran.started_at_ms),
            None => live.and_then(|(_, _, started)| started),
        };
        let id = record.id;
        Self {
            id,
            kind: record.task_type,
            state,
            progress,
            input: record.input,
            output: record.output,
            summary: record.line,
            submitted_at_ms: record.submitted_at_ms,
            started_at_ms,
            finished_at_ms: record.finished_at_ms,
            worker: record.ran.as_ref().map(|ran| ran.worker.clone()),
            attempts: record.ran.map(|ran| ran.attempt),
            retry_of: record.retry_of,
            reused_from: record.reused_from,
            links: TaskLinks {
                this: format!("/api/v1/tasks/{id}"),
                cancel: format!("/api/v1/tasks/{id}/cancel"),
                retry: format!("/api/v1/tasks/{id}/retry"),
                output: record
                    .output_media
                    .map(|_| format!("/api/v1/tasks/{id}/output")),
                page: format!("/tasks/{id}"),
            },
        }
    }
}

/// The caller's task `id` as it is now.
async fn task_doc(state: &AppState, owner: &SessionId, id: u64) -> Result<TaskDoc, ApiError> {
    let record = owned_record(state, owner, id).await?;
    let live = state.sessions.get(owner).and_then(|s| s.standing(id));
    Ok(TaskDoc::from_record(record, live))
}

/// The record of `owner`'s task `id`; another owner's is not found.
pub(crate) async fn owned_record(
    state: &AppState,
    owner: &SessionId,
    id: u64,
) -> Result<TaskRecord, AppError> {
    state
        .sessions
        .store()
        .task(&owner.0, id)
        .await
        .map_err(AppError::from)?
        .ok_or_else(|| not_found(id))
}

pub(crate) fn not_found(id: u64) -> AppError {
    AppError::NotFound(format!(
        "task {id} is not one of yours, or its record was trimmed with the oldest ones"
    ))
}

/// Queues a task for the caller, as the page's SUBMIT does: the input is checked against its
/// type's schema (a refusal names the field), and the caller's caps apply. With an
/// `Idempotency-Key`, repeating the request (even many at once) gets the same task, run once.
#[utoipa::path(
    post,
    path = "/api/v1/tasks",
    tag = "tasks",
    request_body = NewTask,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and request get the same task (1 to 255 characters; remembered as long as the task's record)"),
    ),
    responses(
        (status = 202, description = "Accepted: queued, and recorded", body = TaskDoc),
        (status = 400, description = "The input does not fit the type's schema", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 16 KB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`Content-Type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller's queue is full (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server is full, stopping, or has no worker for the type (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn submit(
    owner: Owner,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(new): ApiJson<NewTask>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let doc = idempotency::once(
        &state,
        &owner.0,
        &headers,
        Makes::Task,
        new,
        async |id| Ok(TaskDoc::accepted(owned_record(&state, &owner.0, id).await?)),
        async |new, idempotency| {
            let links = Links {
                idempotency,
                ..Links::default()
            };
            accept(&state, &owner.0, new, links).await
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(doc)))
}

/// Submits `new` and answers with the task as accepted.
async fn accept(
    state: &AppState,
    owner: &SessionId,
    new: NewTask,
    links: Links,
) -> Result<Value, ApiError> {
    let kind = crate::ssr::runner::task_type(state, &new.kind)?;
    let retry_of = links.retry_of;
    let submitted =
        crate::ssr::runner::submit(state, owner, &kind, new.input.clone(), links).await?;
    let task = submitted.task;
    Ok(TaskDoc::accepted(TaskRecord {
        id: task.id,
        task_type: task.task,
        input: new.input,
        args: task.args,
        submitted_at_ms: task.submitted_at_ms,
        outcome: None,
        line: None,
        output: None,
        output_media: None,
        finished_at_ms: None,
        retry_of,
        ran: None,
        reused_from: None,
        batch: None,
    }))
}

/// Filters and position of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks in this state.
    state: Option<TaskState>,
    /// Only tasks of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// Tasks per page, 1 to 100 (default 100).
    limit: Option<usize>,
    /// Where the previous page ended (its `next_cursor`).
    cursor: Option<String>,
    /// Only the members of this batch.
    batch: Option<u64>,
}

/// A page of tasks, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<TaskDoc>,
    /// Pass as `cursor` for the next (older) page; absent on the last page. Stable while new
    /// tasks arrive: they come before the first page, never inside a later one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The caller's tasks, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    tag = "tasks",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage),
        (status = 400, description = "A filter or cursor that means nothing", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list(
    owner: Owner,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    let (limit, before) = position(query.limit, query.cursor.as_deref())?;
    // Queued and running are known to this server only, not to the record: the record gives
    // the unfinished tasks (few: the caps bound them), the session says which are which.
    let live_state = query.state.filter(|s| !s.is_done());
    let filter = TaskFilter {
        batch: query.batch,
        kind: query.kind,
        ended: query.state.map(TaskState::outcome),
        before,
        search: None,
        fold_batches: false,
        limit: if live_state.is_some() {
            MAX_UNFINISHED
        } else {
            limit
        },
    };
    let (records, more) = state.sessions.store().tasks(&owner.0.0, filter).await?;
    let session = state.sessions.get(&owner.0);
    let mut docs = records
        .into_iter()
        .map(|record| {
            let live = session.as_ref().and_then(|s| s.standing(record.id));
            TaskDoc::from_record(record, live)
        })
        .filter(|doc| live_state.is_none_or(|s| doc.state == s));
    let tasks: Vec<TaskDoc> = docs.by_ref().take(limit).collect();
    let more = more || docs.next().is_some();
    let next_cursor = more
        .then(|| tasks.last().map(|t| t.id.to_string()))
        .flatten();
    Ok(Json(TaskPage { tasks, next_cursor }))
}

/// One of the caller's tasks: its state, progress, input and output.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}",
    tag = "tasks",
    params(("id" = u64, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task", body = TaskDoc),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's task", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn show(
    owner: Owner,
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<TaskDoc>, ApiError> {
    Ok(Json(task_doc(&state, &owner.0, id).await?))
}

/// The bytes of a task's binary output (a picture), with their media type.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}/output",
    tag = "tasks",
    params(("id" = u64, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The bytes, with their media type (`image/png`, …)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's task, or it has no binary output", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn output(
    owner: Owner,
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<Response, ApiError> {
    crate::ssr::output::owned_output(&state, &owner.0, id)
        .await
        .map_err(ApiError::App)
}

/// Cancels one of the caller's queued or running tasks; it ends as `cancelled`.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/cancel",
    tag = "tasks",
    params(("id" = u64, Path, description = "The task's id")),
    responses(
        (status = 202, description = "Cancelling: it ends as cancelled at its next checkpoint", body = TaskDoc),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It has already ended", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn cancel(
    owner: Owner,
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<(StatusCode, Json<TaskDoc>), ApiError> {
    let doc = task_doc(&state, &owner.0, id).await?;
    if !matches!(doc.state, TaskState::Queued | TaskState::Running) {
        return Err(AppError::Conflict(format!(
            "task {id} has already ended ({})",
            doc.state.name()
        ))
        .into());
    }
    let cluster_id = state
        .sessions
        .get(&owner.0)
        .and_then(|s| s.cluster_id(id))
        .ok_or_else(|| not_found(id))?;
    // Gone meanwhile: it ended on its own, which the document below says.
    let _ = state.cluster.cancel(cluster::TaskId(cluster_id)).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(task_doc(&state, &owner.0, id).await?),
    ))
}

/// Queues a new task with the same type and input as one of the caller's, linked to it by
/// `retry_of`.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/retry",
    tag = "tasks",
    params(("id" = u64, Path, description = "The task to run again")),
    responses(
        (status = 202, description = "The new task", body = TaskDoc),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's task", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller's queue is full (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server is full or stopping (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn retry(
    owner: Owner,
    State(state): State<AppState>,
    TaskIdPath(id): TaskIdPath,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let record = owned_record(&state, &owner.0, id).await?;
    let kind = crate::ssr::runner::task_type(&state, &record.task_type)?;
    let links = Links {
        retry_of: Some(id),
        ..Default::default()
    };
    let new = NewTask {
        kind: kind.name().to_owned(),
        input: record.input,
    };
    let doc = accept(&state, &owner.0, new, links).await?;
    Ok((StatusCode::ACCEPTED, Json(doc)))
}
