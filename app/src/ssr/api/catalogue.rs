//! What the caller may do and with what: its quota (`GET /api/v1/limits`) and the task types
//! this server runs (`GET /api/v1/task-types`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::Owner;
use super::problem::Problem;
use crate::ssr::AppState;

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
pub(super) async fn limits(owner: Owner, State(state): State<AppState>) -> Json<LimitsDoc> {
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
pub(super) async fn task_types(_: Owner, State(state): State<AppState>) -> Json<Vec<TaskTypeDoc>> {
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
