//! The caller's batches: submit one (`POST /api/v1/batches`: every input listed, or one input
//! with fields varied; safe to repeat under an `Idempotency-Key`) and the document every
//! endpoint answers with; reading them ([`read`]: lists, members, results), following one
//! ([`events`]), and acting on one ([`actions`]: cancel, run the failed again).

pub(super) mod actions;
pub(super) mod events;
pub(super) mod read;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::extract::{ApiJson, Owner};
use super::idempotency::{self, Makes};
use super::problem::{ApiError, Problem};
use crate::AppError;
use crate::ssr::batches::{BatchLinks as Tied, BatchRun, BatchSpec, Snapshot};
use crate::ssr::store::BatchRecord;
use crate::ssr::{AppState, SessionId};
use model::batch::{Combine, Vary};

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

impl BatchState {
    /// Its serde name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
        }
    }
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

    pub(super) fn of_run(run: &BatchRun, retry_of: Option<u64>) -> Self {
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
pub(super) fn batch_id(raw: &str) -> Result<u64, AppError> {
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
pub(in crate::ssr::api) async fn submit(
    owner: Owner,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(new): ApiJson<NewBatch>,
) -> Result<(StatusCode, Json<BatchDoc>), ApiError> {
    let doc = idempotency::once(
        &state,
        &owner.0,
        &headers,
        Makes::Batch,
        new,
        async |id| {
            let record = owned_batch(&state, &owner.0, id).await?;
            Ok(BatchDoc::of(&state, &owner.0, &record))
        },
        async |new, keyed| accept(&state, &owner.0, new, keyed).await,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(doc)))
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
