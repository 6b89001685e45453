//! The `offload` command line: its commands and their flags (each with an environment
//! fallback), and why a start can fail.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use app::ssr::state::DashboardUrl;
use clap::{Parser, Subcommand};
use cluster::SpawnError;
use cluster::nats::{ConnectError, NatsConfig, NatsError, ServerError};

/// Offload: a web UI that stays responsive while a worker cluster does the heavy work.
///
/// Without a command, `offload` serves the app with its own embedded workers (`serve`).
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) serve: Args,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the app (the default).
    Serve(Box<Args>),
    /// Run a NATS cluster: workers and the cluster dashboard, and a local nats-server unless
    /// --nats names one (the seed's `python cluster.py`).
    Cluster(ClusterArgs),
    /// Join a NATS cluster's workers, from any machine.
    Worker(WorkerArgs),
    /// Create, list and revoke API tokens (the server may keep running).
    Token(TokenArgs),
    #[command(flatten)]
    Client(crate::cli::Client),
}

/// `offload token`.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    pub(crate) action: TokenAction,
    /// The server's data directory, where tokens are kept (as hashes).
    #[arg(
        long,
        env = "OFFLOAD_DATA_DIR",
        default_value = "offload-data",
        global = true
    )]
    pub(crate) data_dir: PathBuf,
    /// The PostgreSQL database the server keeps its record in, when it is given one
    /// (`postgres://user@host/db`): the tokens are kept there instead.
    #[arg(long, env = "OFFLOAD_DATABASE_URL", value_name = "URL", global = true)]
    pub(crate) database: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenAction {
    /// Make a token called NAME (or one for each NAME) and print it, one per line: the only
    /// time it is shown.
    Create {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List the tokens (never their secrets).
    List,
    /// Revoke token NAME: it is refused from the next request on.
    Revoke { name: String },
}

/// `offload serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address the app listens on [default: 127.0.0.1:3000].
    #[arg(long, env = "OFFLOAD_ADDR")]
    pub(crate) addr: Option<SocketAddr>,
    /// Worker threads of the embedded cluster.
    #[arg(long, env = "OFFLOAD_WORKERS", default_value_t = 4)]
    pub(crate) workers: usize,
    /// Tasks that may wait in the queue, all sessions together, before submissions are
    /// refused as busy.
    #[arg(long, env = "OFFLOAD_QUEUE_CAPACITY", default_value_t = 10_000)]
    pub(crate) queue_capacity: usize,
    /// Seconds a task may run before it is stopped (0: no limit).
    #[arg(long, env = "OFFLOAD_TASK_TIME_LIMIT", default_value_t = 300.0)]
    pub(crate) task_time_limit: f64,
    /// Tasks one session may have waiting; past it its submissions get 429.
    #[arg(long, env = "OFFLOAD_MAX_QUEUED_PER_SESSION", default_value_t = 100)]
    pub(crate) max_queued_per_session: usize,
    /// Tasks of one session running at once [default: workers − 1, at least 1].
    #[arg(long, env = "OFFLOAD_MAX_RUNNING_PER_SESSION")]
    pub(crate) max_running_per_session: Option<usize>,
    /// Largest result a task may return, in bytes of JSON; a larger one fails the task with
    /// a message saying so (results are kept in memory, sent and stored).
    #[arg(long, env = "OFFLOAD_MAX_OUTPUT_BYTES", default_value_t = cluster::MAX_OUTPUT_BYTES)]
    pub(crate) max_output_bytes: usize,
    /// Most members in one batch (`POST /api/v1/batches`); a larger one is refused, saying
    /// its size.
    #[arg(long, env = "OFFLOAD_MAX_BATCH", default_value_t = 10_000)]
    pub(crate) max_batch: usize,
    /// Batches one session (or token) may have running at once; past it new ones get 429.
    #[arg(long, env = "OFFLOAD_MAX_OPEN_BATCHES", default_value_t = 10)]
    pub(crate) max_open_batches: usize,
    /// Sessions held at once; past it the longest idle is evicted, or new ones get 503.
    #[arg(long, env = "OFFLOAD_MAX_SESSIONS", default_value_t = 10_000)]
    pub(crate) max_sessions: usize,
    /// Seconds after which a session with no open page and no unfinished task is forgotten.
    #[arg(long, env = "OFFLOAD_SESSION_IDLE_SECS", default_value_t = 1800)]
    pub(crate) session_idle_secs: u64,
    /// Results-terminal lines kept per session (in memory; the history keeps more).
    #[arg(long, env = "OFFLOAD_TERMINAL_LINES", default_value_t = 1000)]
    pub(crate) terminal_lines: usize,
    /// Days an ended task stays on record (history, API, detail page); 0: it leaves at the
    /// next pruning (at start, then every minute). Unfinished tasks never leave.
    #[arg(long, env = "OFFLOAD_RETENTION_DAYS", default_value_t = 30.0)]
    pub(crate) retention_days: f64,
    /// Ended tasks kept per owner (a session or a token); the oldest leave first.
    #[arg(long, env = "OFFLOAD_MAX_HISTORY_PER_OWNER", default_value_t = 100_000)]
    pub(crate) max_history_per_owner: usize,
    /// Live streams open at once, all sessions together; past it new ones get 503.
    #[arg(long, env = "OFFLOAD_MAX_STREAMS", default_value_t = 2_000)]
    pub(crate) max_streams: usize,
    /// Live streams of one session; a new one closes that session's oldest.
    #[arg(long, env = "OFFLOAD_MAX_STREAMS_PER_SESSION", default_value_t = 8)]
    pub(crate) max_streams_per_session: usize,
    /// Connections open at once on each listener.
    #[arg(long, env = "OFFLOAD_MAX_CONNECTIONS", default_value_t = 4_096)]
    pub(crate) max_connections: usize,
    /// Seconds a client has to send its request headers.
    #[arg(long, env = "OFFLOAD_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub(crate) header_read_timeout: u64,
    /// Host names both listeners answer to, besides localhost, 127.0.0.1, [::1] and the
    /// addresses they listen on (comma-separated).
    #[arg(long, env = "OFFLOAD_ALLOWED_HOSTS", value_delimiter = ',')]
    pub(crate) allowed_hosts: Vec<String>,
    /// The address people open the app by, when it is not the listen address (behind a
    /// proxy): with `https://`, the session cookie is `Secure` (named `__Host-offload_session`).
    /// Its host is answered to as if named in --allowed-hosts.
    #[arg(long, env = "OFFLOAD_PUBLIC_URL", value_name = "URL")]
    pub(crate) public_url: Option<String>,
    /// Proxies (IP addresses or networks, comma-separated) whose `X-Forwarded-Proto: https`
    /// is believed: the session cookie of such a request is `Secure`.
    #[arg(long, env = "OFFLOAD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub(crate) trusted_proxies: Vec<String>,
    /// Where the session database lives (unless --database names one).
    #[arg(long, env = "OFFLOAD_DATA_DIR", default_value = "offload-data")]
    pub(crate) data_dir: PathBuf,
    /// Keep the record (sessions, tasks, batches, history, tokens) in this PostgreSQL database
    /// instead of the data directory's SQLite file: `postgres://user[:password]@host[:port]/db`
    /// (no TLS: a local socket, loopback or a private network). One server writes a database
    /// at a time (others may stand by: --standby); the database is migrated at start.
    #[arg(long, env = "OFFLOAD_DATABASE_URL", value_name = "URL")]
    pub(crate) database: Option<String>,
    /// Serve beside the server that writes --database: listen at once and forward every
    /// request (but `/health`) to it, until it stops or dies; then take over (read the record,
    /// run again what it had not finished, serve). Without it a second server on the same
    /// database exits 1.
    #[arg(long, env = "OFFLOAD_STANDBY", requires = "database")]
    pub(crate) standby: bool,
    /// Where the other servers on --database reach this one, to forward to it while it writes
    /// the database: `http://host:port`. Default: `http://` and --addr (this machine's host
    /// name if --addr is 0.0.0.0 or [::]).
    #[arg(
        long,
        env = "OFFLOAD_ADVERTISE_URL",
        value_name = "URL",
        requires = "database"
    )]
    pub(crate) advertise_url: Option<String>,
    /// A standby takes over from a server that holds the database but has not beaten (every
    /// second) for this many seconds — hung, or stopped — by ending its connection.
    #[arg(
        long,
        env = "OFFLOAD_TAKEOVER_AFTER",
        default_value_t = 10.0,
        value_name = "SECONDS"
    )]
    pub(crate) takeover_after: f64,
    /// Seconds a stop (SIGTERM, Ctrl-C) waits for running tasks before recording them for
    /// the next start.
    #[arg(long, env = "OFFLOAD_SHUTDOWN_GRACE", default_value_t = 10.0)]
    pub(crate) shutdown_grace: f64,
    /// Let the dashboard's profile views sample the server's threads (pprof) while open.
    #[arg(long, env = "OFFLOAD_PROFILER")]
    pub(crate) profiler: bool,
    /// Address of the cluster dashboard (`/status`, `/individual-*`).
    #[arg(long, env = "OFFLOAD_DASHBOARD_ADDR", default_value = "127.0.0.1:8787")]
    pub(crate) dashboard_addr: SocketAddr,
    /// The dashboard the viewer page shows [env: OFFLOAD_DASHBOARD, then the seed's
    /// DASK_DASHBOARD; default: http://localhost:8787/status]. A real Dask dashboard works too.
    #[arg(long)]
    pub(crate) dashboard_url: Option<String>,
    /// Hand the work to this NATS cluster's workers (`offload cluster` prints the address)
    /// instead of embedded ones; the dashboard is then the cluster's, and this process has
    /// no dashboard listener.
    #[arg(long, env = "OFFLOAD_CLUSTER", value_name = "nats://HOST:PORT")]
    pub(crate) cluster: Option<String>,
    #[command(flatten)]
    pub(crate) nats: NatsArgs,
    /// This app server's name in the NATS cluster: stable across restarts and unique among
    /// app servers [default: host name and app port].
    #[arg(long, env = "OFFLOAD_SERVER_ID")]
    pub(crate) server_id: Option<String>,
    /// Tasks handed to NATS per live worker thread. Only tiny tasks (expected 20 ms or less)
    /// use the slots beyond one per thread: they travel to the workers in batches; other
    /// work never waits in JetStream behind another session's.
    #[arg(long, env = "OFFLOAD_IN_FLIGHT_PER_THREAD", default_value_t = NatsConfig::IN_FLIGHT_PER_THREAD)]
    pub(crate) in_flight_per_thread: usize,
    /// Tasks handed to NATS at most, whatever the workers advertise: each is a future
    /// awaiting its result, never a thread.
    #[arg(long, env = "OFFLOAD_MAX_IN_FLIGHT", default_value_t = NatsConfig::MAX_IN_FLIGHT)]
    pub(crate) max_in_flight: usize,
    /// Seconds past the task time limit that a NATS worker's result is awaited; then the
    /// task ends as lost and its slot is freed.
    #[arg(long, env = "OFFLOAD_RESULT_GRACE", default_value_t = NatsConfig::RESULT_GRACE.as_secs_f64())]
    pub(crate) result_grace: f64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct NatsArgs {
    /// Prefix of every stream, subject and bucket name, so deployments can share a NATS.
    #[arg(long, env = "OFFLOAD_NATS_PREFIX", default_value = "offload")]
    pub(crate) nats_prefix: String,
}

