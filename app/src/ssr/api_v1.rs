//! `/api/v1`: the JSON API, for scripts and the command line. One model with the page: a task
//! submitted here is the same task the page shows, with the same checks, caps and messages,
//! and the page's own session may call it. Its OpenAPI 3.1 document (`/api/v1/openapi.json`)
//! is generated from these handlers' types (`utoipa`), with each task type's input schema
//! (the one its form is drawn from) as a component. Every error is an RFC 9457 problem.
//!
//! Callers are owners: a token (`Authorization: Bearer …`, see [`super::tokens`]) owns its
//! tasks as `token:NAME`; a browser session (its cookie) owns its own. Neither: 401.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppError;
use crate::ssr::guard::FreshSession;
use crate::ssr::runner::Links;
use crate::ssr::store::{TaskFilter, TaskRecord};
use crate::ssr::{AppState, SessionId};
use model::page::{Outcome, TaskStatus};

/// Tasks a list page holds at most (and by default).
pub const MAX_PAGE: usize = 100;

/// The API's routes and its OpenAPI document, built from the same handlers.
pub fn router(state: &AppState) -> (axum::Router<AppState>, Value) {
    let (router, api) = OpenApiRouter::with_openapi(base_document())
        .routes(routes!(task_types))
        .routes(routes!(limits))
        .routes(routes!(submit, list))
        .routes(routes!(show))
        .routes(routes!(output))
        .routes(routes!(cancel))
        .routes(routes!(retry))
        .routes(routes!(crate::ssr::api_events::events))
        .routes(routes!(crate::ssr::api_events::task_events))
        .split_for_parts();
    let mut document = serde_json::to_value(&api).unwrap_or_default();
    add_task_type_schemas(&mut document, state);
    // Encoded once: the document does not change while the server runs.
    let encoded = axum::body::Bytes::from(serde_json::to_vec(&document).unwrap_or_default());
    let router = router.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let encoded = encoded.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], encoded) }
        }),
    );
    (router, document)
}

fn base_document() -> OpenApi {
    let mut api = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Offload")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Submit CPU-heavy tasks to an Offload cluster and follow them. \
                     Authenticate with `Authorization: Bearer <token>` (`offload token create \
                     NAME`). Errors are RFC 9457 problems (`application/problem+json`).",
                ))
                .build(),
        )
        .build();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "token",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    api.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "token",
        Vec::<String>::new(),
    )]);
    api
}

/// Each task type's input and output schemas, as components `{type}.Input` and
/// `{type}.Output`: the schemas the forms are drawn from and the workers check, as `schemars`
/// wrote them (OpenAPI 3.1 uses the same JSON Schema dialect).
fn add_task_type_schemas(document: &mut Value, state: &AppState) {
    let Some(registry) = state.cluster.registry() else {
        return;
    };
    let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for kind in registry.types() {
        let prefix = format!("{}.", kind.name());
        for (part, schema) in [
            ("Input", kind.input_schema()),
            ("Output", kind.output_schema()),
        ] {
            schemas.extend(component_schemas(&prefix, part, schema));
        }
    }
}

/// A schemars document as OpenAPI components: the root as `{prefix}{root}`, each of its
/// `$defs` as `{prefix}{name}`, with their references rewritten to match.
fn component_schemas(prefix: &str, root: &str, schema: &Value) -> Vec<(String, Value)> {
    let mut schema = schema.clone();
    let defs = schema
        .as_object_mut()
        .and_then(|o| {
            o.remove("$schema");
            o.remove("$defs")
        })
        .and_then(|d| match d {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .unwrap_or_default();
    let mut out = vec![(format!("{prefix}{root}"), schema)];
    out.extend(
        defs.into_iter()
            .map(|(name, def)| (format!("{prefix}{name}"), def)),
    );
    for (_, schema) in &mut out {
        rewrite_refs(schema, prefix);
    }
    out
}

fn rewrite_refs(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => {
                        if let Some(name) = target.strip_prefix("#/$defs/") {
                            *target = format!("#/components/schemas/{prefix}{name}");
                        }
                    }
                    (_, inner) => rewrite_refs(inner, prefix),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, prefix)),
        _ => {}
    }
}

