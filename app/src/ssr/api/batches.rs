//! The caller's batches: submit one (`POST /api/v1/batches`: every input listed, or one input
//! with fields varied; safe to repeat under an `Idempotency-Key`), list them, show one with
//! its counts and progress, page through its members, cancel it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery, Owner};
use super::problem::{ApiError, Problem};
use super::tasks::{IDEMPOTENCY_KEY, TaskDoc, idempotency_key};
use crate::AppError;
use crate::ssr::batches::results::{self, Columns};
use crate::ssr::batches::{BatchLinks as Tied, BatchRun, BatchSpec, Snapshot};
use crate::ssr::store::BatchRecord;
use crate::ssr::{AppState, SessionId};
use model::batch::{Combine, Vary};
use model::page::TaskStatus;

/// Batches, or members, a list page holds at most (and by default).
const MAX_PAGE: usize = 100;

/// A batch to run: one task type, every input listed (`inputs`), or one input with some of
/// its fields varied (`input` and `vary`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBatch {
    /// The task type's name (`GET /api/v1/task-types`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Every member's input (component `{type}.Input` each), instead of `input` and `vary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub inputs: Option<Vec<Value>>,
    /// The input every member starts from; fields left out take their defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// The fields that vary, by name: each a list of values (`[1, 5, 10]`) or a range
    /// (`{"from": 20, "to": 40, "step": 1}`, or `"count": 7` and `"scale": "log"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, Vary>>)]
    pub vary: Option<Map<String, Value>>,
    /// How several varied fields combine: every combination (`grid`, the default) or
    /// pairwise (`zip`).
    #[serde(default)]
    pub combine: Combine,
    /// A member that computes what one of the caller's finished tasks on record computed
    /// (same type, input schema, type version and input) takes that result instead of
    /// running: its task says `reused_from`. Never across owners.
    #[serde(default)]
    pub reuse: bool,
}

/// Where a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    /// Members are still to run or running.
    Running,
    /// Every member ended.
    Finished,
    /// Cancelled: no member is handed over any more (those running are stopping).
    Cancelled,
}

/// A batch's members by where they are.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchCounts {
    /// In the batch, not yet handed to the queue.
    pub waiting: u64,
    pub queued: u64,
    pub running: u64,
    pub finished: u64,
    pub failed: u64,
    /// Cancelled, or never to run because the batch was cancelled.
    pub cancelled: u64,
    pub lost: u64,
}

/// Addresses of a batch's other resources.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub tasks: String,
    pub cancel: String,
    /// Every member's row: index, task, outcome, input fields, the output's scalar fields,
    /// seconds.
    pub results_csv: String,
    /// The same rows as JSON objects.
    pub results_json: String,
    /// Its changes as server-sent events.
    pub events: String,
    /// A new batch of its failed and cancelled members.
    pub retry_failed: String,
    /// The batch's page.
    pub page: String,
}

/// One batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchDoc {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: BatchState,
    pub members: u64,
    pub counts: BatchCounts,
    /// From 0 to 1: ended members, and the running ones' progress, over all members.
    pub progress: f64,
    /// Server clock, ms since the Unix epoch.
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// Since it was accepted, until it finished.
    pub elapsed_ms: u64,
    /// Time left at the pace so far, once some progress is made; absent once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_ms: Option<u64>,
    /// The batch whose failed and cancelled members this one runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<u64>,
    pub links: BatchLinks,
}

impl BatchDoc {
    fn new(id: u64, kind: String, at: Snapshot) -> Self {
        let state = match (at.cancelled_at_ms, at.finished_at_ms) {
            (Some(_), _) => BatchState::Cancelled,
            (None, Some(_)) => BatchState::Finished,
            (None, None) => BatchState::Running,
        };
        let elapsed_ms = at
            .finished_at_ms
            .unwrap_or_else(cluster::now_ms)
            .saturating_sub(at.created_at_ms);
        let remaining_ms = (state == BatchState::Running && at.progress > 0.0)
            .then(|| (elapsed_ms as f64 * (1.0 - at.progress) / at.progress) as u64);
        let [finished, failed, cancelled, lost] = at.ended;
        Self {
            id,
            kind,
            state,
            members: at.members,
            counts: BatchCounts {
                waiting: at.waiting,
                queued: at.queued,
                running: at.running,
                finished,
                failed,
                cancelled,
                lost,
            },
            progress: at.progress,
            created_at_ms: at.created_at_ms,
            cancelled_at_ms: at.cancelled_at_ms,
            finished_at_ms: at.finished_at_ms,
            elapsed_ms,
            remaining_ms,
            retry_of: None,
            links: BatchLinks {
                this: format!("/api/v1/batches/{id}"),
                tasks: format!("/api/v1/batches/{id}/tasks"),
                cancel: format!("/api/v1/batches/{id}/cancel"),
                results_csv: format!("/api/v1/batches/{id}/results.csv"),
                results_json: format!("/api/v1/batches/{id}/results.json"),
                events: format!("/api/v1/batches/{id}/events"),
                retry_failed: format!("/api/v1/batches/{id}/retry-failed"),
                page: format!("/batches/{id}"),
            },
        }
    }

