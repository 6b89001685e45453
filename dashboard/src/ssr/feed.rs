//! The dashboard's data: a sampler that turns cluster stats and host counters into one
//! [`DashboardFrame`] a second, and the routes of the dashboard listener. It never listens to
//! per-task events: reading a snapshot once a second costs the workers nothing per task.
//!
//! Each frame is encoded once and published on a `watch` channel: a page that is slow simply
//! skips to the newest frame, and the cost does not grow with the number of open views.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

use model::Totals;
use model::View;
use model::frame::Profiles;

use crate::ssr::DashboardState;
use crate::ssr::frame::{HostSample, Sampler};
use crate::ssr::profiler::Profiler;

/// The app's open batches as the progress view shows them (see
/// [`model::frame::DashboardFrame::batches`]): the dashboard knows nothing of batches; the
/// binary says how to read them.
#[derive(Clone)]
pub struct BatchBars(Option<Arc<ReadBars>>);

type ReadBars = dyn Fn() -> Vec<(String, Totals)> + Send + Sync;

impl BatchBars {
    pub fn new(read: impl Fn() -> Vec<(String, Totals)> + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(read)))
    }

    /// No batches known here.
    pub fn none() -> Self {
        Self(None)
    }

    fn read(&self) -> Vec<(String, Totals)> {
        self.0.as_ref().map_or_else(Vec::new, |read| read())
    }
}

pub struct DashboardFeed {
    /// None until the first sample.
    frames: watch::Sender<Option<Arc<str>>>,
    /// None unless the server was started with `--profiler`.
    profiler: Option<Arc<Profiler>>,
}

impl DashboardFeed {
    /// Starts sampling `client` (and `batches`) every `period`; the profile views sample
    /// threads only when `profiling` is allowed.
    pub fn start(
        client: cluster::Client,
        batches: BatchBars,
        period: Duration,
        profiling: bool,
    ) -> Arc<Self> {
        let (frames, _) = watch::channel(None);
        let feed = Arc::new(Self {
            frames,
            profiler: profiling.then(Profiler::start),
        });
        tokio::spawn(sample(
            client,
            batches,
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

    /// Memory now, and the bytes moved since the last call.
    fn sample(&mut self) -> HostSample {
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
        HostSample {
            memory_used: self.system.used_memory(),
            memory_total: self.system.total_memory(),
            net_rx: rx,
            net_tx: tx,
            disk_read: read,
            disk_written: written,
        }
    }
}

/// Takes a frame of `client`'s stats every `period` and publishes it, encoded once.
async fn sample(
    client: cluster::Client,
    batches: BatchBars,
    frames: watch::Sender<Option<Arc<str>>>,
    profiler: Option<Arc<Profiler>>,
    period: Duration,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut host = HostProbe::new();
    let mut sampler = Sampler::default();
    loop {
        ticks.tick().await;
        let profiles = profiler.as_ref().map_or_else(
            || Profiles {
                disabled: true,
                ..Profiles::default()
            },
            |p| p.latest(),
        );
        let mut frame = sampler.frame(&client.stats(), host.sample(), client.backend(), profiles);
        frame.batches = batches.read();
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
    use model::frame::DashboardFrame;

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
        let bar = || {
            let members = model::Totals {
                submitted: 21,
                queued: 19,
                running: 2,
                ..model::Totals::default()
            };
            vec![("batch 7 · square".to_owned(), members)]
        };
        let feed = DashboardFeed::start(
            cluster.client(),
            BatchBars::new(bar),
            Duration::from_millis(10),
            false,
        );
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
        assert_eq!(frame.batches, bar(), "the app's batches, a bar each");
    }
}
