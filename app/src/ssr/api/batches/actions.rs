//! Acting on one of the caller's batches: cancel it, or run its failed members again.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

use super::{BatchDoc, BatchState, Tied, batch_id, owned_batch};
use crate::AppError;
use crate::ssr::AppState;
use crate::ssr::api::extract::Owner;
use crate::ssr::api::problem::{ApiError, Problem};
use crate::ssr::batches::BatchSpec;

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
pub(in crate::ssr::api) async fn cancel(
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
pub(in crate::ssr::api) async fn retry_failed(
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
