//! The dashboard's data: a sampler that turns cluster stats and host counters into one
//! [`DashboardFrame`] a second, and the routes of the dashboard listener. It never listens to
//! per-task events: reading a snapshot once a second costs the workers nothing per task.
//!
//! Each frame is encoded once and published on a `watch` channel: a page that is slow simply
//! skips to the newest frame, and the cost does not grow with the number of open views.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cluster::WorkerState;
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

use model::View;
use model::frame::{
    DashboardFrame, ExceptionRow, GpuRow, HISTORY, Profiles, Sample, TaskBar, TaskGroup, Transfer,
    WorkerRow,
};
use model::{TaskState, Totals};

use crate::ssr::DashboardState;
use crate::ssr::profiler::Profiler;

/// How far back the task stream looks.
const TASK_STREAM_WINDOW_MS: u64 = 60_000;
const TASK_STREAM_MAX: usize = 500;

pub struct DashboardFeed {
    /// None until the first sample.
    frames: watch::Sender<Option<Arc<str>>>,
    /// None unless the server was started with `--profiler`.
    profiler: Option<Arc<Profiler>>,
}

impl DashboardFeed {
    /// Starts sampling `client` every `period`; the profile views sample threads only when
    /// `profiling` is allowed.
    pub fn start(client: cluster::Client, period: Duration, profiling: bool) -> Arc<Self> {
        let (frames, _) = watch::channel(None);
        let feed = Arc::new(Self {
            frames,
            profiler: profiling.then(Profiler::start),
        });
        tokio::spawn(sample(
            client,
            feed.frames.clone(),
            feed.profiler.clone(),
            period,
        ));
        feed
    }

    /// The newest frame (JSON) now, then each new one.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.frames.subscribe()
    }
}

/// Host and process counters that `cluster::Client::stats` does not give.
struct HostProbe {
    system: sysinfo::System,
    networks: sysinfo::Networks,
    pid: Option<sysinfo::Pid>,
}

impl HostProbe {
    fn new() -> Self {
        Self {
            system: sysinfo::System::new(),
            networks: sysinfo::Networks::new_with_refreshed_list(),
            pid: sysinfo::get_current_pid().ok(),
        }
    }

    /// (memory used, memory total, net rx, net tx, disk read, disk write) since the last call.
    fn sample(&mut self) -> (u64, u64, u64, u64, u64, u64) {
        self.system.refresh_memory();
        self.networks.refresh(true);
        let (rx, tx) = self.networks.values().fold((0, 0), |(rx, tx), n| {
            (rx + n.received(), tx + n.transmitted())
        });
        let (read, written) = self.pid.map_or((0, 0), |pid| {
            self.system.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[pid]),
                false,
                sysinfo::ProcessRefreshKind::nothing().with_disk_usage(),
            );
            self.system.process(pid).map_or((0, 0), |p| {
                let usage = p.disk_usage();
                (usage.read_bytes, usage.written_bytes)
            })
        });
        (
            self.system.used_memory(),
            self.system.total_memory(),
            rx,
            tx,
            read,
            written,
        )
    }
}