/// `offload cluster`.
#[derive(Debug, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Worker threads in this process (0: only the dashboard, and NATS if it starts one).
    #[arg(long, env = "OFFLOAD_WORKERS", default_value_t = 4)]
    pub(crate) workers: usize,
    /// Join this NATS server instead of starting one.
    #[arg(long, env = "OFFLOAD_NATS", value_name = "nats://HOST:PORT")]
    pub(crate) nats: Option<String>,
    /// Port of the NATS server this command starts (loopback only).
    #[arg(long, env = "OFFLOAD_NATS_PORT", default_value_t = 4222)]
    pub(crate) nats_port: u16,
    /// The nats-server binary to start (`make nats` installs the pinned one in
    /// target/nats/bin).
    #[arg(long, env = "OFFLOAD_NATS_SERVER", default_value = "nats-server")]
    pub(crate) nats_server: PathBuf,
    #[command(flatten)]
    pub(crate) nats_names: NatsArgs,
    /// Where the NATS server keeps its JetStream store.
    #[arg(
        long,
        env = "OFFLOAD_CLUSTER_DATA_DIR",
        default_value = "offload-data/cluster"
    )]
    pub(crate) data_dir: PathBuf,
    /// Address of the cluster dashboard (`/status`, `/individual-*`).
    #[arg(long, env = "OFFLOAD_DASHBOARD_ADDR", default_value = "127.0.0.1:8787")]
    pub(crate) dashboard_addr: SocketAddr,
    /// Host names the dashboard answers to, besides localhost, 127.0.0.1, [::1] and its
    /// address (comma-separated).
    #[arg(long, env = "OFFLOAD_ALLOWED_HOSTS", value_delimiter = ',')]
    pub(crate) allowed_hosts: Vec<String>,
    /// Seconds a stop waits for running tasks (a task still running then runs again on
    /// another worker).
    #[arg(long, env = "OFFLOAD_SHUTDOWN_GRACE", default_value_t = 10.0)]
    pub(crate) shutdown_grace: f64,
    /// Let the dashboard's profile views sample this process's worker threads while open.
    #[arg(long, env = "OFFLOAD_PROFILER")]
    pub(crate) profiler: bool,
}

