//! One of the caller's batches as server-sent events, coalesced.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream;

use super::{BatchDoc, batch_id, owned_batch};
use crate::AppError;
use crate::ssr::AppState;
use crate::ssr::api::extract::Owner;
use crate::ssr::api::problem::{ApiError, Problem};
use crate::ssr::batches::COALESCE;

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
pub(in crate::ssr::api) async fn events(
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