async fn sample(
    client: cluster::Client,
    frames: watch::Sender<Option<Arc<str>>>,
    profiler: Option<Arc<Profiler>>,
    period: Duration,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut host = HostProbe::new();
    let mut history: VecDeque<Sample> = VecDeque::with_capacity(HISTORY);
    let mut last_busy: HashMap<usize, f64> = HashMap::new();
    let mut last_at = cluster::now_ms();
    loop {
        ticks.tick().await;
        let stats = client.stats();
        let now = stats.at_ms;
        let dt_ms = (now.saturating_sub(last_at)).max(1) as f64;
        last_at = now;
        let (mem_used, mem_total, rx, tx, read, written) = host.sample();
        let per_sec = |bytes: u64| bytes as f64 * 1000.0 / dt_ms;

        let workers: Vec<WorkerRow> = stats
            .workers
            .iter()
            .map(|w| {
                let running_ms = w
                    .current_started_at_ms
                    .map_or(0.0, |s| now.saturating_sub(s) as f64);
                let busy = w.busy_ms + running_ms;
                let before = last_busy.insert(w.id, busy).unwrap_or(busy);
                WorkerRow {
                    id: w.id,
                    process: w.process.as_deref().map(str::to_owned),
                    state: w.state,
                    current: w
                        .current
                        .zip(w.current_task.as_ref())
                        .map(|(id, name)| format!("{name} #{id}")),
                    tasks_done: w.tasks_done,
                    busy_percent: ((busy - before) / dt_ms * 100.0).clamp(0.0, 100.0),
                    processing: usize::from(w.state == WorkerState::Busy),
                    cpu_percent: f64::from(stats.process.cpu_percent),
                    memory_bytes: stats.process.memory_bytes,
                }
            })
            .collect();

        let mut recent: Vec<TaskBar> = stats
            .recent
            .iter()
            .filter(|t| t.ended_at_ms + TASK_STREAM_WINDOW_MS >= now)
            .filter_map(|t| {
                Some(TaskBar {
                    id: t.id.0,
                    name: t.name.to_string(),
                    worker: t.worker?,
                    state: t.state,
                    start_ms: t.started_at_ms?,
                    end_ms: t.ended_at_ms,
                })
            })
            .collect();
        recent.extend(stats.workers.iter().filter_map(|w| {
            Some(TaskBar {
                id: w.current?.0,
                name: w.current_task.as_deref()?.to_owned(),
                worker: w.id,
                state: TaskState::Running,
                start_ms: w.current_started_at_ms?,
                end_ms: now,
            })
        }));
        let skip = recent.len().saturating_sub(TASK_STREAM_MAX);
        recent.drain(..skip);

        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(Sample {
            at_ms: now,
            process_cpu: f64::from(stats.process.cpu_percent),
            process_memory: stats.process.memory_bytes,
            host_memory_used: mem_used,
            host_memory_total: mem_total,
            net_rx: per_sec(rx),
            net_tx: per_sec(tx),
            disk_read: per_sec(read),
            disk_write: per_sec(written),
            worker_busy: workers.iter().map(|w| w.busy_percent).collect(),
            queued: stats.totals.queued,
            running: stats.totals.running,
        });

        let groups: Vec<TaskGroup> = stats
            .groups
            .iter()
            .map(|g| TaskGroup {
                name: g.name.to_string(),
                counts: Totals {
                    submitted: g.queued + g.running + g.finished + g.failed + g.cancelled,
                    queued: g.queued,
                    running: g.running,
                    finished: g.finished,
                    failed: g.failed,
                    cancelled: g.cancelled,
                    lost: g.lost,
                },
                wait_ms: g.wait_ms,
                compute_ms: g.compute_ms,
                output_bytes: g.output_bytes,
                p50_ms: g.percentile(0.5),
                p99_ms: g.percentile(0.99),
            })
            .collect();
        let frame = DashboardFrame {
            at_ms: now,
            backend: client.backend(),
            cores: stats.process.cores,
            totals: stats.totals,
            queue_capacity: stats.queue_capacity,
            recent,
            exceptions: stats
                .failures
                .iter()
                .map(|t| ExceptionRow {
                    at_ms: t.ended_at_ms,
                    id: t.id.0,
                    name: t.name.to_string(),
                    worker: t.worker,
                    error: t.error.clone().unwrap_or_default(),
                })
                .collect(),
            history: history.iter().cloned().collect(),
            bandwidth: vec![
                Transfer {
                    kind: "task inputs".into(),
                    bytes: stats.groups.iter().map(|g| g.input_bytes).sum(),
                },
                Transfer {
                    kind: "task results".into(),
                    bytes: stats.groups.iter().map(|g| g.output_bytes).sum(),
                },
            ],
            bandwidth_by_worker: stats
                .workers
                .iter()
                .map(|w| (w.id, w.output_bytes))
                .collect(),
            in_process: client.backend() == cluster::Backend::Embedded,
            gpus: (!stats.gpus.is_empty()).then(|| {
                stats
                    .gpus
                    .iter()
                    .map(|g| GpuRow {
                        name: g.name.clone(),
                        utilization: g.utilization_percent,
                        memory_used: g.memory_used_bytes,
                        memory_total: g.memory_total_bytes,
                    })
                    .collect()
            }),
            profiles: profiler.as_ref().map_or_else(
                || Profiles {
                    disabled: true,
                    ..Profiles::default()
                },
                |p| p.latest(),
            ),
            workers,
            groups,
        };
        match serde_json::to_string(&frame) {
            Ok(json) => {
                frames.send_replace(Some(Arc::from(json)));
            }
            Err(error) => tracing::error!(%error, "could not encode a dashboard frame"),
        }
    }
}

