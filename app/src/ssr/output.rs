//! `GET /tasks/{id}/output`: a task's binary output (a picture), to the session that submitted
//! it. Stored once when the task ended; the page's live stream and the detail page only link
//! to it.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ssr::{AppState, SessionId};

/// Media types a browser may show in the page; anything else is a download.
const SHOWN: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

pub async fn task_output(
    State(state): State<AppState>,
    Extension(session): Extension<SessionId>,
    Path(id): Path<String>,
) -> Response {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            format!("task {id} has no output of yours to download"),
        )
            .into_response()
    };
    let Ok(task) = id.parse::<u64>() else {
        return not_found();
    };
    match state.sessions.store().output(&session.0, task).await {
        Ok(Some((media_type, bytes))) => {
            let disposition = if SHOWN.contains(&media_type.as_str()) {
                "inline".to_owned()
            } else {
                format!("attachment; filename=\"task-{task}-output\"")
            };
            (
                [
                    (header::CONTENT_TYPE, media_type),
                    (header::CONTENT_DISPOSITION, disposition),
                    // A task's output never changes once stored, and task ids are not reused.
                    (
                        header::CACHE_CONTROL,
                        "private, max-age=31536000, immutable".to_owned(),
                    ),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                    // Whatever a task wrote, it runs no script as this origin.
                    (
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'none'; sandbox".to_owned(),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Ok(None) => not_found(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}
