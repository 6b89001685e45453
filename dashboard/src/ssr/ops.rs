//! Dask's operational endpoints: `/health`, `/metrics` (Prometheus text format),
//! `/json/counts.json`, `/json/identity.json` ([`routes`]), and the `/workers` page. Every
//! process serves them: the dashboard listener of an app server with embedded workers and of
//! `offload cluster`, the app listener of `offload serve --cluster`, and `offload worker`'s
//! `--metrics-addr`.

use std::time::Duration;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use cluster::WorkerProcess;
use leptos::prelude::*;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use model::TaskState;
use serde::Serialize;

use crate::ssr::AppFigures;

/// What the ops endpoints read. Built by the binary, once per process.
#[derive(Clone)]
pub struct OpsState {
    /// The cluster as this process sees it: its scheduler, a NATS cluster's observer, or a
    /// NATS worker process.
    pub cluster: cluster::Client,
    /// This process's Prometheus recorder, rendered by `/metrics`.
    pub metrics: Metrics,
    /// The app's figures, when this process serves the app.
    pub app: Option<AppFigures>,
    /// When this process started (ms since the Unix epoch), for `/json/identity.json`.
    pub started_at_ms: u64,
}

impl OpsState {
    pub fn new(cluster: cluster::Client, metrics: Metrics, app: Option<AppFigures>) -> Self {
        Self {
            cluster,
            metrics,
            app,
            started_at_ms: cluster::now_ms(),
        }
    }
}

/// `/metrics`, `/health`, `/json/counts.json` and `/json/identity.json`, for any router whose
/// state holds an [`OpsState`].
pub fn routes<S>() -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
    OpsState: axum::extract::FromRef<S>,
{
    use axum::routing::get;
    health_route()
        .route("/metrics", get(metrics))
        .route("/json/counts.json", get(counts))
        .route("/json/identity.json", get(identity))
}

/// `/health` alone: an app server with embedded workers answers it on the app's listener too,
/// so a balancer checks every server of a database on the port it sends requests to (a standby
/// answers it there before it has a dashboard).
pub fn health_route<S>() -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
    OpsState: axum::extract::FromRef<S>,
{
    axum::Router::new().route("/health", axum::routing::get(health))
}

/// How often the recorder folds recorded histogram samples into its buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// This process's Prometheus recorder: what `/metrics` renders.
#[derive(Clone)]
pub struct Metrics(PrometheusHandle);

impl Metrics {
    /// Installs the process-wide recorder (once per process).
    pub fn install() -> Result<Self, metrics_exporter_prometheus::BuildError> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("offload_task_duration_seconds".into()),
                &[0.000_1, 0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 300.0],
            )?
            .set_buckets_for_metric(
                Matcher::Full("offload_nats_stage_seconds".into()),
                &[
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.01, 0.1, 1.0, 10.0,
                ],
            )?
            // Per-process gauges of workers that left would otherwise stay for ever.
            .idle_timeout(
                metrics_util::MetricKindMask::GAUGE,
                Some(Duration::from_secs(60)),
            )
            .install_recorder()?;
        describe();
        // A histogram's samples pile up until a scrape or an upkeep folds them in: with
        // nobody scraping, a busy server grew by megabytes a minute. Upkeep runs here
        // whether anyone scrapes or not.
        let upkeep = handle.clone();
        let started = std::thread::Builder::new()
            .name("offload-metrics".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(error) = started {
            tracing::warn!(%error, "could not start the metrics' upkeep: histograms grow until scraped");
        }
        Ok(Self(handle))
    }
}

