//! What a server function reads of the request it answers: its session, the host it came to,
//! and the error a form posted without JavaScript came back with.

use axum::Extension;
use std::collections::HashMap;

use axum::extract::Query;
use base64::Engine;

use crate::AppError;
use crate::ssr::SessionId;

pub async fn session_id() -> Result<SessionId, AppError> {
    leptos_axum::extract::<Extension<SessionId>>()
        .await
        .map(|Extension(id)| id)
        .map_err(|_| AppError::Unavailable("the session layer is missing".into()))
}

/// The Host the request came to (checked against the allowed hosts before it got here).
pub async fn host() -> Result<String, AppError> {
    let headers = leptos_axum::extract::<axum::http::HeaderMap>()
        .await
        .map_err(|e| AppError::internal(&e))?;
    Ok(headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:3000")
        .to_owned())
}

/// A form posted without JavaScript comes back with its error in the URL (`__err`, as
/// server functions encode it); this reads it out for the page to show.
pub async fn form_error() -> Option<AppError> {
    let Query(query) = leptos_axum::extract::<Query<HashMap<String, String>>>()
        .await
        .ok()?;
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(query.get("__err")?)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The caller's task `id`, from the record.
pub async fn owned_task(
    state: &crate::ssr::AppState,
    id: u64,
) -> Result<crate::ssr::store::TaskRecord, AppError> {
    let session = session_id().await?;
    crate::ssr::api::owned_record(state, &session, id).await
}
