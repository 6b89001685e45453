//! The error every server function and API handler returns. Messages are written for the
//! person at the page: each says what happened and what to do. Each kind has its HTTP status
//! ([`AppError::status`]), applied on the way out by the server's error-status layer, so that
//! scripts and load balancers can tell a bad request from a full server without reading the
//! text. A failure inside the server (its database, say) is [`AppError::Internal`]: logged
//! with an id, and the person is told the id, never the cause.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

use model::form::FieldError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// The input was refused; the error says why, and at which field when it is about one.
    /// (400)
    #[error("{0}")]
    InvalidInput(FieldError),
    /// The task is not (or no longer) this session's to act on. (404)
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the task's state: cancelling one that has ended. (409)
    #[error("{0}")]
    Conflict(String),
    /// The request repeats an `Idempotency-Key` with another request. (422)
    #[error("{0}")]
    Unprocessable(String),
    /// The request body is larger than server functions accept. (413)
    #[error("{0}")]
    TooLarge(String),
    /// The request body is not of the media type the endpoint reads. (415)
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// One of this session's own limits is reached. (429)
    #[error("{0}")]
    LimitReached(String),
    /// The cluster's shared queue is full. (503)
    #[error("{0}")]
    Busy(String),
    /// The server cannot take work right now: too many sessions, shutting down. (503)
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the server; the message names the id it was logged under.
    /// (500)
    #[error("{0}")]
    Internal(String),
    /// Transport or encoding failures from the server-function layer.
    #[error("{0}")]
    ServerFn(ServerFnErrorErr),
}

impl AppError {
    /// Input refused as a whole, not at one field.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput(FieldError::whole(message))
    }

    /// The field an input error is about, if it is one.
    pub fn field_error(&self) -> Option<&FieldError> {
        match self {
            Self::InvalidInput(error) => Some(error),
            _ => None,
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidInput(_) => 400,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::Unprocessable(_) => 422,
            Self::TooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::LimitReached(_) => 429,
            Self::Busy(_) | Self::Unavailable(_) => 503,
            // Arguments that do not decode are the caller's mistake, not the server's.
            Self::ServerFn(
                ServerFnErrorErr::Args(_)
                | ServerFnErrorErr::MissingArg(_)
                | ServerFnErrorErr::Deserialization(_),
            ) => 400,
            Self::Internal(_) | Self::ServerFn(_) => 500,
        }
    }

    /// A failure inside the server: `cause` is logged under a new id, and the error says only
    /// the id (a database's or a library's text helps nobody at the page, and tells an
    /// attacker what runs here).
    #[cfg(feature = "ssr")]
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id = &id[..12];
        tracing::error!(error_id = id, error = %cause, "internal error");
        Self::Internal(format!(
            "something went wrong on the server (error {id}); it is logged there under that \
             id: try again, and if it happens again, give the id to whoever runs this server"
        ))
    }
}

#[cfg(feature = "ssr")]
impl From<crate::ssr::store::StoreError> for AppError {
    fn from(error: crate::ssr::store::StoreError) -> Self {
        match error {
            crate::ssr::store::StoreError::Stopped => Self::Unavailable(
                "the server is stopping and records nothing more: try again in a few seconds"
                    .into(),
            ),
            crate::ssr::store::StoreError::Pool(_)
            | crate::ssr::store::StoreError::Unrecorded(_) => {
                tracing::warn!(%error, "the record is out of reach");
                Self::Unavailable(
                    "the server cannot reach its record just now, and did nothing: try again in \
                     a few seconds"
                        .into(),
                )
            }
            error => Self::internal(&error),
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        Self::ServerFn(value)
    }
}

#[cfg(feature = "ssr")]
impl From<cluster::SubmitError> for AppError {
    fn from(error: cluster::SubmitError) -> Self {
        use cluster::SubmitError::*;
        let message = error.to_string();
        match error {
            SubmitterBusy { .. } => Self::LimitReached(message),
            Busy { .. } => Self::Busy(message),
            InvalidInput(error) => Self::InvalidInput(error),
            UnknownTask(_) => Self::invalid(message),
            NoWorker { .. } | ShutDown | Encode(_) | WatchOnly => Self::Unavailable(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_status() {
        let text = || "x".to_owned();
        let cases = [
            (AppError::invalid(text()), 400),
            (AppError::NotFound(text()), 404),
            (AppError::Conflict(text()), 409),
            (AppError::Unprocessable(text()), 422),
            (AppError::TooLarge(text()), 413),
            (AppError::UnsupportedMediaType(text()), 415),
            (AppError::Internal(text()), 500),
            (AppError::LimitReached(text()), 429),
            (AppError::Busy(text()), 503),
            (AppError::Unavailable(text()), 503),
            (AppError::ServerFn(ServerFnErrorErr::Args(text())), 400),
            (
                AppError::ServerFn(ServerFnErrorErr::MissingArg(text())),
                400,
            ),
            (
                AppError::ServerFn(ServerFnErrorErr::ServerError(text())),
                500,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
        }
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn a_store_failure_says_only_where_it_was_logged() {
        let cause = crate::ssr::store::StoreError::Sql(rusqlite::Error::InvalidQuery);
        let error = AppError::from(cause);
        assert_eq!(error.status(), 500);
        let text = error.to_string();
        assert!(
            text.starts_with("something went wrong on the server (error "),
            "{text}"
        );
        assert!(!text.to_lowercase().contains("query"), "{text}");
        let stopped = AppError::from(crate::ssr::store::StoreError::Stopped);
        assert_eq!(stopped.status(), 503);
        // The database out of reach: try again, not "something went wrong".
        for out_of_reach in [
            crate::ssr::store::StoreError::Pool(deadpool_postgres::PoolError::Closed),
            crate::ssr::store::StoreError::Unrecorded("connection closed".into()),
        ] {
            let error = AppError::from(out_of_reach);
            assert_eq!(error.status(), 503);
            assert!(error.to_string().contains("try again"), "{error}");
        }
    }
}