/// The HELP line of every metric (Prometheus' linter wants one).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "offload_tasks_total",
        "Tasks ended, by task type and outcome."
    );
    describe_gauge!(
        "offload_tasks",
        "Tasks queued or running now, by task type."
    );
    describe_gauge!("offload_queue_length", "Tasks waiting for a worker.");
    describe_gauge!(
        "offload_queue_capacity",
        "Tasks that may wait before submissions are refused."
    );
    describe_histogram!(
        "offload_task_duration_seconds",
        Unit::Seconds,
        "Time the workers of this process spent on each task."
    );
    describe_gauge!("offload_worker_threads", "Worker threads of the cluster.");
    describe_gauge!(
        "offload_slots",
        "Tasks that may run at once: the worker threads, or the tasks in flight to NATS workers."
    );
    describe_counter!(
        "offload_tasks_lost_total",
        "Tasks no worker answered for (gone, stuck, or past the deadline), by task type."
    );
    describe_gauge!("offload_worker_processes", "Processes the workers live in.");
    describe_gauge!(
        "offload_worker_cpu_percent",
        "CPU of a worker process, 100 per fully used core."
    );
    describe_gauge!(
        "offload_worker_memory_bytes",
        Unit::Bytes,
        "Resident memory of a worker process."
    );
    describe_gauge!(
        "offload_sessions",
        "Browser sessions held by this app server."
    );
    describe_gauge!(
        "offload_open_streams",
        "Live page streams open on this app server."
    );
    describe_gauge!(
        "offload_db_bytes",
        Unit::Bytes,
        "Bytes of the task database in use."
    );
    describe_gauge!(
        "offload_db_tasks",
        "Task records in the database, unfinished and ended."
    );
    describe_gauge!(
        "offload_db_owners",
        "Owners (sessions and tokens) with ended tasks on record."
    );
    describe_counter!(
        "offload_db_pruned_total",
        "Ended tasks pruned by retention (age or the per-owner cap)."
    );
    describe_counter!(
        "offload_http_requests_total",
        "HTTP requests answered, by route and status."
    );
    describe_histogram!(
        "offload_nats_stage_seconds",
        Unit::Seconds,
        "Stages of a task's round trip on NATS, as the app server times them: to JetStream's ack of its work message, then the worker and back."
    );
    describe_counter!(
        "offload_nats_work_messages_total",
        "Work messages this app server stored in JetStream."
    );
    describe_counter!(
        "offload_nats_work_tasks_total",
        "Tasks in those work messages."
    );
    describe_counter!(
        "offload_nats_result_messages_total",
        "Results messages this app server took, by path: a worker's core request, or the results stream (the fallback)."
    );
    describe_counter!(
        "offload_nats_results_total",
        "Results in those messages, duplicates included."
    );
    describe_counter!(
        "offload_nats_progress_messages_total",
        "Progress messages this app server received."
    );
    describe_counter!(
        "offload_worker_result_requests_total",
        "Results messages this worker sent to their app server as core requests."
    );
    describe_counter!(
        "offload_worker_result_fallbacks_total",
        "Results messages this worker stored in the results stream because their app server did not answer in time."
    );
    describe_counter!(
        "offload_worker_progress_messages_total",
        "Progress messages this worker sent."
    );
}

/// `GET /health`: 200 while this process can do its part, 503 with the reason when not: its
/// cluster is not ready, or (an app server) its record is out of reach, so that a load
/// balancer sends its requests elsewhere.
pub async fn health(State(state): State<OpsState>) -> Response {
    if let Some(reason) = state.cluster.unready() {
        return (StatusCode::SERVICE_UNAVAILABLE, reason).into_response();
    }
    if let Some(app) = &state.app
        && let Some(reason) = app.record_unreachable().await
    {
        let reason = format!("the record is out of reach: {reason}");
        return (StatusCode::SERVICE_UNAVAILABLE, reason).into_response();
    }
    (StatusCode::OK, "ok").into_response()
}

/// `GET /metrics`: the cluster's figures of the moment, then the recorder's counters and
/// histograms (HTTP requests, task durations).
pub async fn metrics(State(state): State<OpsState>) -> Response {
    let stats = state.cluster.stats();
    for group in &stats.groups {
        let task = group.name.to_string();
        for (outcome, total) in [
            (TaskState::Finished, group.finished),
            (TaskState::Failed, group.failed),
            (TaskState::Cancelled, group.cancelled),
        ] {
            counter!("offload_tasks_total", "task_type" => task.clone(), "outcome" => outcome.name())
                .absolute(total);
        }
        counter!("offload_tasks_lost_total", "task_type" => task.clone()).absolute(group.lost);
        for (now, count) in [
            (TaskState::Queued, group.queued),
            (TaskState::Running, group.running),
        ] {
            gauge!("offload_tasks", "task_type" => task.clone(), "state" => now.name())
                .set(count as f64);
        }
    }
    gauge!("offload_queue_length").set(stats.totals.queued as f64);
    gauge!("offload_queue_capacity").set(stats.queue_capacity as f64);
    gauge!("offload_worker_threads").set(state.cluster.workers() as f64);
    gauge!("offload_slots").set(state.cluster.slots() as f64);
    gauge!("offload_worker_processes").set(stats.processes.len() as f64);
    for process in &stats.processes {
        let name = process.name.clone();
        gauge!("offload_worker_cpu_percent", "process" => name.clone())
            .set(f64::from(process.cpu_percent));
        gauge!("offload_worker_memory_bytes", "process" => name).set(process.memory_bytes as f64);
    }
    if let Some(app) = &state.app {
        let app = app.get();
        gauge!("offload_sessions").set(app.sessions as f64);
        gauge!("offload_open_streams").set(app.streams as f64);
        gauge!("offload_db_bytes").set(app.db_bytes as f64);
        gauge!("offload_db_tasks").set(app.db_tasks as f64);
        gauge!("offload_db_owners").set(app.db_owners as f64);
        counter!("offload_db_pruned_total").absolute(app.db_pruned);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.0.render(),
    )
        .into_response()
}