    fn of_run(run: &BatchRun, retry_of: Option<u64>) -> Self {
        Self {
            retry_of,
            ..Self::new(run.id(), run.kind().name().to_owned(), run.snapshot())
        }
    }

    /// As this server runs it, or as the record says.
    pub(crate) fn of(state: &AppState, owner: &SessionId, record: &BatchRecord) -> Self {
        match state.batches.get(owner, record.id) {
            Some(run) => Self::of_run(&run, record.retry_of),
            None => Self {
                retry_of: record.retry_of,
                ..Self::new(
                    record.id,
                    record.task_type.clone(),
                    Snapshot::of_record(record),
                )
            },
        }
    }
}

/// The record of `owner`'s batch `id`; another owner's is not found.
pub(crate) async fn owned_batch(
    state: &AppState,
    owner: &SessionId,
    id: u64,
) -> Result<BatchRecord, AppError> {
    state
        .sessions
        .store()
        .batch(&owner.0, id)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "batch {id} is not one of yours, or its record was trimmed with its members"
            ))
        })
}

/// A batch id from a path: anything else is a batch nobody has.
fn batch_id(raw: &str) -> Result<u64, AppError> {
    raw.parse().map_err(|_| {
        AppError::NotFound(format!(
            "{raw:?} is not a batch id: batches are numbered from 1"
        ))
    })
}

