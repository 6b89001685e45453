//! `offload`: parses flags, starts the cluster, builds [`AppState`] and serves the app.
//! Wiring only: behaviour lives in the `app` and `cluster` crates.

mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use app::ssr::dashboard::{dashboard_only, plots, stream as dashboard_stream};
use app::ssr::state::DashboardUrl;
use app::ssr::status::{MAX_BODY_BYTES, error_status};
use app::ssr::store::Store;
use app::ssr::stream::StreamLimits;
use app::ssr::{
    AllowedHosts, AppState, DashboardFeed, SessionConfig, Sessions, Shutdown, allowed_host,
    refuse_cross_site, runner, session_cookie, stream,
};
use app::{App, shell};
use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use clap::Parser;
use cluster::{ClusterConfig, EmbeddedCluster};
use leptos::config::get_configuration;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tracing_subscriber::EnvFilter;

use crate::serve::{ConnectionLimits, serve};

/// Offload: a web UI that stays responsive while a worker cluster does the heavy work.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address the app listens on [default: 127.0.0.1:3000].
    #[arg(long, env = "OFFLOAD_ADDR")]
    addr: Option<SocketAddr>,
    /// Worker threads of the embedded cluster.
    #[arg(long, env = "OFFLOAD_WORKERS", default_value_t = 4)]
    workers: usize,
    /// Tasks that may wait in the queue, all sessions together, before submissions are
    /// refused as busy.
    #[arg(long, env = "OFFLOAD_QUEUE_CAPACITY", default_value_t = 10_000)]
    queue_capacity: usize,
    /// Seconds a task may run before it is stopped (0: no limit).
    #[arg(long, env = "OFFLOAD_TASK_TIME_LIMIT", default_value_t = 300.0)]
    task_time_limit: f64,
    /// Tasks one session may have waiting; past it its submissions get 429.
    #[arg(long, env = "OFFLOAD_MAX_QUEUED_PER_SESSION", default_value_t = 100)]
    max_queued_per_session: usize,
    /// Tasks of one session running at once [default: workers − 1, at least 1].
    #[arg(long, env = "OFFLOAD_MAX_RUNNING_PER_SESSION")]
    max_running_per_session: Option<usize>,
    /// Sessions held at once; past it the longest idle is evicted, or new ones get 503.
    #[arg(long, env = "OFFLOAD_MAX_SESSIONS", default_value_t = 10_000)]
    max_sessions: usize,
    /// Seconds after which a session with no open page and no unfinished task is forgotten.
    #[arg(long, env = "OFFLOAD_SESSION_IDLE_SECS", default_value_t = 1800)]
    session_idle_secs: u64,
    /// Results-terminal lines kept per session.
    #[arg(long, env = "OFFLOAD_TERMINAL_LINES", default_value_t = 1000)]
    terminal_lines: usize,
    /// Live streams open at once, all sessions together; past it new ones get 503.
    #[arg(long, env = "OFFLOAD_MAX_STREAMS", default_value_t = 2_000)]
    max_streams: usize,
    /// Live streams of one session; a new one closes that session's oldest.
    #[arg(long, env = "OFFLOAD_MAX_STREAMS_PER_SESSION", default_value_t = 8)]
    max_streams_per_session: usize,
    /// Connections open at once on each listener.
    #[arg(long, env = "OFFLOAD_MAX_CONNECTIONS", default_value_t = 4_096)]
    max_connections: usize,
    /// Seconds a client has to send its request headers.
    #[arg(long, env = "OFFLOAD_HEADER_READ_TIMEOUT", default_value_t = 10)]
    header_read_timeout: u64,
    /// Host names both listeners answer to, besides localhost, 127.0.0.1, [::1] and the
    /// addresses they listen on (comma-separated).
    #[arg(long, env = "OFFLOAD_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Where the session database lives.
    #[arg(long, env = "OFFLOAD_DATA_DIR", default_value = "offload-data")]
    data_dir: PathBuf,
    /// Seconds a stop (SIGTERM, Ctrl-C) waits for running tasks before recording them for
    /// the next start.
    #[arg(long, env = "OFFLOAD_SHUTDOWN_GRACE", default_value_t = 10.0)]
    shutdown_grace: f64,
    /// Let the dashboard's profile views sample the server's threads (pprof) while open.
    #[arg(long, env = "OFFLOAD_PROFILER")]
    profiler: bool,
    /// Address of the cluster dashboard (`/status`, `/individual-*`).
    #[arg(long, env = "OFFLOAD_DASHBOARD_ADDR", default_value = "127.0.0.1:8787")]
    dashboard_addr: SocketAddr,
    /// The dashboard the viewer page shows [env: OFFLOAD_DASHBOARD, then the seed's
    /// DASK_DASHBOARD; default: http://localhost:8787/status]. A real Dask dashboard works too.
    #[arg(long)]
    dashboard_url: Option<String>,
}

impl Args {
    fn dashboard_url(&self) -> Result<DashboardUrl, StartError> {
        let raw = self
            .dashboard_url
            .clone()
            .or_else(|| std::env::var("OFFLOAD_DASHBOARD").ok())
            .or_else(|| std::env::var("DASK_DASHBOARD").ok())
            .unwrap_or_else(|| "http://localhost:8787/status".to_owned());
        DashboardUrl::parse(&raw).map_err(StartError::DashboardUrl)
    }