/// An RFC 9457 problem: what went wrong, for a person and for a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's name (`Bad Request`).
    pub title: String,
    pub status: u16,
    /// What happened and what to do, in a sentence.
    pub detail: String,
    /// For refused input: the field it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A refusal of the API, answered as a [`Problem`].
#[derive(Debug)]
pub enum ApiError {
    /// No token and no session, or a token that is not (or no longer) valid.
    Unauthorized(String),
    App(AppError),
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        Self::App(error)
    }
}

/// How long a refused caller should wait before trying again: a task or two's time for its
/// own caps, a little longer for a full or stopping server.
const RETRY_AFTER_LIMIT: &str = "2";
const RETRY_AFTER_UNAVAILABLE: &str = "5";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, detail, field) = match self {
            Self::Unauthorized(detail) => (401, detail, None),
            Self::App(error) => {
                let field = error.field_error().and_then(|e| e.field.clone());
                (error.status(), error.to_string(), field)
            }
        };
        problem(status, detail, field)
    }
}

/// A problem response with its status, its media type and, for 429 and 503, `Retry-After`.
pub fn problem(status: u16, detail: String, field: Option<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = Problem {
        kind: "about:blank".into(),
        title: code.canonical_reason().unwrap_or("Error").into(),
        status: code.as_u16(),
        detail,
        field,
    };
    let mut response = (code, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    let retry = match status {
        429 => Some(RETRY_AFTER_LIMIT),
        503 => Some(RETRY_AFTER_UNAVAILABLE),
        _ => None,
    };
    if let Some(seconds) = retry {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    if status == 401 {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"offload\""),
        );
    }
    response
}

/// Who is calling: a token's owner or a browser session.
pub struct Owner(pub SessionId);

impl FromRequestParts<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let presented = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    ApiError::Unauthorized(
                        "the Authorization header must be `Bearer <token>`".into(),
                    )
                })?;
            let name = state
                .sessions
                .store()
                .token_owner(presented)
                .map_err(AppError::from)?
                .ok_or_else(|| {
                    ApiError::Unauthorized(
                        "that token is not valid: it was revoked or mistyped (`offload token \
                         list` shows the live ones)"
                            .into(),
                    )
                })?;
            return Ok(Self(SessionId::for_token(&name)));
        }
        let fresh = parts.extensions.get::<FreshSession>().is_some();
        match parts.extensions.get::<SessionId>() {
            Some(id) if !fresh => Ok(Self(id.clone())),
            _ => Err(ApiError::Unauthorized(
                "send `Authorization: Bearer <token>` (make one with `offload token create \
                 NAME`), or call from the Offload page"
                    .into(),
            )),
        }
    }
}

/// What the caller may still do, against the caps that keep the cluster fair.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LimitsDoc {
    /// The caller's tasks running now.
    pub running: usize,
    /// Most of the caller's tasks that run at once (`--max-running-per-session`; by default
    /// one less than the worker threads): more wait in the queue.
    pub max_running: usize,
    /// The caller's tasks waiting.
    pub queued: usize,
    /// Most of the caller's tasks that may wait (`--max-queued-per-session`): a submission
    /// beyond it is refused with 429.
    pub max_queued: usize,
    /// The same, as the task page says it: `3 of 3 running · 12 of 100 queued`.
    pub text: String,
}

/// The caller's quota: what it runs and queues, and the most it may.
#[utoipa::path(
    get,
    path = "/api/v1/limits",
    tag = "limits",
    responses(
        (status = 200, description = "The caller's tasks against its caps", body = LimitsDoc),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn limits(owner: Owner, State(state): State<AppState>) -> Json<LimitsDoc> {
    let quota = state.quota(&owner.0);
    Json(LimitsDoc {
        running: quota.running,
        max_running: quota.max_running,
        queued: quota.queued,
        max_queued: quota.max_queued,
        text: quota.line(),
    })
}

/// A task type, as the API describes it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskTypeDoc {
    /// Its name, as `type` in a submission (`primes`).
    pub name: String,
    pub title: String,
    pub description: String,
    /// JSON Schema of its input (also the component `{name}.Input`).
    pub input_schema: Value,
    /// JSON Schema of its output (also the component `{name}.Output`).
    pub output_schema: Value,
}

