//! The app's server functions, in one place: the pages and components that call them import
//! them from here. Each checks its input and answers with an [`AppError`] a user can act on.

use std::collections::BTreeMap;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::AppError;
use model::page::{
    BatchQuery, BatchView, ClusterInfo, HistoryPage, HistoryQuery, Submitted, TaskDetail,
    TaskPageView,
};
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
    let kind = crate::ssr::runner::chosen_type(&state, &task)?;
    let input = kind
        .from_form(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(AppError::InvalidInput)?;
    crate::ssr::runner::submit(
        &state,
        &crate::ssr::request::session_id().await?,
        &kind,
        input,
        Default::default(),
    )
    .await
}

/// Cancels one of the caller's queued or running tasks.
#[server(endpoint = "cancel")]
pub async fn cancel_task(id: u64) -> Result<(), AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let not_found = || AppError::NotFound("that task is not in your queue any more".into());
    let session = state
        .sessions
        .get(&crate::ssr::request::session_id().await?)
        .ok_or_else(not_found)?;
    let cluster_id = session.cluster_id(id).ok_or_else(not_found)?;
    state
        .cluster
        .cancel(cluster::TaskId(cluster_id))
        .await
        .map_err(|e| AppError::NotFound(e.to_string()))
}

/// The caller's queue and results, the task types and the form of `task` (the first type's
/// when none is given) offering what the session submits next, as the page first shows them;
/// the sweep form filled in with batch `sweep`'s specification, or as sent to have its members
/// counted (`count`: the query's every parameter). Creates nothing.
#[server(endpoint = "task-page")]
pub async fn load_task_page(
    task: Option<String>,
    sweep: Option<String>,
    #[server(default)] count: BTreeMap<String, String>,
) -> Result<TaskPageView, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let (kind, unknown) =
        match crate::ssr::runner::chosen_type(&state, task.as_deref().unwrap_or_default()) {
            Ok(kind) => (kind, None),
            // A stale or mistyped link: the default page, saying why.
            Err(error) => (crate::ssr::runner::chosen_type(&state, "")?, Some(error)),
        };
    let id = crate::ssr::request::session_id().await?;
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
    let sweep = match sweep.filter(|s| !s.is_empty()) {
        Some(raw) => match crate::ssr::batches::page::sweep_form(&state, &id, &kind, &raw).await {
            Ok(form) => {
                view.sweep = Some(form);
                None
            }
            Err(error) => Some(error),
        },
        None => None,
    };
    if !count.is_empty() {
        view.sweep = Some(crate::ssr::batches::page::counted(&state, &kind, &count));
    }
    view.error = crate::ssr::request::form_error()
        .await
        .or(unknown)
        .or(sweep)
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
    let record = crate::ssr::request::owned_task(&state, id).await?;
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
    let host = crate::ssr::request::host().await?;
    let (command, curl) =
        crate::ssr::commands::as_commands(&host, &record.task_type, &record.input);
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

/// A page of the caller's tasks, newest first, filtered as `query` says.
#[server(endpoint = "history")]
pub async fn load_history(query: HistoryQuery) -> Result<HistoryPage, AppError> {
    use model::page::HistoryRow;

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
    let filter = crate::ssr::history::filter(&query)?;
    let folded = filter.fold_batches;
    let owner = crate::ssr::request::session_id().await?;
    let (records, more) = state
        .sessions
        .store()
        .tasks(&owner.0, filter)
        .await
        .map_err(AppError::from)?;
    let older = more
        .then(|| records.last())
        .flatten()
        .map(|last| crate::ssr::history::history_href(&query, last.id));
    let newest = state
        .sessions
        .store()
        .newest_task(&owner.0)
        .await
        .map_err(AppError::from)?
        .unwrap_or(0);
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        // A batch's first member stands for its batch when the history folds them.
        let batch = match record.batch.filter(|_| folded) {
            Some(id) => (state.sessions.store().batch(&owner.0, id).await?)
                .map(|batch| crate::ssr::batches::page::line(&state, &owner, &batch)),
            None => None,
        };
        rows.push(HistoryRow {
            id: record.id,
            call: format!("{}({})", record.task_type, record.args),
            outcome: record.outcome,
            summary: record.line,
            submitted_at_ms: record.submitted_at_ms,
            batch,
        });
    }
    Ok(HistoryPage {
        query,
        types,
        rows,
        older,
        newest,
    })
}

