//! `GET /tasks/{id}/output` (and the API's `/api/v1/tasks/{id}/output`): a task's binary
//! output (a picture), to the owner that submitted it. Stored once when the task ended; the
//! page's live stream and the detail page only link to it. Whatever a task wrote runs no
//! script as this origin: like every response that is not a page, it goes out with a
//! sandboxing policy and `nosniff` ([`crate::ssr::security`]).

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppError;
use crate::ssr::{AppState, SessionId};

/// Media types a browser may show in the page; anything else is a download.
const SHOWN: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

pub async fn task_output(
    State(state): State<AppState>,
    Extension(session): Extension<SessionId>,
    Path(id): Path<String>,
) -> Response {
    let Ok(task) = id.parse::<u64>() else {
        return (StatusCode::NOT_FOUND, no_output(&id)).into_response();
    };
    match owned_output(&state, &session, task).await {
        Ok(response) => response,
        Err(error) => {
            let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::NOT_FOUND);
            (status, error.to_string()).into_response()
        }
    }
}

fn no_output(id: &str) -> String {
    format!("task {id} has no output of yours to download")
}

/// Task `task`'s binary output, if `owner` submitted it and it has one.
pub async fn owned_output(
    state: &AppState,
    owner: &SessionId,
    task: u64,
) -> Result<Response, AppError> {
    let (media_type, bytes) = state
        .sessions
        .store()
        .output(&owner.0, task)
        .await
        .map_err(AppError::from)?
        .ok_or_else(|| AppError::NotFound(no_output(&task.to_string())))?;
    let disposition = if SHOWN.contains(&media_type.as_str()) {
        "inline".to_owned()
    } else {
        format!("attachment; filename=\"task-{task}-output\"")
    };
    Ok((
        [
            (header::CONTENT_TYPE, media_type),
            (header::CONTENT_DISPOSITION, disposition),
            // A task's output never changes once stored, and task ids are not reused.
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_owned(),
            ),
        ],
        bytes,
    )
        .into_response())
}