/// `?profile=1` on the stream: the page shows a profile view, so sample while it is open.
#[derive(Debug, serde::Deserialize)]
pub struct StreamQuery {
    #[serde(default)]
    profile: bool,
}

/// `GET /dashboard/stream`: the page's one stream of frames.
pub async fn stream(
    State(state): State<DashboardState>,
    axum::extract::Query(query): axum::extract::Query<StreamQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Lives as long as the stream: dropping it when the page goes stops the profiling.
    // Without --profiler, asking for a profile changes nothing.
    let watching = state
        .feed
        .profiler
        .as_ref()
        .filter(|_| query.profile)
        .map(|p| p.watch());
    let frames = WatchStream::new(state.feed.subscribe()).filter_map(move |json| {
        let _watching = &watching;
        async move { json.map(|json| Ok(Event::default().data(&*json))) }
    });
    Sse::new(frames).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `GET /individual-plots.json`, as Dask serves it: `{"Title": "/individual-name", ...}`.
pub async fn plots() -> Json<serde_json::Map<String, serde_json::Value>> {
    Json(plots_json())
}

fn plots_json() -> serde_json::Map<String, serde_json::Value> {
    View::ALL
        .iter()
        .map(|view| (view.title().to_owned(), format!("/{}", view.path()).into()))
        .collect()
}

/// Middleware for the dashboard listener: the app's server functions, which Leptos registers
/// on every router it builds (`server_fns`: all their paths), are not there (404).
pub async fn dashboard_only(
    State(server_fns): State<Arc<HashSet<&'static str>>>,
    request: Request,
    next: Next,
) -> Response {
    if server_fns.contains(request.uri().path()) {
        (StatusCode::NOT_FOUND, "not a dashboard path").into_response()
    } else {
        next.run(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_json_lists_all_27_with_dask_titles() {
        let json = plots_json();
        assert_eq!(json.len(), 27);
        assert_eq!(json["Task Stream"], "/individual-task-stream");
        assert_eq!(json["CPU"], "/individual-cpu");
        assert_eq!(
            json["Workers CPU Timeseries"],
            "/individual-workers-cpu-timeseries"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn frames_flow_to_a_page_that_subscribes_long_after_start() {
        let cluster = cluster::EmbeddedCluster::start(
            cluster::ClusterConfig::default(),
            cluster::Registry::empty(),
        )
        .unwrap();
        let feed = DashboardFeed::start(cluster.client(), Duration::from_millis(10), false);
        // Several sampling periods pass with no page open (the clock is paused: no real wait).
        for _ in 0..5 {
            tokio::time::advance(Duration::from_millis(10)).await;
            tokio::task::yield_now().await;
        }
        let mut frames = feed.subscribe();
        let next = async {
            frames.changed().await.unwrap();
            frames.borrow_and_update().clone()
        };
        let json = tokio::time::timeout(Duration::from_secs(1), next)
            .await
            .expect("a new frame within 100 sampling periods")
            .expect("a frame, not the empty start value");
        let frame: DashboardFrame = serde_json::from_str(&json).unwrap();
        assert_eq!(frame.workers.len(), 4);
    }
}
