//! The app's server functions, in one place: the pages and components that call them import
//! them from here. Each checks its input and answers with an [`AppError`] a user can act on.

use std::collections::BTreeMap;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::AppError;
use model::page::{ClusterInfo, HistoryPage, HistoryQuery, Submitted, TaskDetail, TaskPageView};
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
    let id = request::session_id().await?;
    let session = state.sessions.get(&id);
    let mut view = session.as_ref().map(|s| s.view()).unwrap_or_default();
    view.quota = state.quota(&id);
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
    let host = request::host().await?;
    let (command, curl) = as_commands(&host, &record.task_type, &record.input);
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
        started_at_ms: record.ran.as_ref().map(|ran| ran.started_at_ms),
        finished_at_ms: record.finished_at_ms,
        attempts: record.ran.as_ref().map(|ran| ran.attempt),
        worker: record.ran.map(|ran| ran.worker),
        command,
        curl,
    })
}

/// Tasks a history page lists.
#[cfg(feature = "ssr")]
const HISTORY_PAGE: usize = 50;

/// Longest text the history searches for.
#[cfg(feature = "ssr")]
const SEARCH_MAX: usize = 200;

/// The longest type name the history's filter takes (no task type's name comes near it).
#[cfg(feature = "ssr")]
const TYPE_NAME_MAX: usize = 64;

/// A page of the caller's tasks, newest first, filtered as `query` says.
#[server(endpoint = "history")]
pub async fn load_history(query: HistoryQuery) -> Result<HistoryPage, AppError> {
    use crate::ssr::store::TaskFilter;
    use model::page::{HistoryRow, OUTCOME_FILTERS, Outcome};

    let state = crate::ssr::AppState::from_context()?;
    let registry = state
        .cluster
        .registry()
        .ok_or_else(|| AppError::Unavailable("this server does not run tasks".into()))?;
    let types: Vec<(String, String)> = registry
        .types()
        .iter()
        .map(|t| (t.name().to_owned(), t.title().to_owned()))
        .collect();
    // A type this build no longer runs stays findable (as through the API): any name is a
    // filter, and one no task ever had finds nothing.
    if let Some(kind) = &query.kind
        && kind.len() > TYPE_NAME_MAX
    {
        return Err(AppError::invalid(format!(
            "a task type's name is at most {TYPE_NAME_MAX} characters"
        )));
    }
    let ended = match query.outcome.as_deref() {
        None => None,
        Some("unfinished") => Some(None),
        Some(name) => Some(Some(Outcome::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = OUTCOME_FILTERS.iter().map(|(v, _)| *v).collect();
            AppError::invalid(format!(
                "there is no outcome {name:?}: choose one of {}",
                names.join(", ")
            ))
        })?)),
    };
    if let Some(text) = &query.text
        && text.chars().count() > SEARCH_MAX
    {
        return Err(AppError::invalid(format!(
            "search for at most {SEARCH_MAX} characters"
        )));
    }
    let before = match query.before.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            AppError::invalid(format!(
                "{raw:?} is not a page of your history: follow the \"Older tasks\" link"
            ))
        })?),
    };
    let owner = request::session_id().await?;
    let filter = TaskFilter {
        kind: query.kind.clone(),
        ended,
        before,
        search: query.text.clone(),
        limit: HISTORY_PAGE,
    };
    let (records, more) = state
        .sessions
        .store()
        .tasks(&owner.0, filter)
        .await
        .map_err(AppError::from)?;
    let older = more
        .then(|| records.last())
        .flatten()
        .map(|last| history_href(&query, last.id));
    let newest = state
        .sessions
        .store()
        .newest_task(&owner.0)
        .await
        .map_err(AppError::from)?
        .unwrap_or(0);
    let rows = records
        .into_iter()
        .map(|record| HistoryRow {
            id: record.id,
            call: format!("{}({})", record.task_type, record.args),
            outcome: record.outcome,
            summary: record.line,
            submitted_at_ms: record.submitted_at_ms,
        })
        .collect();
    Ok(HistoryPage {
        query,
        types,
        rows,
        older,
        newest,
    })
}

