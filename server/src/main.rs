//! `offload`: parses flags, starts the cluster, builds [`AppState`] and serves the app.
//! Wiring only: behaviour lives in the `app` and `cluster` crates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::ssr::dashboard::{dashboard_only, plots, stream as dashboard_stream};
use app::ssr::state::DashboardUrl;
use app::ssr::{
    AppState, DashboardFeed, SessionConfig, Sessions, refuse_cross_site, session_cookie, stream,
};
use app::{App, shell};
use axum::Router;
use axum::routing::get;
use clap::Parser;
use cluster::{ClusterConfig, EmbeddedCluster};
use leptos::config::get_configuration;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower_http::compression::CompressionLayer;
use tracing_subscriber::EnvFilter;

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
    /// Tasks that may wait in the queue before submissions are refused as busy.
    #[arg(long, env = "OFFLOAD_QUEUE_CAPACITY", default_value_t = 10_000)]
    queue_capacity: usize,
    /// Seconds after which a session with no open page and no unfinished task is forgotten.
    #[arg(long, env = "OFFLOAD_SESSION_IDLE_SECS", default_value_t = 1800)]
    session_idle_secs: u64,
    /// Results-terminal lines kept per session.
    #[arg(long, env = "OFFLOAD_TERMINAL_LINES", default_value_t = 1000)]
    terminal_lines: usize,
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
    #[error("serving: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    DashboardUrl(String),
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
    let mut leptos_options = get_configuration(None)?.leptos_options;
    if let Some(addr) = args.addr {
        leptos_options.site_addr = addr;
    }
    let addr = leptos_options.site_addr;

    let cluster = EmbeddedCluster::start(ClusterConfig {
        workers: args.workers,
        queue_capacity: args.queue_capacity,
        ..ClusterConfig::default()
    });
    let sessions = Arc::new(Sessions::new(SessionConfig {
        idle_timeout: Duration::from_secs(args.session_idle_secs),
        max_lines: args.terminal_lines,
    }));
    tokio::spawn(sessions.clone().expire_every(Duration::from_secs(60)));

    let state = AppState {
        leptos_options,
        cluster: cluster.client(),
        sessions,
        dashboard: DashboardFeed::start(cluster.client(), Duration::from_secs(1)),
        dashboard_url,
    };
    let app = site(&state)
        .route("/api/events", get(stream::events))
        .layer(axum::middleware::from_fn(refuse_cross_site))
        .layer(axum::middleware::from_fn(session_cookie))
        .with_state(state.clone());
    // The app's own origins may frame the dashboard's views.
    let frame_ancestors: Arc<str> = Arc::from(format!(
        "'self' http://{addr} http://localhost:{port}",
        port = addr.port()
    ));
    let dashboard = site(&state)
        .route("/dashboard/stream", get(dashboard_stream))
        .route("/individual-plots.json", get(plots))
        .layer(axum::middleware::from_fn_with_state(
            frame_ancestors,
            dashboard_only,
        ))
        .with_state(state);

    let dashboard_addr = args.dashboard_addr;
    let listener = bind(addr).await?;
    let dashboard_listener = bind(dashboard_addr).await?;
    tracing::info!("Offload is serving on http://{addr}");
    tracing::info!("the cluster dashboard is on http://{dashboard_addr}/status");
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
    let dashboard_server =
        axum::serve(dashboard_listener, dashboard).with_graceful_shutdown(shutdown_signal());
    tokio::select! {
        served = server => served.map_err(StartError::Serve)?,
        served = dashboard_server => served.map_err(StartError::Serve)?,
        // Live streams never end by themselves: give them a moment, then stop anyway.
        () = async { shutdown_signal().await; tokio::time::sleep(Duration::from_secs(2)).await } => {
            tracing::info!("closed the remaining live streams");
        }
    }
    drop(cluster);
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
        .layer(CompressionLayer::new())
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
