//! The app's server functions, in one place: the pages and components that call them import
//! them from here. Each checks its input and answers with an [`AppError`] a user can act on.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::AppError;
use model::page::{ClusterInfo, QueuedTask, TaskPageView};
#[cfg(feature = "ssr")]
use model::{View, fibonacci::parse_n};

/// Queues fibonacci(n) for the caller's session. `n` arrives as typed, so a form post without
/// JavaScript gets the same checks and messages as the page.
#[server(endpoint = "submit")]
pub async fn submit_task(n: String) -> Result<QueuedTask, AppError> {
    let n = parse_n(&n).map_err(AppError::InvalidInput)?;
    let state = crate::ssr::AppState::from_context()?;
    crate::ssr::runner::submit(&state, &request::session_id().await?, n).await
}

/// Cancels one of the caller's queued or running tasks.
#[server(endpoint = "cancel")]
pub async fn cancel_task(id: u64) -> Result<(), AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let not_found = || AppError::NotFound("that task is not in your queue any more".into());
    let session = state
        .sessions
        .get(&request::session_id().await?)
        .ok_or_else(not_found)?;
    let cluster_id = session.cluster_id(id).ok_or_else(not_found)?;
    state
        .cluster
        .cancel(cluster::TaskId(cluster_id))
        .await
        .map_err(|e| AppError::NotFound(e.to_string()))
}

/// The caller's queue, results and next n, as the page first shows them. Creates nothing.
#[server(endpoint = "task-page")]
pub async fn load_task_page() -> Result<TaskPageView, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let mut view = state
        .sessions
        .get(&request::session_id().await?)
        .map(|session| session.view())
        .unwrap_or_default();
    view.error = request::form_error().await;
    Ok(view)
}

/// The app's version and the cluster's size, for the footer.
#[server(endpoint = "cluster-info")]
pub async fn get_cluster_info() -> Result<ClusterInfo, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    Ok(ClusterInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        workers: state.cluster.workers(),
        backend: state.cluster.backend(),
    })
}

#[cfg(feature = "ssr")]
mod request {
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

    /// A form posted without JavaScript comes back with its error in the URL (`__err`, as
    /// server functions encode it); this reads it out for the page to show.
    pub async fn form_error() -> Option<String> {
        let Query(query) = leptos_axum::extract::<Query<HashMap<String, String>>>()
            .await
            .ok()?;
        let bytes = base64::engine::general_purpose::URL_SAFE
            .decode(query.get("__err")?)
            .ok()?;
        let error: AppError = serde_json::from_slice(&bytes).ok()?;
        Some(error.to_string())
    }
}

/// What the viewer needs to know about the dashboard it shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewerConfig {
    /// The dashboard's `/status` page.
    pub status_url: String,
    /// Where `individual-*` paths are appended.
    pub base_url: String,
    /// (label, path), in the dashboard's order.
    pub views: Vec<(String, String)>,
    /// True when the list came from the dashboard's own `/individual-plots.json`.
    pub from_dashboard: bool,
}

#[server(endpoint = "dashboard-views")]
pub async fn dashboard_views() -> Result<ViewerConfig, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let url = &state.dashboard_url;
    let fetched = plots::fetch_views(&url.base()).await;
    let from_dashboard = fetched.is_some();
    let views = fetched.unwrap_or_else(|| {
        View::ALL
            .iter()
            .map(|view| (view.label().to_owned(), view.path()))
            .collect()
    });
    Ok(ViewerConfig {
        status_url: url.status().to_owned(),
        base_url: url.base(),
        views,
        from_dashboard,
    })
}

#[cfg(feature = "ssr")]
pub mod plots {
    use std::time::Duration;

    /// The views a dashboard lists in `/individual-plots.json`, or None when it does not answer
    /// with such a list (then the viewer uses the built-in 27).
    pub async fn fetch_views(base: &str) -> Option<Vec<(String, String)>> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        let response = client
            .get(format!("{base}individual-plots.json"))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        parse_plots(&response.text().await.ok()?)
    }

    /// `{"Title": "/individual-name", ...}` → [(name, individual-name)], keeping only paths that
    /// are safe to append to the dashboard URL.
    pub fn parse_plots(json: &str) -> Option<Vec<(String, String)>> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).ok()?;
        let mut views: Vec<(String, String)> = map
            .values()
            .filter_map(|v| v.as_str())
            .filter_map(|p| p.strip_prefix('/'))
            .filter(|p| {
                p.starts_with("individual-")
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
            .map(|p| (p.trim_start_matches("individual-").to_owned(), p.to_owned()))
            .collect();
        views.sort();
        views.dedup();
        (!views.is_empty()).then_some(views)
    }

    #[cfg(test)]
    mod tests {
        use super::parse_plots;

        #[test]
        fn dask_lists_are_read_and_unsafe_paths_dropped() {
            let json = r#"{"Task Stream": "/individual-task-stream", "CPU": "/individual-cpu",
                "Cluster Map": "/statics/individual-cluster-map.html",
                "Evil": "/individual-x\"><script>", "Other": "javascript:alert(1)"}"#;
            assert_eq!(
                parse_plots(json).unwrap(),
                [
                    ("cpu".to_owned(), "individual-cpu".to_owned()),
                    (
                        "task-stream".to_owned(),
                        "individual-task-stream".to_owned()
                    )
                ]
            );
            assert_eq!(parse_plots("{}"), None);
            assert_eq!(parse_plots("not json"), None);
        }
    }
}
