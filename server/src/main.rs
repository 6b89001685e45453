//! `offload`: parses flags, starts the cluster, builds [`AppState`] and serves the app.
//! Wiring only: behaviour lives in the `app` and `cluster` crates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::ssr::{AppState, SessionConfig, Sessions, refuse_cross_site, session_cookie, stream};
use app::{App, shell};
use axum::Router;
use axum::routing::get;
use clap::Parser;
use cluster::{ClusterConfig, EmbeddedCluster};
use leptos::config::get_configuration;
use leptos_axum::{LeptosRoutes, generate_route_list};
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
    tokio::spawn(sessions.clone().follow(cluster.client().events()));
    tokio::spawn(sessions.clone().expire_every(Duration::from_secs(60)));

    let state = AppState {
        leptos_options,
        cluster: cluster.client(),
        sessions,
    };
    let routes = generate_route_list(App);
    let app = Router::new()
        .route("/api/events", get(stream::events))
        .leptos_routes(&state, routes, {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn(refuse_cross_site))
        .layer(axum::middleware::from_fn(session_cookie))
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    tracing::info!("Offload is serving on http://{addr}");
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
    tokio::select! {
        served = server => served.map_err(StartError::Serve)?,
        // Live streams never end by themselves: give them a moment, then stop anyway.
        () = async { shutdown_signal().await; tokio::time::sleep(Duration::from_secs(2)).await } => {
            tracing::info!("closed the remaining live streams");
        }
    }
    drop(cluster);
    Ok(())
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
