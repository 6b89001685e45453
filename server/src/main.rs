//! `offload`: parses flags, starts the cluster, builds [`app::ssr::AppState`] and serves the
//! app and its cluster's dashboard ([`app_server`]); or, as `offload cluster` and `offload
//! worker`, runs a NATS cluster's workers and dashboard ([`commands`]); or manages API tokens,
//! or calls the API ([`cli`]). Wiring only: behaviour lives in the `app`, `dashboard` and
//! `cluster` crates.

mod app_server;
mod args;
mod cli;
mod commands;
mod routes;
mod serve;

use std::net::SocketAddr;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command, StartError};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let ran = match cli.command {
        None => app_server::serve_app(cli.serve).await,
        Some(Command::Serve(args)) => app_server::serve_app(*args).await,
        Some(Command::Cluster(args)) => commands::run_cluster(args).await,
        Some(Command::Worker(args)) => commands::run_worker(args).await,
        Some(Command::Token(args)) => return commands::manage_tokens(args),
        Some(Command::Client(command)) => return cli::run(command).await,
    };
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Hands memory freed by expired sessions back to the system. glibc's allocator keeps freed
/// pages in its per-thread arenas; without this, memory after a burst of sessions stays at its
/// peak although nothing uses it.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heap to the kernel;
    // it takes the allocator's locks itself and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every connection and stream needs a file descriptor: the soft limit (often 1,024) would cap
/// them long before memory does, so it is raised to the hard limit.
pub(crate) fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-files limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-files limit"),
    }
}

pub(crate) async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

pub(crate) async fn shutdown_signal() {
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
