//! `/api/v1`: the JSON API, for scripts and the command line. One model with the page: a task
//! submitted here is the same task the page shows, with the same checks, caps and messages,
//! and the page's own session may call it. Its OpenAPI 3.1 document (`/api/v1/openapi.json`,
//! [`openapi`]) is generated from these handlers' types (`utoipa`), with each task type's input
//! schema (the one its form is drawn from) as a component. Every error is an RFC 9457 problem
//! ([`problem`]), and every handler takes what it reads through the same extractors
//! ([`extract`]), so a request is refused the same way wherever it goes.
//!
//! Callers are owners: a token (`Authorization: Bearer …`, see [`super::tokens`]) owns its
//! tasks as `token:NAME`; a browser session (its cookie) owns its own. Neither: 401.

mod batches;
mod catalogue;
mod events;
mod extract;
mod idempotency;
mod openapi;
mod problem;
mod tasks;

use axum::http::header;
use axum::routing::{any, get};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) use batches::{BatchDoc, owned_batch};
pub use idempotency::IdempotencyLocks;
pub use problem::problem;
pub(crate) use tasks::owned_record;

use crate::ssr::AppState;

/// The API's routes and its OpenAPI document, built from the same handlers. Any other path
/// under `/api/v1/` is a problem too (404), never the app's HTML page.
pub fn router(state: &AppState) -> (axum::Router<AppState>, Value) {
    let (router, api) = OpenApiRouter::with_openapi(openapi::base_document())
        .routes(routes!(catalogue::task_types))
        .routes(routes!(catalogue::limits))
        .routes(routes!(tasks::submit, tasks::list))
        .routes(routes!(tasks::show))
        .routes(routes!(tasks::output))
        .routes(routes!(tasks::cancel))
        .routes(routes!(tasks::retry))
        .routes(routes!(batches::submit, batches::read::list))
        .routes(routes!(batches::read::show))
        .routes(routes!(batches::read::members))
        .routes(routes!(batches::actions::cancel))
        .routes(routes!(batches::read::results_csv))
        .routes(routes!(batches::read::results_json))
        .routes(routes!(batches::events::events))
        .routes(routes!(batches::actions::retry_failed))
        .routes(routes!(events::events))
        .routes(routes!(events::task_events))
        .split_for_parts();
    let mut document = serde_json::to_value(&api).unwrap_or_default();
    openapi::add_task_type_schemas(&mut document, state);
    // Encoded once: the document does not change while the server runs.
    let encoded = axum::body::Bytes::from(serde_json::to_vec(&document).unwrap_or_default());
    let router = router
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let encoded = encoded.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], encoded) }
            }),
        )
        .route("/api/v1", any(problem::unknown_path))
        .route("/api/v1/", any(problem::unknown_path))
        .route("/api/v1/{*rest}", any(problem::unknown_path));
    (router, document)
}