/// The task types this server runs, in the page's order.
#[utoipa::path(
    get,
    path = "/api/v1/task-types",
    tag = "task types",
    responses(
        (status = 200, description = "Every task type", body = Vec<TaskTypeDoc>),
        (status = 401, description = "No token or session", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn task_types(_: Owner, State(state): State<AppState>) -> Json<Vec<TaskTypeDoc>> {
    let types = state
        .cluster
        .registry()
        .map(|r| {
            r.types()
                .iter()
                .map(|t| TaskTypeDoc {
                    name: t.name().to_owned(),
                    title: t.title().to_owned(),
                    description: t.description().to_owned(),
                    input_schema: t.input_schema().clone(),
                    output_schema: t.output_schema().clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    Json(types)
}

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

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Queued,
    Running,
    Finished,
    Failed,
    Cancelled,
    Lost,
}

impl TaskState {
    /// As the JSON says it.
    fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Lost => "lost",
        }
    }

    pub(crate) fn ended(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Finished => Self::Finished,
            Outcome::Failed => Self::Failed,
            Outcome::Cancelled => Self::Cancelled,
            Outcome::Lost => Self::Lost,
        }
    }
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
    fn from_record(record: TaskRecord, live: Option<(TaskStatus, f64, Option<u64>)>) -> Self {
        let state = match (record.outcome, live) {
            (Some(outcome), _) => TaskState::ended(outcome),
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
        (status = 429, description = "The caller's queue is full (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server is full, stopping, or has no worker for the type (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn submit(
    owner: Owner,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewTask>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(new) = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::TooLarge(e.body_text())
        } else {
            AppError::invalid(e.body_text())
        }
    })?;
    let Some(key) = headers.get(IDEMPOTENCY_KEY) else {
        let doc = accept(&state, &owner.0, new, Links::default()).await?;
        return Ok((StatusCode::ACCEPTED, Json(doc)));
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()))
        .ok_or_else(|| {
            AppError::invalid("an Idempotency-Key is 1 to 255 visible ASCII characters")
        })?
        .to_owned();
    let request = Sha256::digest(serde_json::to_vec(&new).unwrap_or_default()).to_vec();
    // One request per owner and key at a time: the others wait, then find its task.
    let slot = state.idempotency.slot(&owner.0, &key);
    let turn = slot.lock().await;
    let result = idempotent_submit(&state, &owner.0, &key, request, new).await;
    drop(turn);
    state.idempotency.release(&owner.0, &key, slot);
    Ok((StatusCode::ACCEPTED, Json(result?)))
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
    }))
}

/// The header that makes a submission safe to repeat.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Submits `new` under `key` once: a repeat of the same request gets the same answer, the
/// task as it was accepted (its record keeps the key); another request under the key, 422.
async fn idempotent_submit(
    state: &AppState,
    owner: &SessionId,
    key: &str,
    request: Vec<u8>,
    new: NewTask,
) -> Result<Value, ApiError> {
    let reused = || {
        AppError::Unprocessable(format!(
            "the Idempotency-Key {key:?} was used with another request: use a new key for a \
             new task"
        ))
    };
    let earlier = state
        .sessions
        .store()
        .by_idempotency_key(&owner.0, key)
        .await
        .map_err(AppError::from)?;
    match earlier {
        Some((_, first)) if first != request => Err(reused().into()),
        Some((id, _)) => {
            let record = owned_record(state, owner, id).await?;
            Ok(TaskDoc::accepted(record))
        }
        None => {
            let links = Links {
                idempotency: Some((key.to_owned(), request)),
                ..Default::default()
            };
            accept(state, owner, new, links).await
        }
    }
}

/// The submissions under an `Idempotency-Key` in progress, by owner and key: an entry lives
/// only while requests for it are being answered, so the map holds at most one entry per
/// request in flight. (What a key got is in the task's record.)
#[derive(Default)]
pub struct IdempotencyLocks {
    slots: parking_lot::Mutex<HashMap<(String, String), Slot>>,
}