/// `offload worker`.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    /// The cluster to join.
    #[arg(long, env = "OFFLOAD_CLUSTER", value_name = "nats://HOST:PORT")]
    pub(crate) cluster: String,
    /// Tasks this process runs at once [default: the machine's cores].
    #[arg(long, env = "OFFLOAD_THREADS")]
    pub(crate) threads: Option<usize>,
    #[command(flatten)]
    pub(crate) nats: NatsArgs,
    /// Seconds a stop waits for running tasks (a task still running then runs again on
    /// another worker).
    #[arg(long, env = "OFFLOAD_SHUTDOWN_GRACE", default_value_t = 10.0)]
    pub(crate) shutdown_grace: f64,
    /// Serve `/metrics`, `/health` and `/json/*.json` for this worker on this address.
    #[arg(long, env = "OFFLOAD_METRICS_ADDR")]
    pub(crate) metrics_addr: Option<SocketAddr>,
}

impl Args {
    pub(crate) fn dashboard_url(&self) -> Result<DashboardUrl, StartError> {
        let raw = self
            .dashboard_url
            .clone()
            .or_else(|| std::env::var("OFFLOAD_DASHBOARD").ok())
            .or_else(|| std::env::var("DASK_DASHBOARD").ok())
            .unwrap_or_else(|| "http://localhost:8787/status".to_owned());
        DashboardUrl::parse(&raw).map_err(StartError::DashboardUrl)
    }

