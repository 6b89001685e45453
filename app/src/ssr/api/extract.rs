//! What the API's handlers take from a request, each refusing with a [`Problem`] the same way
//! for every handler: who calls ([`Owner`]), a JSON body ([`ApiJson`]), a query ([`ApiQuery`])
//! and a task id from the path ([`TaskIdPath`]).
//!
//! [`Problem`]: super::Problem

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use crate::AppError;
use crate::ssr::guard::FreshSession;
use crate::ssr::{AppState, SessionId};

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
                .await?
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

/// A JSON request body: too large is 413, not JSON at all (another `Content-Type`) is 415,
/// JSON that does not fit is 400 with serde's reason.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(value)| Self(value))
            .map_err(|rejection| json_refusal(&rejection).into())
    }
}

fn json_refusal(rejection: &JsonRejection) -> AppError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge(rejection.body_text()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMediaType(
            "send the body as JSON, with `Content-Type: application/json`".into(),
        ),
        _ => AppError::invalid(rejection.body_text()),
    }
}

/// A query string: one that does not fit is 400 with the reason.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| AppError::invalid(rejection.body_text()).into())
    }
}

/// The task id in a path (`/api/v1/tasks/{id}…`): anything but a number is a task nobody
/// has (404).
pub struct TaskIdPath(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for TaskIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| AppError::invalid(rejection.body_text()))?;
        Ok(Self(task_id(&raw)?))
    }
}

/// A task id from a path: anything else is a task nobody has.
fn task_id(raw: &str) -> Result<u64, AppError> {
    raw.parse().map_err(|_| {
        AppError::NotFound(format!(
            "{raw:?} is not a task id: tasks are numbered from 1"
        ))
    })
}

/// Items a list page holds at most (and by default).
pub const MAX_PAGE: usize = 100;

/// A list's `limit` (1 to [`MAX_PAGE`], that by default) and `cursor` (where the previous page
/// ended), or why they mean nothing.
pub(super) fn position(
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<(usize, Option<u64>), AppError> {
    let limit = limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::invalid(format!(
            "limit must be from 1 to {MAX_PAGE} (got {limit})"
        )));
    }
    let cursor = cursor
        .map(|cursor| {
            cursor.parse::<u64>().map_err(|_| {
                AppError::invalid(format!(
                    "{cursor:?} is not a cursor: pass the next_cursor of the previous page"
                ))
            })
        })
        .transpose()?;
    Ok((limit, cursor))
}