type Slot = Arc<tokio::sync::Mutex<()>>;

impl IdempotencyLocks {
    fn slot(&self, owner: &SessionId, key: &str) -> Slot {
        self.slots
            .lock()
            .entry((owner.0.clone(), key.to_owned()))
            .or_default()
            .clone()
    }

    /// Done with `slot`: forgotten once no other request holds it.
    fn release(&self, owner: &SessionId, key: &str, slot: Slot) {
        let mut slots = self.slots.lock();
        // The map's reference and ours: nobody else waits on it.
        if Arc::strong_count(&slot) == 2 {
            slots.remove(&(owner.0.clone(), key.to_owned()));
        }
    }
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
async fn list(
    owner: Owner,
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TaskPage>, ApiError> {
    let Query(query) = query.map_err(|e| AppError::invalid(e.body_text()))?;
    let limit = query.limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(
            AppError::invalid(format!("limit must be from 1 to {MAX_PAGE} (got {limit})")).into(),
        );
    }
    let before = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(cursor.parse::<u64>().map_err(|_| {
            AppError::invalid(format!(
                "{cursor:?} is not a cursor: pass the next_cursor of the previous page"
            ))
        })?),
    };
    let session = state.sessions.get(&owner.0);
    let live = |id: u64| session.as_ref()?.standing(id);
    let filter = TaskFilter {
        kind: query.kind,
        ended: query.state.map(|s| match s {
            TaskState::Queued | TaskState::Running => None,
            TaskState::Finished => Some(Outcome::Finished),
            TaskState::Failed => Some(Outcome::Failed),
            TaskState::Cancelled => Some(Outcome::Cancelled),
            TaskState::Lost => Some(Outcome::Lost),
        }),
        before,
        search: None,
        limit,
    };
    let (records, more) = state
        .sessions
        .store()
        .tasks(&owner.0.0, filter)
        .await
        .map_err(AppError::from)?;
    let next_cursor = more
        .then(|| records.last().map(|r| r.id.to_string()))
        .flatten();
    let tasks = records
        .into_iter()
        .map(|record| {
            let live = live(record.id);
            TaskDoc::from_record(record, live)
        })
        .filter(|doc| query.state.is_none_or(|s| doc.state == s))
        .collect();
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
async fn show(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TaskDoc>, ApiError> {
    let id = task_id(&id)?;
    Ok(Json(task_doc(&state, &owner.0, id).await?))
}

/// A task id from a path: anything else is a task nobody has.
pub(crate) fn task_id(raw: &str) -> Result<u64, AppError> {
    raw.parse().map_err(|_| {
        AppError::NotFound(format!(
            "{raw:?} is not a task id: tasks are numbered from 1"
        ))
    })
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
async fn output(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = task_id(&id)?;
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
async fn cancel(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<TaskDoc>), ApiError> {
    let id = task_id(&id)?;
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
async fn retry(
    owner: Owner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = task_id(&id)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemars_documents_become_components_with_their_references_rewritten() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Input",
            "type": "object",
            "properties": {"algorithm": {"$ref": "#/$defs/Algorithm"}},
            "$defs": {"Algorithm": {"type": "string", "enum": ["sha256"]}},
        });
        let components = component_schemas("hash-chain.", "Input", &schema);
        assert_eq!(components.len(), 2);
        assert_eq!(components[0].0, "hash-chain.Input");
        assert!(components[0].1.get("$schema").is_none());
        assert_eq!(
            components[0].1["properties"]["algorithm"]["$ref"],
            "#/components/schemas/hash-chain.Algorithm"
        );
        assert_eq!(components[1].0, "hash-chain.Algorithm");
    }

    #[test]
    fn problems_carry_their_status_media_type_and_retry_after() {
        let response = problem(429, "wait".into(), None);
        assert_eq!(response.status(), 429);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_LIMIT);
        let response = problem(400, "no".into(), Some("n".into()));
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let response = problem(401, "who?".into(), None);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
