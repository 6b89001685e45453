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
mod standby;
mod stop;

use std::net::SocketAddr;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command, StartError};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Logs on stderr: a command's stdout is its output (`offload token create` prints the
    // token there), never mixed with what a library notices.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
        Some(Command::Token(args)) => return commands::manage_tokens(args).await,
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
    {
        // Sessions expire every few seconds under a crowd: trimming as often would walk the
        // allocator's heaps, under their locks, for little.
        static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
        let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|at| at.elapsed() < TRIM_EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
        drop(last);
        let started = std::time::Instant::now();
        // SAFETY: malloc_trim only returns free pages of the allocator's own heap to the
        // kernel; it takes the allocator's locks itself and touches no memory in use.
        unsafe {
            libc::malloc_trim(0);
        }
        let took_ms = started.elapsed().as_secs_f64() * 1e3;
        if took_ms > SLOW_MS {
            tracing::warn!(took_ms, "giving freed memory back to the system was slow");
        }
    }
}

/// Least time between two trims of the allocator's heaps.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// A pause on the tasks' path longer than this is logged as a warning.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SLOW_MS: f64 = 50.0;

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