    fn seconds(value: f64, flag: &'static str) -> Result<Duration, StartError> {
        Duration::try_from_secs_f64(value).map_err(|_| StartError::Seconds { flag, value })
    }
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("reading the Leptos configuration: {0}")]
    Config(#[from] leptos::config::errors::LeptosConfigError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    DashboardUrl(String),
    #[error("{flag} must be a number of seconds, 0 or more (got {value})")]
    Seconds { flag: &'static str, value: f64 },
    #[error(transparent)]
    Store(#[from] app::ssr::store::StoreError),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), StartError> {
    let dashboard_url = args.dashboard_url()?;
    let time_limit = Args::seconds(args.task_time_limit, "--task-time-limit")?;
    let grace = Args::seconds(args.shutdown_grace, "--shutdown-grace")?;
    let mut leptos_options = get_configuration(None)?.leptos_options;
    if let Some(addr) = args.addr {
        leptos_options.site_addr = addr;
    }
    let addr = leptos_options.site_addr;
    raise_open_files_limit();

    let (store, writer, saved, next_task) = Store::open(&args.data_dir)?;
    let cluster = EmbeddedCluster::start(ClusterConfig {
        workers: args.workers,
        queue_capacity: args.queue_capacity,
        task_time_limit: (!time_limit.is_zero()).then_some(time_limit),
        max_queued_per_submitter: args.max_queued_per_session,
        max_running_per_submitter: args.max_running_per_session,
        ..ClusterConfig::default()
    });
    let sessions = Arc::new(Sessions::new(
        SessionConfig {
            idle_timeout: Duration::from_secs(args.session_idle_secs),
            max_lines: args.terminal_lines,
            max_sessions: args.max_sessions,
        },
        store.clone(),
        next_task,
    ));
    let rerun = sessions.restore(saved);
    tracing::info!(
        sessions = sessions.len(),
        unfinished = rerun.len(),
        data_dir = %args.data_dir.display(),
        "session records loaded"
    );
    let expiry = tokio::spawn(
        sessions
            .clone()
            .expire_every(Duration::from_secs(10), release_freed_memory),
    );

    let state = AppState {
        leptos_options,
        cluster: cluster.client(),
        sessions,
        streams: StreamLimits::new(args.max_streams_per_session, args.max_streams),
        shutdown: Shutdown::default(),
        dashboard: DashboardFeed::start(cluster.client(), Duration::from_secs(1), args.profiler),
        dashboard_url,
    };
    runner::rerun(&state, rerun).await;

    let dashboard_addr = args.dashboard_addr;
    let hosts = AllowedHosts::new(
        args.allowed_hosts.iter().map(String::as_str),
        [addr, dashboard_addr],
    );
    // Innermost first: the error statuses are read back before anything compresses them.
    let app = site(&state)
        .route("/api/events", get(stream::events))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(from_fn(error_status))
        .layer(from_fn_with_state(hosts.clone(), refuse_cross_site))
        .layer(from_fn(session_cookie))
        .layer(CompressionLayer::new())
        .layer(from_fn_with_state(hosts.clone(), allowed_host))
        .with_state(state.clone());
    let dashboard = site(&state)
        .route("/dashboard/stream", get(dashboard_stream))
        .route("/individual-plots.json", get(plots))
        .layer(from_fn_with_state(
            Arc::<str>::from(hosts.frame_ancestors()),
            dashboard_only,
        ))
        .layer(CompressionLayer::new())
        .layer(from_fn_with_state(hosts, allowed_host))
        .with_state(state.clone());

    let listener = bind(addr).await?;
    let dashboard_listener = bind(dashboard_addr).await?;
    tracing::info!("Offload is serving on http://{addr}");
    tracing::info!("the cluster dashboard is on http://{dashboard_addr}/status");
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        max_connections: args.max_connections,
        drain: Duration::from_secs(2),
    };
    let (stop_serving, serving) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut serving = serving.clone();
        async move {
            let _ = serving.wait_for(|stop| *stop).await;
        }
    };
    let servers = tokio::spawn(async move {
        tokio::join!(
            serve("app", listener, app, limits, stopped()),
            serve(
                "dashboard",
                dashboard_listener,
                dashboard,
                limits,
                stopped()
            ),
        );
    });

    shutdown_signal().await;
    // Pages are told and submissions refused at once; the listeners keep answering (503)
    // while running tasks get their grace.
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "stopping: waiting for running tasks"
    );
    state.shutdown.begin();
    cluster.drain();
    if !cluster.wait_idle(grace).await {
        tracing::info!("tasks still running: they will run again after the next start");
    }
    let _ = stop_serving.send(true);
    let _ = servers.await;
    expiry.abort();
    drop(state);
    // Queued and still-running tasks end as lost by the shutdown; they stay recorded as
    // accepted and run again after the next start.
    drop(cluster);
    if let Err(error) = store.flush().await {
        tracing::error!(%error, "the last session records may not be saved");
    }
    drop(store);
    // The writer ends once the last handle is gone; a connection task that outlived the
    // drain may still hold one, and everything is committed already, so do not wait for ever.
    let joined = tokio::task::spawn_blocking(move || writer.join());
    if tokio::time::timeout(Duration::from_secs(2), joined)
        .await
        .is_err()
    {
        tracing::info!("left the session database's writer to the exit");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The Leptos pages and the built site's files, shared by the app and dashboard listeners.
fn site(state: &AppState) -> Router<AppState> {
    Router::new()
        .leptos_routes(state, generate_route_list(App), {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
}

/// Hands memory freed by expired sessions back to the system. glibc's allocator keeps freed
/// pages in its per-thread arenas; without this, memory after a burst of sessions stays at its
/// peak although nothing uses it.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heap to the kernel;
    // it takes the allocator's locks itself and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every connection and stream needs a file descriptor: the soft limit (often 1,024) would cap
/// them long before memory does, so it is raised to the hard limit.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-files limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-files limit"),
    }
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
