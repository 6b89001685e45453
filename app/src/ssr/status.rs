//! Gives each refusal of a server function its HTTP status. Server functions answer every
//! error with 500 and the encoded [`AppError`]; this layer reads that error back and sets the
//! status its kind calls for ([`AppError::status`]), so a bad request says 400, a full
//! session 429 and a stopping server 503. It also refuses oversized bodies with 413 up front.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppError;

/// Largest request body a server function (or the API, but for batches) accepts.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest body of `POST /api/v1/batches`, whose members' inputs may be listed one by one.
pub const MAX_BATCH_BODY_BYTES: usize = 1024 * 1024;
/// The one path with the larger limit.
const BATCHES: &str = "/api/v1/batches";
/// Largest encoded error read back (they are a few hundred bytes).
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// The header server functions put on their error responses.
const SERVER_FN_ERROR: &str = "serverfnerror";

pub async fn error_status(request: Request, next: Next) -> Response {
    let limit = if request.uri().path() == BATCHES {
        MAX_BATCH_BODY_BYTES
    } else {
        MAX_BODY_BYTES
    };
    // Whatever reads the body (a server function, an extractor) meets the limit as it reads.
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    let declared = declared_length(request.headers());
    // The JSON API answers with problems, server functions with their encoded errors.
    let api = request.uri().path().starts_with("/api/v1/");
    if declared.is_some_and(|len| len > limit) {
        return too_large(api, limit);
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(api, limit);
    }
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key(SERVER_FN_ERROR)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_ERROR_BYTES).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Ok(error) = serde_json::from_slice::<AppError>(&bytes) {
        // A body cut short by the size limit while a server function read it.
        if error.to_string().contains("length limit exceeded") {
            return too_large(api, limit);
        }
        parts.status = StatusCode::from_u16(error.status()).unwrap_or(parts.status);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The body length a request declares (`Content-Length`), if it declares one that parses.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn too_large(api: bool, limit: usize) -> Response {
    let error = AppError::TooLarge(format!(
        "the request is larger than the {} KB {} accepts",
        limit / 1024,
        if api {
            "this endpoint"
        } else {
            "a server function"
        }
    ));
    if api {
        return crate::ssr::api::problem(413, error.to_string(), None);
    }
    let body = serde_json::to_string(&error).unwrap_or_default();
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
