//! The app's server functions, in one place: the pages and components that call them import
//! them from here. Each checks its input and answers with an [`AppError`] a user can act on.

use std::collections::BTreeMap;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::AppError;
use model::page::{ClusterInfo, Submitted, TaskDetail, TaskPageView};
#[cfg(feature = "ssr")]
use model::{View, form::FieldError};

/// Queues a task of type `task` (the registry's first when empty: the seed's form posts `n`
/// alone) for the caller's session. The fields arrive as typed, so a form post without
/// JavaScript gets the same checks and messages as the page; an unknown field is refused.
#[server(endpoint = "submit")]
pub async fn submit_task(
    #[server(default)] task: String,
    #[server(flatten)] fields: BTreeMap<String, String>,
) -> Result<Submitted, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let kind = chosen_type(&state, &task)?;
    let input = kind
        .from_form(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(AppError::InvalidInput)?;
    crate::ssr::runner::submit(
        &state,
        &request::session_id().await?,
        &kind,
        input,
        Default::default(),
    )
    .await
}

/// The type called `task`, or the registry's first for an empty name.
#[cfg(feature = "ssr")]
fn chosen_type(
    state: &crate::ssr::AppState,
    task: &str,
) -> Result<std::sync::Arc<cluster::TaskType>, AppError> {
    if task.is_empty() {
        state
            .cluster
            .registry()
            .and_then(|r| r.first().cloned())
            .ok_or_else(|| AppError::Unavailable("this server runs no task type".into()))
    } else {
        crate::ssr::runner::task_type(state, task)
    }
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

/// The caller's queue and results, the task types and the form of `task` (the first type's
/// when none is given) offering what the session submits next, as the page first shows them.
/// Creates nothing.
#[server(endpoint = "task-page")]
pub async fn load_task_page(task: Option<String>) -> Result<TaskPageView, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let (kind, unknown) = match chosen_type(&state, task.as_deref().unwrap_or_default()) {
        Ok(kind) => (kind, None),
        // A stale or mistyped link: the default page, saying why.
        Err(error) => (chosen_type(&state, "")?, Some(error)),
    };
    let session = state.sessions.get(&request::session_id().await?);
    let mut view = session.as_ref().map(|s| s.view()).unwrap_or_default();
    let next = session.and_then(|s| s.next_input(kind.name()));
    view.form = kind.form(next.as_ref());
    view.types = state
        .cluster
        .registry()
        .map(|r| r.types().iter().map(|t| t.info()).collect())
        .unwrap_or_default();
    view.error = request::form_error()
        .await
        .or(unknown)
        .map(|error| match error {
            AppError::InvalidInput(error) => error,
            other => FieldError::whole(other.to_string()),
        });
    Ok(view)
}

/// One of the caller's tasks, for its detail page.
#[server(endpoint = "task-detail")]
pub async fn load_task_detail(id: u64) -> Result<TaskDetail, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let record = own_task(&state, id).await?;
    let kind = state
        .cluster
        .registry()
        .and_then(|r| r.get(&record.task_type));
    let pretty = |value: &serde_json::Value| {
        let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
        if text.len() > model::page::DETAIL_OUTPUT_MAX {
            let mut cut = model::page::DETAIL_OUTPUT_MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("\n… (cut: the whole output is larger)");
        }
        text
    };
    Ok(TaskDetail {
        id,
        title: kind.map_or_else(|| record.task_type.clone(), |k| k.title().to_owned()),
        call: format!("{}({})", record.task_type, record.args),
        task: record.task_type,
        input: pretty(&record.input),
        output: record.output.as_ref().map(pretty),
        output_media: record.output_media,
        outcome: record.outcome,
        line: record.line,
        submitted_at_ms: record.submitted_at_ms,
        finished_at_ms: record.finished_at_ms,
    })
}

/// Queues the same input as one of the caller's earlier tasks; a form posted without
/// JavaScript lands on the task page of its type, where the new task shows.
#[server(endpoint = "run-again")]
pub async fn run_again(id: u64) -> Result<Submitted, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let record = own_task(&state, id).await?;
    let kind = crate::ssr::runner::task_type(&state, &record.task_type)?;
    let session = request::session_id().await?;
    let links = crate::ssr::runner::Links {
        retry_of: Some(id),
        ..Default::default()
    };
    let submitted =
        crate::ssr::runner::submit(&state, &session, &kind, record.input, links).await?;
    leptos_axum::redirect(&format!("/?task={}", kind.name()));
    Ok(submitted)
}

/// The caller's task `id`, from the record.
#[cfg(feature = "ssr")]
async fn own_task(
    state: &crate::ssr::AppState,
    id: u64,
) -> Result<crate::ssr::store::TaskRecord, AppError> {
    let session = request::session_id().await?;
    crate::ssr::api_v1::owned_record(state, &session, id).await
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
    pub async fn form_error() -> Option<AppError> {
        let Query(query) = leptos_axum::extract::<Query<HashMap<String, String>>>()
            .await
            .ok()?;
        let bytes = base64::engine::general_purpose::URL_SAFE
            .decode(query.get("__err")?)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
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
