//! How the API says no: every refusal is an RFC 9457 problem (`application/problem+json`), with
//! `Retry-After` where waiting helps and `WWW-Authenticate` where a token is missing.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppError;

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

impl From<crate::ssr::store::StoreError> for ApiError {
    fn from(error: crate::ssr::store::StoreError) -> Self {
        Self::App(error.into())
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

/// Any path under `/api/v1/` that is not one of the API's.
pub async fn unknown_path(uri: axum::http::Uri) -> Response {
    problem(
        404,
        format!(
            "{} is not an endpoint of this API: /api/v1/openapi.json lists them",
            uri.path()
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
