//! Offload's side-by-side benchmark (`make bench`): the seed's Panel + Dask stack, Offload with
//! its embedded cluster, and Offload with its workers on NATS, started side by side and measured
//! in one run, so that every ratio it prints comes from figures taken minutes apart on the same
//! machine.
//!
//! - [`stack`] starts each stack as its user would (`python cluster.py` + `panel serve app.py`;
//!   `offload`; `offload cluster` + `offload worker` + `offload serve --cluster`) and reads the
//!   resident memory of every process a stack started.
//! - [`figures`] measures each cluster from its own client: Dask's asynchronous `Client`
//!   (`dask_client.py`) and Offload's [`cluster::Client`], alternating stacks round by round.
//! - [`browser`] drives both apps in chromium with Playwright: click → terminal line, page load.
//! - [`report`] prints the table of ratios, writes `target/bench/latest.json` and rewrites the
//!   README's figures table from it.

pub mod browser;
pub mod failover;
pub mod figures;
pub mod flood;
pub mod history;
pub mod postgres;
pub mod report;
pub mod stack;

use std::path::PathBuf;

/// Why a benchmark run stopped. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what} is missing at {path}: {hint}")]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("starting {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} did not come up within {secs} s (its log: {log})")]
    NotReady {
        what: String,
        secs: u64,
        log: PathBuf,
    },
    #[error("{what} exited early with {status} (its log: {log})")]
    Exited {
        what: String,
        status: std::process::ExitStatus,
        log: PathBuf,
    },
    #[error("port {port} is taken, and {who} needs it")]
    PortTaken { port: u16, who: &'static str },
    #[error("{what} failed: {detail}")]
    Measure { what: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a benchmark report: {detail}")]
    BadReport { path: PathBuf, detail: String },
}

impl BenchError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
