//! The error every server function returns. Messages are written for the person at the page:
//! each says what happened and what to do.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// The input was refused; the message says why.
    #[error("{0}")]
    InvalidInput(String),
    /// The cluster's queue is full.
    #[error("{0}")]
    Busy(String),
    /// The task is not (or no longer) this session's to act on.
    #[error("{0}")]
    NotFound(String),
    /// The request did not come with a session cookie.
    #[error("your session was not recognised: reload the page")]
    NoSession,
    /// The server is not able to take work right now.
    #[error("{0}")]
    Unavailable(String),
    /// Transport or encoding failures from the server-function layer.
    #[error("{0}")]
    ServerFn(ServerFnErrorErr),
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
            Busy { .. } => Self::Busy(message),
            InvalidInput(_) => Self::InvalidInput(message),
            UnknownTask(_) | ShutDown | Encode(_) => Self::Unavailable(message),
        }
    }
}