/// `/history?…&before=ID`: the page after the one that ended with task `before`.
#[cfg(feature = "ssr")]
fn history_href(query: &HistoryQuery, before: u64) -> String {
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("type", &query.kind),
        ("outcome", &query.outcome),
        ("q", &query.text),
    ] {
        if let Some(value) = value {
            encoded.append_pair(name, value);
        }
    }
    encoded.append_pair("before", &before.to_string());
    format!("/history?{}", encoded.finish())
}

/// Task `record` as commands for a server reached at `host`: `offload submit` with its fields
/// as FIELD=VALUE, and the API call with `curl`. Both read the token from `OFFLOAD_TOKEN`.
#[cfg(feature = "ssr")]
fn as_commands(host: &str, task_type: &str, input: &serde_json::Value) -> (String, String) {
    let mut command = format!("offload submit --server http://{host} --wait {task_type}");
    if let Some(fields) = input.as_object() {
        for (name, value) in fields {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            command.push(' ');
            command.push_str(&shell_word(&format!("{name}={text}")));
        }
    }
    let body = serde_json::json!({"type": task_type, "input": input}).to_string();
    let curl = format!(
        "curl -H \"Authorization: Bearer $OFFLOAD_TOKEN\" -H 'Content-Type: application/json' -d {} http://{host}/api/v1/tasks",
        shell_word(&body)
    );
    (command, curl)
}

/// `word` as one POSIX shell word: as it is when it is plainly safe, else in single quotes.
#[cfg(feature = "ssr")]
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "=-_.,:/+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
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
    crate::ssr::api::owned_record(state, &session, id).await
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

    /// The Host the request came to (checked against the allowed hosts before it got here).
    pub async fn host() -> Result<String, AppError> {
        let headers = leptos_axum::extract::<axum::http::HeaderMap>()
            .await
            .map_err(|e| AppError::internal(&e))?;
        Ok(headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1:3000")
            .to_owned())
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
    /// This app server's task database: its size, what it holds and what it keeps.
    pub database: String,
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
        database: database_line(state.sessions.store()),
    })
}

/// `1.2 MB in use · 12,345 tasks of 17 owners · ended tasks kept 30 days, at most 100,000 per
/// owner · 12 pruned since start`.
#[cfg(feature = "ssr")]
fn database_line(store: &crate::ssr::store::Store) -> String {
    let (bytes, tasks, owners, pruned) = store.figures().read();
    let retention = store.retention();
    let age = match retention.max_age {
        None => "kept for ever".to_owned(),
        Some(age) => {
            let days = age.as_secs_f64() / 86_400.0;
            format!("kept {}", model::count(days.round() as u64, "day", "days"))
        }
    };
    format!(
        "{:.1} MB in use · {} of {} · ended tasks {age}, at most {} per owner · {} pruned since start",
        bytes as f64 / 1e6,
        model::count(tasks, "task", "tasks"),
        model::count(owners, "owner", "owners"),
        retention.per_owner,
        pruned,
    )
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

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use serde_json::json;

    #[test]
    fn a_task_reads_back_as_commands_a_shell_takes_word_for_word() {
        let input = json!({"text": "it's a test", "rounds": 3, "smooth": true});
        let (command, curl) = super::as_commands("127.0.0.1:3000", "hash-chain", &input);
        assert_eq!(
            command,
            "offload submit --server http://127.0.0.1:3000 --wait hash-chain \
             'text=it'\\''s a test' rounds=3 smooth=true"
        );
        assert_eq!(
            curl,
            "curl -H \"Authorization: Bearer $OFFLOAD_TOKEN\" -H 'Content-Type: application/json' \
             -d '{\"type\":\"hash-chain\",\"input\":{\"text\":\"it'\\''s a test\",\"rounds\":3,\"smooth\":true}}' \
             http://127.0.0.1:3000/api/v1/tasks"
        );
        assert_eq!(super::shell_word(""), "''");
        assert_eq!(super::shell_word("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
