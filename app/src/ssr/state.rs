//! [`AppState`]: built once by the `offload` binary, handed to every server function through
//! Leptos context and to axum handlers as router state.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use tokio::sync::watch;

use crate::AppError;
use crate::ssr::Sessions;
use crate::ssr::stream::StreamLimits;

#[derive(Clone)]
pub struct AppState {
    /// Leptos' site options: address, output names, where the built site lives.
    pub leptos_options: LeptosOptions,
    /// The one cluster client every session submits through (the seed's cached Dask `Client`).
    pub cluster: cluster::Client,
    /// Each browser session's queue and terminal, and their durable record.
    pub sessions: Arc<Sessions>,
    /// The open live streams, bounded per session and in all.
    pub streams: Arc<StreamLimits>,
    /// Turns once the server has begun to stop: submissions are refused, pages are told.
    pub shutdown: Shutdown,
    /// Where the viewer page points its iframe: the dashboard's `/status` URL.
    pub dashboard_url: DashboardUrl,
    /// API submissions under an `Idempotency-Key` that are in progress, one at a time per
    /// owner and key.
    pub idempotency: Arc<crate::ssr::api::IdempotencyLocks>,
    /// The open batches, each handing its members to the cluster as its owner's earlier
    /// members end.
    pub batches: Arc<crate::ssr::batches::Batches>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl AppState {
    /// What `owner` may still do: its unfinished tasks against the cluster's caps.
    pub fn quota(&self, owner: &super::SessionId) -> model::page::Quota {
        let (max_running, max_queued) = self.cluster.caps().unwrap_or_default();
        let quota = model::page::Quota {
            max_running,
            max_queued,
            ..Default::default()
        };
        match self.sessions.get(owner) {
            Some(session) => quota.of(&session.unfinished()),
            None => quota,
        }
    }

    /// The state inside a server function.
    pub fn from_context() -> Result<Self, AppError> {
        leptos::prelude::use_context::<Self>()
            .ok_or_else(|| AppError::Unavailable("the server is not fully started".into()))
    }
}

/// Whether the server has begun to stop; cheap to clone and to ask.
#[derive(Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Shutdown {
    pub fn begin(&self) {
        self.0.send_replace(true);
    }

    pub fn has_begun(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the stop has begun (at once if it has).
    pub async fn begun(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|begun| *begun).await;
    }
}

/// A dashboard URL that is known to be http(s), so it is safe to put into a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardUrl(String);

impl DashboardUrl {
    /// Accepts only absolute http:// or https:// URLs without markup-significant characters.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let lower = raw.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
            .ok_or_else(|| {
                format!("the dashboard URL must start with http:// or https:// (got {raw:?})")
            })?;
        if rest.is_empty()
            || raw
                .chars()
                .any(|c| c.is_whitespace() || "<>\"'`".contains(c))
        {
            return Err(format!(
                "the dashboard URL {raw:?} is not a valid http(s) URL"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The `/status` page.
    pub fn status(&self) -> &str {
        &self.0
    }

    /// Where the individual views live: the seed's `url.replace("/status", "/")`.
    pub fn base(&self) -> String {
        let base = self.0.replace("/status", "/");
        if base.ends_with('/') {
            base
        } else {
            format!("{base}/")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DashboardUrl;

    #[test]
    fn only_http_urls_are_accepted() {
        let url = DashboardUrl::parse("http://localhost:8787/status").unwrap();
        assert_eq!(url.base(), "http://localhost:8787/");
        assert!(DashboardUrl::parse("https://dask.example.org/status").is_ok());
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "//evil",
            "http://",
            "http://a\"><script>",
        ] {
            assert!(DashboardUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