    /// Where the other servers reach this one (`--advertise-url`, else from `addr`), as
    /// `http://host:port`.
    pub(crate) fn advertise_url(&self, addr: SocketAddr) -> Result<String, StartError> {
        let Some(given) = &self.advertise_url else {
            return Ok(if addr.ip().is_unspecified() {
                format!("http://{}:{}", cluster::nats::host_name(), addr.port())
            } else {
                format!("http://{addr}")
            });
        };
        let refused = |why: &str| {
            StartError::Flag(format!(
                "--advertise-url must be http://host:port, where the other servers reach this one ({why}; got {given:?})"
            ))
        };
        let uri: axum::http::Uri = given.parse().map_err(|_| refused("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(refused("the servers speak plain HTTP to each other"));
        }
        let Some(authority) = uri.authority().filter(|a| a.port_u16().is_some()) else {
            return Err(refused("no port"));
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(refused("a path"));
        }
        Ok(format!("http://{authority}"))
    }

    pub(crate) fn seconds(value: f64, flag: &'static str) -> Result<Duration, StartError> {
        Duration::try_from_secs_f64(value).map_err(|_| StartError::Seconds { flag, value })
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("reading the Leptos configuration: {0}")]
    Config(#[from] leptos::config::errors::LeptosConfigError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    DashboardUrl(String),
    #[error("{0}")]
    Flag(String),
    #[error("{flag} must be a number of seconds, 0 or more (got {value})")]
    Seconds { flag: &'static str, value: f64 },
    #[error("{flag} must be a number of days, 0 or more (got {value})")]
    Days { flag: &'static str, value: f64 },
    #[error(transparent)]
    Store(#[from] app::ssr::store::StoreError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(transparent)]
    NatsServer(#[from] ServerError),
    #[error("installing the metrics recorder: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    #[error(
        "another server took the database over while this one's connection to it was gone: this one stopped (start it with --standby to stand by for that one)"
    )]
    Lost,
    #[error("creating {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}
