//! The dashboard's server side: the state its routes share, the frame sampler and its stream
//! ([`feed`]), the profiler behind the profile views, the ops endpoints ([`ops`]), and the
//! listener's route table ([`routes`]).

pub mod feed;
mod frame;
pub mod ops;
pub mod profiler;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};

pub use feed::{BatchBars, DashboardFeed};
pub use ops::{Metrics, OpsState, count_requests};

use crate::{BUNDLE, Dashboard};

/// What the dashboard's routes share. Built by the binary, once per process.
#[derive(Clone)]
pub struct DashboardState {
    /// The site's options, with the dashboard's bundle and site root.
    pub leptos_options: LeptosOptions,
    /// The frames every open view follows, sampled once a second.
    pub feed: Arc<DashboardFeed>,
    /// What the ops endpoints and `/workers` read, the cluster the dashboard shows among
    /// them (the app's own, or a NATS cluster's observer).
    pub ops: OpsState,
}

impl DashboardState {
    /// `options` are the site's: the dashboard keeps them but names its own bundle.
    pub fn new(
        mut options: LeptosOptions,
        cluster: cluster::Client,
        feed: Arc<DashboardFeed>,
        metrics: Metrics,
        app: Option<AppFigures>,
    ) -> Self {
        options.output_name = BUNDLE.into();
        options.site_root = crate::site_root(&options.site_root).into();
        Self {
            leptos_options: options,
            ops: OpsState::new(cluster, metrics, app),
            feed,
        }
    }
}

impl FromRef<DashboardState> for OpsState {
    fn from_ref(state: &DashboardState) -> Self {
        state.ops.clone()
    }
}

impl FromRef<DashboardState> for LeptosOptions {
    fn from_ref(state: &DashboardState) -> Self {
        state.leptos_options.clone()
    }
}

/// The app's own figures, for `/metrics` and `/json/counts.json`: sessions held, live page
/// streams open, and its task database. The dashboard knows nothing of sessions; the binary
/// says how to count them.
#[derive(Clone)]
pub struct AppFigures {
    count: Arc<dyn Fn() -> AppCounts + Send + Sync>,
    /// Whether the app's record can be reached, for `/health`.
    record: Option<RecordProbe>,
}

/// Asks whether the app's record (its database) can be reached now: why not, when not.
pub type RecordProbe =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What [`AppFigures`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AppCounts {
    pub sessions: usize,
    pub streams: usize,
    /// Bytes of the task database in use.
    pub db_bytes: u64,
    /// Task records, unfinished and ended.
    pub db_tasks: u64,
    /// Owners with ended tasks on record.
    pub db_owners: u64,
    /// Ended tasks pruned since start (retention by age or per owner).
    pub db_pruned: u64,
}

impl AppFigures {
    pub fn new(count: impl Fn() -> AppCounts + Send + Sync + 'static) -> Self {
        Self {
            count: Arc::new(count),
            record: None,
        }
    }

    /// These figures, and `/health` failing while `probe` says the record is out of reach.
    pub fn with_record(mut self, probe: RecordProbe) -> Self {
        self.record = Some(probe);
        self
    }

    pub fn get(&self) -> AppCounts {
        (self.count)()
    }

    /// Why the app's record cannot be reached now, if it cannot.
    pub async fn record_unreachable(&self) -> Option<String> {
        match &self.record {
            Some(probe) => probe().await.err(),
            None => None,
        }
    }
}

/// The dashboard listener's routes: its pages, their frames, the site's files and the ops
/// endpoints. The app's server functions, which Leptos registers on every router it builds,
/// are refused there; any other path is the router's 404.
/// `shell` is the site's HTML document around [`Dashboard`], with the dashboard's bundle (and
/// the listener's content security policy: the binary's to choose).
pub fn routes<IV: IntoView + 'static>(
    state: &DashboardState,
    shell: impl Fn(LeptosOptions) -> IV + Clone + Send + Sync + 'static,
) -> Router {
    Router::new()
        .leptos_routes(state, generate_route_list(Dashboard), {
            let options = state.leptos_options.clone();
            let shell = shell.clone();
            move || shell(options.clone())
        })
        .route("/dashboard/stream", get(feed::stream))
        .route("/individual-plots.json", get(feed::plots))
        .merge(ops::routes())
        .route("/workers", get(ops::workers))
        .fallback(leptos_axum::file_and_error_handler::<DashboardState, _>(
            shell,
        ))
        .layer(from_fn_with_state(
            Arc::new(
                leptos::server_fn::axum::server_fn_paths()
                    .map(|(path, _)| path)
                    .collect(),
            ),
            feed::dashboard_only,
        ))
        .with_state(state.clone())
}