/// Counts every request by route and status, for `offload_http_requests_total`. The route is
/// the router's own pattern, so the label set is the route table's and a scanner cannot grow
/// it.
pub async fn count_requests(request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(matched) => matched.as_str().to_owned(),
        None if request.uri().path().starts_with("/pkg/") => "/pkg/{file}".to_owned(),
        None => "other".to_owned(),
    };
    let response = next.run(request).await;
    counter!(
        "offload_http_requests_total",
        "route" => route,
        "status" => response.status().as_str().to_owned()
    )
    .increment(1);
    response
}

/// `GET /json/counts.json`.
#[derive(Debug, Serialize)]
pub struct Counts {
    pub worker_processes: usize,
    pub worker_threads: usize,
    pub submitted: u64,
    pub queued: u64,
    pub processing: u64,
    pub finished: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Of the failed, those no worker answered for.
    pub lost: u64,
    /// Only where this process serves the app.
    pub sessions: Option<usize>,
    pub streams: Option<usize>,
}

pub async fn counts(State(state): State<OpsState>) -> Json<Counts> {
    let stats = state.cluster.stats();
    let app = state.app.as_ref().map(AppFigures::get);
    Json(Counts {
        worker_processes: stats.processes.len(),
        worker_threads: state.cluster.workers(),
        submitted: stats.totals.submitted,
        queued: stats.totals.queued,
        processing: stats.totals.running,
        finished: stats.totals.finished,
        failed: stats.totals.failed,
        cancelled: stats.totals.cancelled,
        lost: stats.totals.lost,
        sessions: app.map(|app| app.sessions),
        streams: app.map(|app| app.streams),
    })
}

/// `GET /json/identity.json`.
#[derive(Debug, Serialize)]
pub struct Identity {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub version: &'static str,
    pub backend: cluster::Backend,
    /// When this process started (ms since the Unix epoch).
    pub started_ms: u64,
    pub workers: Vec<WorkerProcess>,
}

pub async fn identity(State(state): State<OpsState>) -> Json<Identity> {
    Json(Identity {
        kind: "Offload",
        version: env!("CARGO_PKG_VERSION"),
        backend: state.cluster.backend(),
        started_ms: state.started_at_ms,
        workers: state.cluster.stats().processes,
    })
}

/// `GET /workers`: one row per worker process, rendered on the server (no script).
pub async fn workers(State(state): State<OpsState>) -> Html<String> {
    let stats = state.cluster.stats();
    let now = stats.at_ms;
    let count = format!(
        "{} worker processes, {} threads ({})",
        stats.processes.len(),
        state.cluster.workers(),
        state.cluster.backend().name()
    );
    let rows = stats
        .processes
        .into_iter()
        .map(|w| {
            let running = if w.running.is_empty() {
                "–".to_owned()
            } else {
                w.running.join(", ")
            };
            let age = now.saturating_sub(w.heartbeat_ms) as f64 / 1e3;
            view! {
                <tr>
                    <td>{w.name}</td>
                    <td>{w.host}</td>
                    <td>{w.pid}</td>
                    <td>{w.threads}</td>
                    <td>{format!("{:.0}", w.cpu_percent)}</td>
                    <td>{format!("{:.1} MB", w.memory_bytes as f64 / 1e6)}</td>
                    <td>{running}</td>
                    <td>{w.tasks_done}</td>
                    <td>{w.runs.join(", ")}</td>
                    <td>{format!("{age:.1} s ago")}</td>
                </tr>
            }
        })
        .collect_view();
    let page = view! {
        <main class="workers-page">
            <h1>"Workers"</h1>
            <p role="status">{count}</p>
            <table class="view-table" aria-label="Worker processes">
                <thead>
                    <tr>
                        <th>"worker"</th><th>"host"</th><th>"pid"</th><th>"threads"</th>
                        <th>"CPU %"</th><th>"memory"</th><th>"running"</th><th>"done"</th>
                        <th>"task types (schema)"</th><th>"last heartbeat"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </main>
    };
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Workers · Offload</title><link rel=\"stylesheet\" href=\"/pkg/offload.css\"></head><body>{}</body></html>",
        page.to_html()
    ))
}