/// One of the caller's batches, for its page: counts, a page of its members sorted and
/// filtered as `query` says, and a plot.
#[server(endpoint = "batch")]
pub async fn load_batch(id: u64, query: BatchQuery) -> Result<BatchView, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let owner = crate::ssr::request::session_id().await?;
    crate::ssr::batches::page::view(&state, &owner, id, query).await
}

/// Submits a batch from the task page's batch form: each field a value, a range (`20..40`) or
/// a list (`1,5,10`); the varied ones combine as `combine` says (`grid` or `zip`); with
/// `reuse` ticked, members computed before take those results. A form
/// posted without JavaScript lands on the batch's page.
#[server(endpoint = "submit-batch")]
pub async fn submit_batch(
    #[server(default)] task: String,
    #[server(default)] combine: String,
    #[server(default)] reuse: String,
    #[server(flatten)] fields: BTreeMap<String, String>,
) -> Result<u64, AppError> {
    use model::batch::Combine;

    let state = crate::ssr::AppState::from_context()?;
    let kind = crate::ssr::runner::chosen_type(&state, &task)?;
    let combine = match combine.as_str() {
        "" | "grid" => Combine::Grid,
        "zip" => Combine::Zip,
        other => {
            return Err(AppError::invalid(format!(
                "combine is grid or zip (got {other:?})"
            )));
        }
    };
    let posted: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let cap = state.batches.config().max_members;
    let spec = crate::ssr::batches::BatchSpec::from_form(&kind, &posted, combine, cap)?;
    let owner = crate::ssr::request::session_id().await?;
    let run = state
        .batches
        .submit(
            &state,
            &owner,
            &kind,
            spec,
            crate::ssr::batches::BatchLinks {
                reuse: matches!(reuse.as_str(), "on" | "true"),
                ..Default::default()
            },
        )
        .await?;
    leptos_axum::redirect(&format!("/batches/{}", run.id()));
    Ok(run.id())
}

/// The caller's latest batches, for the task page's list.
#[server(endpoint = "recent-batches")]
pub async fn load_recent_batches() -> Result<Vec<model::page::BatchLine>, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let owner = crate::ssr::request::session_id().await?;
    crate::ssr::batches::page::recent(&state, &owner).await
}

/// Cancels one of the caller's batches; a form posted without JavaScript lands back on the
/// batch's page.
#[server(endpoint = "cancel-batch")]
pub async fn cancel_batch(id: u64) -> Result<(), AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let owner = crate::ssr::request::session_id().await?;
    let record = crate::ssr::api::owned_batch(&state, &owner, id).await?;
    if let Some(run) = state.batches.get(&owner, record.id) {
        run.cancel().await?;
    }
    leptos_axum::redirect(&format!("/batches/{id}"));
    Ok(())
}

/// Queues the same input as one of the caller's earlier tasks; a form posted without
/// JavaScript lands on the task page of its type, where the new task shows.
#[server(endpoint = "run-again")]
pub async fn run_again(id: u64) -> Result<Submitted, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let record = crate::ssr::request::owned_task(&state, id).await?;
    let kind = crate::ssr::runner::task_type(&state, &record.task_type)?;
    let session = crate::ssr::request::session_id().await?;
    let links = crate::ssr::runner::Links {
        retry_of: Some(id),
        ..Default::default()
    };
    let submitted =
        crate::ssr::runner::submit(&state, &session, &kind, record.input, links).await?;
    leptos_axum::redirect(&format!("/?task={}", kind.name()));
    Ok(submitted)
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
    let fetched = crate::ssr::viewer::fetch_views(&url.base()).await;
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
        database: crate::ssr::viewer::database_line(state.sessions.store()),
    })
}
