//! [`AppState`]: built once by the `offload` binary, handed to every server function through
//! Leptos context and to axum handlers as router state.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use crate::AppError;
use crate::ssr::Sessions;

#[derive(Clone)]
pub struct AppState {
    /// Leptos' site options: address, output names, where the built site lives.
    pub leptos_options: LeptosOptions,
    /// The one cluster client every session submits through (the seed's cached Dask `Client`).
    pub cluster: cluster::Client,
    /// Each browser session's queue and terminal.
    pub sessions: Arc<Sessions>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl AppState {
    /// The state inside a server function.
    pub fn from_context() -> Result<Self, AppError> {
        leptos::prelude::use_context::<Self>()
            .ok_or_else(|| AppError::Unavailable("the server is not fully started".into()))
    }
}