/// Queues a batch for the caller: every member is checked as a single task's input is (the
/// first bad one is named), the batch's size against `--max-batch`. Members wait in their
/// batch and enter the queue as the caller's earlier ones end, so the caller's caps apply to
/// each. With an `Idempotency-Key`, repeating the request gets the same batch, run once.
#[utoipa::path(
    post,
    path = "/api/v1/batches",
    tag = "batches",
    request_body = NewBatch,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and request get the same batch (1 to 255 characters)"),
    ),
    responses(
        (status = 202, description = "Accepted: on record, its members being queued", body = BatchDoc),
        (status = 400, description = "A member does not fit the type's schema, or the batch is over the size allowed (the message says its size)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 1 MB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`Content-Type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller has as many batches running as allowed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server is stopping or cannot record (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn submit(
    owner: Owner,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(new): ApiJson<NewBatch>,
) -> Result<(StatusCode, Json<BatchDoc>), ApiError> {
    let Some(key) = headers.get(IDEMPOTENCY_KEY) else {
        let doc = accept(&state, &owner.0, new, None).await?;
        return Ok((StatusCode::ACCEPTED, Json(doc)));
    };
    let key = idempotency_key(key)?;
    let request = Sha256::digest(serde_json::to_vec(&new).unwrap_or_default()).to_vec();
    // Batches' keys are their own: the same key may name a task and a batch.
    let slot_key = format!("batch {key}");
    let slot = state.idempotency.slot(&owner.0, &slot_key);
    let turn = slot.lock().await;
    let result = async {
        let store = state.sessions.store();
        match store.batch_by_idempotency_key(&owner.0.0, &key).await? {
            Some((_, first)) if first != request => Err(AppError::Unprocessable(format!(
                "the Idempotency-Key {key:?} was used with another request: use a new key \
                 for a new batch"
            ))
            .into()),
            Some((id, _)) => {
                let record = owned_batch(&state, &owner.0, id).await?;
                Ok(BatchDoc::of(&state, &owner.0, &record))
            }
            None => accept(&state, &owner.0, new, Some((key.clone(), request))).await,
        }
    }
    .await;
    drop(turn);
    state.idempotency.release(&owner.0, &slot_key, slot);
    Ok((StatusCode::ACCEPTED, Json(result?)))
}

async fn accept(
    state: &AppState,
    owner: &SessionId,
    new: NewBatch,
    idempotency: Option<(String, Vec<u8>)>,
) -> Result<BatchDoc, ApiError> {
    let kind = crate::ssr::runner::task_type(state, &new.kind)?;
    let cap = state.batches.config().max_members;
    let spec = match (new.inputs, new.input, new.vary) {
        (Some(inputs), None, None) => BatchSpec::inputs(inputs, cap)?,
        (None, input, Some(vary)) => {
            let vary = vary
                .into_iter()
                .map(|(name, how)| {
                    serde_json::from_value::<Vary>(how)
                        .map(|how| (name.clone(), how))
                        .map_err(|_| {
                            AppError::invalid(format!(
                                "vary.{name} must be a list of values ([1, 5, 10]) or a range \
                                 ({{\"from\": 20, \"to\": 40}} with \"step\" or \"count\", and \
                                 \"scale\": \"log\" if you wish)"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let input = input.unwrap_or_else(|| Value::Object(Map::new()));
            BatchSpec::vary(&kind, input, &vary, new.combine, cap)?
        }
        (None, _, None) => {
            return Err(AppError::invalid(
                "a batch needs \"inputs\" (every member's input) or \"input\" with \"vary\"",
            )
            .into());
        }
        (Some(_), _, _) => {
            return Err(AppError::invalid(
                "send either \"inputs\" (every member's input) or \"input\" with \"vary\", not both",
            )
            .into());
        }
    };
    let tied = Tied {
        idempotency,
        retry_of: None,
        reuse: new.reuse,
    };
    let retry_of = tied.retry_of;
    let run = state
        .batches
        .submit(state, owner, &kind, spec, tied)
        .await?;
    Ok(BatchDoc::of_run(&run, retry_of))
}

/// Position of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 100).
    limit: Option<usize>,
    /// Where the previous page ended (its `next_cursor`).
    cursor: Option<String>,
}

impl PageQuery {
    fn limit(&self) -> Result<usize, AppError> {
        let limit = self.limit.unwrap_or(MAX_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(AppError::invalid(format!(
                "limit must be from 1 to {MAX_PAGE} (got {limit})"
            )));
        }
        Ok(limit)
    }

    fn cursor(&self) -> Result<Option<u64>, AppError> {
        self.cursor
            .as_deref()
            .map(|cursor| {
                cursor.parse::<u64>().map_err(|_| {
                    AppError::invalid(format!(
                        "{cursor:?} is not a cursor: pass the next_cursor of the previous page"
                    ))
                })
            })
            .transpose()
    }
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
pub(super) async fn list(
    owner: Owner,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<BatchPage>, ApiError> {
    let (limit, before) = (query.limit()?, query.cursor()?);
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
pub(super) async fn show(
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
pub(super) async fn members(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    let (limit, after) = (query.limit()?, query.cursor()?);
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

/// Cancels one of the caller's batches: members still waiting never run, those queued or
/// running end as cancelled.
#[utoipa::path(
    post,
    path = "/api/v1/batches/{id}/cancel",
    tag = "batches",
    params(("id" = u64, Path, description = "The batch's id")),
    responses(
        (status = 202, description = "Cancelling: its running members end at their next checkpoint", body = BatchDoc),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's batch", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It has already ended, or was cancelled", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn cancel(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<BatchDoc>), ApiError> {
    let record = owned_batch(&state, &owner.0, batch_id(&id)?).await?;
    let cancelled = match state.batches.get(&owner.0, record.id) {
        Some(run) => run.cancel().await?,
        None => false,
    };
    let doc = BatchDoc::of(&state, &owner.0, &record);
    if !cancelled {
        let how = match doc.state {
            BatchState::Cancelled => "was cancelled",
            _ => "has already finished",
        };
        return Err(AppError::Conflict(format!("batch {} {how}", record.id)).into());
    }
    Ok((StatusCode::ACCEPTED, Json(doc)))
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
pub(super) async fn results_csv(
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
pub(super) async fn results_json(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let (_, columns, rows) = results(&state, &owner.0, &id).await?;
    Ok(Json(
        rows.into_iter().map(|row| columns.object(row)).collect(),
    ))
}

/// How often a batch's stream sends at most: a change waits this long for the next ones, so
/// a 10,000-member batch costs ten events a second, not one per member.
const COALESCE: Duration = Duration::from_millis(100);

/// One of the caller's batches as server-sent events: `event: batch`, the batch's document,
/// at once and then at most ten times a second while it changes, the stream ending once it
/// finished (at once for a batch that had). Each event is the whole batch, and its id the
/// batch's count of changes, so a client that reconnects (with or without `Last-Event-ID`)
/// misses nothing.
#[utoipa::path(
    get,
    path = "/api/v1/batches/{id}/events",
    tag = "batches",
    params(("id" = u64, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "`event: batch` with the batch's document", content_type = "text/event-stream", body = BatchDoc),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's batch", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many live streams (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn events(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = owned_batch(&state, &owner.0, batch_id(&id)?).await?;
    let event = |seq: Option<u64>, doc: &BatchDoc| {
        let event = Event::default()
            .event("batch")
            .data(serde_json::to_string(doc).unwrap_or_default());
        match seq {
            Some(seq) => event.id(seq.to_string()),
            None => event,
        }
    };
    let Some(run) = state.batches.get(&owner.0, record.id) else {
        let last = event(None, &BatchDoc::of(&state, &owner.0, &record));
        return Ok(
            Sse::new(stream::once(async move { Ok::<_, Infallible>(last) })).into_response(),
        );
    };
    let permit = state
        .streams
        .open(&owner.0)
        .map_err(|full| AppError::Unavailable(full.to_string()))?;
    let follow = (run.changes(), run, permit, false, true);
    let events = stream::unfold(
        follow,
        move |(mut changes, run, mut permit, done, first)| async move {
            if done {
                return None;
            }
            if !first {
                tokio::select! {
                    changed = changes.changed() => changed.ok()?,
                    _ = &mut permit.replaced => return None,
                }
                tokio::time::sleep(COALESCE).await;
            }
            let seq = *changes.borrow_and_update();
            let doc = BatchDoc::of_run(&run, record.retry_of);
            let done = doc.finished_at_ms.is_some();
            let sent = event(Some(seq), &doc);
            Some((
                Ok::<_, Infallible>(sent),
                (changes, run, permit, done, false),
            ))
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Runs again the failed, cancelled and lost members of one of the caller's batches that
/// ended (those of a cancelled batch that never ran too), as a new batch linked to it by
/// `retry_of`.
#[utoipa::path(
    post,
    path = "/api/v1/batches/{id}/retry-failed",
    tag = "batches",
    params(("id" = u64, Path, description = "The batch whose failed members to run again")),
    responses(
        (status = 202, description = "The new batch", body = BatchDoc),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the caller's batch", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It is still running, or none of its members failed", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller has as many batches running as allowed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn retry_failed(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<BatchDoc>), ApiError> {
    let record = owned_batch(&state, &owner.0, batch_id(&id)?).await?;
    if record.finished_at_ms.is_none() {
        return Err(AppError::Conflict(format!(
            "batch {} is still running: wait for it to end, or cancel it",
            record.id
        ))
        .into());
    }
    let kind = crate::ssr::runner::task_type(&state, &record.task_type)?;
    let spec: BatchSpec = serde_json::from_value(record.spec.clone())
        .map_err(|_| AppError::Conflict(format!("batch {}'s record is damaged", record.id)))?;
    let (members, _) = state
        .sessions
        .store()
        .members(record.id, None, record.members as usize)
        .await?;
    let mut inputs: Vec<Value> = members
        .into_iter()
        .filter(|m| {
            m.task
                .outcome
                .is_some_and(|o| o != model::page::Outcome::Finished)
        })
        .map(|m| m.task.input)
        .collect();
    // A cancelled batch's members that were never handed over.
    let never_ran = record.fed.min(spec.len() as u64)..spec.len() as u64;
    inputs.extend(never_ran.map(|index| spec.member(&kind, index as usize)));
    if inputs.is_empty() {
        return Err(AppError::Conflict(format!(
            "batch {} has no failed or cancelled member to run again",
            record.id
        ))
        .into());
    }
    let spec = BatchSpec::inputs(inputs, state.batches.config().max_members)?;
    let tied = Tied {
        idempotency: None,
        retry_of: Some(record.id),
        reuse: false,
    };
    let run = state
        .batches
        .submit(&state, &owner.0, &kind, spec, tied)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchDoc::of_run(&run, Some(record.id))),
    ))
}
