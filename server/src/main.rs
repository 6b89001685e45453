//! `offload`: parses flags, starts the cluster, builds [`AppState`] and serves the app and its
//! cluster's dashboard; or, as `offload cluster` and `offload worker`, runs a NATS cluster's
//! workers and dashboard. Wiring only: behaviour lives in the `app`, `dashboard` and `cluster`
//! crates.

mod cli;
mod routes;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use app::ssr::state::DashboardUrl;
use app::ssr::store::{Retention, Store};
use app::ssr::stream::StreamLimits;
use app::ssr::{
    AllowedHosts, AppState, CookiePolicy, Policy, SessionConfig, Sessions, Shutdown, runner,
    url_host,
};
use clap::{Parser, Subcommand};
use cluster::nats::{
    ConnectError, LocalNats, NatsCluster, NatsConfig, NatsError, NatsObserver, NatsWorker,
    ServerError, WorkerConfig, host_name, redacted, token,
};
use cluster::{ClusterConfig, EmbeddedCluster, Scheduler, SpawnError};
use dashboard::ssr::{AppCounts, AppFigures, DashboardFeed, DashboardState, Metrics, OpsState};
use leptos::config::get_configuration;
use tracing_subscriber::EnvFilter;

use crate::routes::{app_router, dashboard_router, ops_router};
use crate::serve::{ConnectionLimits, serve};

/// Offload: a web UI that stays responsive while a worker cluster does the heavy work.
///
/// How often the store is asked to prune what retention no longer keeps.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Without a command, `offload` serves the app with its own embedded workers (`serve`).
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    Client(cli::Client),
}

/// `offload token`.
#[derive(Debug, clap::Args)]
struct TokenArgs {
    #[command(subcommand)]
    action: TokenAction,
    /// The server's data directory, where tokens are kept (as hashes).
    #[arg(
        long,
        env = "OFFLOAD_DATA_DIR",
        default_value = "offload-data",
        global = true
    )]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
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
    /// Largest result a task may return, in bytes of JSON; a larger one fails the task with
    /// a message saying so (results are kept in memory, sent and stored).
    #[arg(long, env = "OFFLOAD_MAX_OUTPUT_BYTES", default_value_t = cluster::MAX_OUTPUT_BYTES)]
    max_output_bytes: usize,
    /// Sessions held at once; past it the longest idle is evicted, or new ones get 503.
    #[arg(long, env = "OFFLOAD_MAX_SESSIONS", default_value_t = 10_000)]
    max_sessions: usize,
    /// Seconds after which a session with no open page and no unfinished task is forgotten.
    #[arg(long, env = "OFFLOAD_SESSION_IDLE_SECS", default_value_t = 1800)]
    session_idle_secs: u64,
    /// Results-terminal lines kept per session (in memory; the history keeps more).
    #[arg(long, env = "OFFLOAD_TERMINAL_LINES", default_value_t = 1000)]
    terminal_lines: usize,
    /// Days an ended task stays on record (history, API, detail page); 0: it leaves at the
    /// next pruning (at start, then every minute). Unfinished tasks never leave.
    #[arg(long, env = "OFFLOAD_RETENTION_DAYS", default_value_t = 30.0)]
    retention_days: f64,
    /// Ended tasks kept per owner (a session or a token); the oldest leave first.
    #[arg(long, env = "OFFLOAD_MAX_HISTORY_PER_OWNER", default_value_t = 100_000)]
    max_history_per_owner: usize,
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
    /// The address people open the app by, when it is not the listen address (behind a
    /// proxy): with `https://`, the session cookie is `Secure` (named `__Host-offload_session`).
    /// Its host is answered to as if named in --allowed-hosts.
    #[arg(long, env = "OFFLOAD_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Proxies (IP addresses or networks, comma-separated) whose `X-Forwarded-Proto: https`
    /// is believed: the session cookie of such a request is `Secure`.
    #[arg(long, env = "OFFLOAD_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
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
    /// Hand the work to this NATS cluster's workers (`offload cluster` prints the address)
    /// instead of embedded ones; the dashboard is then the cluster's, and this process has
    /// no dashboard listener.
    #[arg(long, env = "OFFLOAD_CLUSTER", value_name = "nats://HOST:PORT")]
    cluster: Option<String>,
    #[command(flatten)]
    nats: NatsArgs,
    /// This app server's name in the NATS cluster: stable across restarts and unique among
    /// app servers [default: host name and app port].
    #[arg(long, env = "OFFLOAD_SERVER_ID")]
    server_id: Option<String>,
    /// Tasks handed to NATS per live worker thread. Only tiny tasks (expected 20 ms or less)
    /// use the slots beyond one per thread: they travel to the workers in batches; other
    /// work never waits in JetStream behind another session's.
    #[arg(long, env = "OFFLOAD_IN_FLIGHT_PER_THREAD", default_value_t = NatsConfig::IN_FLIGHT_PER_THREAD)]
    in_flight_per_thread: usize,
    /// Tasks handed to NATS at most, whatever the workers advertise: each is a future
    /// awaiting its result, never a thread.
    #[arg(long, env = "OFFLOAD_MAX_IN_FLIGHT", default_value_t = NatsConfig::MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Seconds past the task time limit that a NATS worker's result is awaited; then the
    /// task ends as lost and its slot is freed.
    #[arg(long, env = "OFFLOAD_RESULT_GRACE", default_value_t = NatsConfig::RESULT_GRACE.as_secs_f64())]
    result_grace: f64,
}

#[derive(Debug, clap::Args)]
struct NatsArgs {
    /// Prefix of every stream, subject and bucket name, so deployments can share a NATS.
    #[arg(long, env = "OFFLOAD_NATS_PREFIX", default_value = "offload")]
    nats_prefix: String,
}

/// `offload cluster`.
#[derive(Debug, clap::Args)]
struct ClusterArgs {
    /// Worker threads in this process (0: only the dashboard, and NATS if it starts one).
    #[arg(long, env = "OFFLOAD_WORKERS", default_value_t = 4)]
    workers: usize,
    /// Join this NATS server instead of starting one.
    #[arg(long, env = "OFFLOAD_NATS", value_name = "nats://HOST:PORT")]
    nats: Option<String>,
    /// Port of the NATS server this command starts (loopback only).
    #[arg(long, env = "OFFLOAD_NATS_PORT", default_value_t = 4222)]
    nats_port: u16,
    /// The nats-server binary to start (`make nats` installs the pinned one in
    /// target/nats/bin).
    #[arg(long, env = "OFFLOAD_NATS_SERVER", default_value = "nats-server")]
    nats_server: PathBuf,
    #[command(flatten)]
    nats_names: NatsArgs,
    /// Where the NATS server keeps its JetStream store.
    #[arg(
        long,
        env = "OFFLOAD_CLUSTER_DATA_DIR",
        default_value = "offload-data/cluster"
    )]
    data_dir: PathBuf,
    /// Address of the cluster dashboard (`/status`, `/individual-*`).
    #[arg(long, env = "OFFLOAD_DASHBOARD_ADDR", default_value = "127.0.0.1:8787")]
    dashboard_addr: SocketAddr,
    /// Host names the dashboard answers to, besides localhost, 127.0.0.1, [::1] and its
    /// address (comma-separated).
    #[arg(long, env = "OFFLOAD_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Seconds a stop waits for running tasks (a task still running then runs again on
    /// another worker).
    #[arg(long, env = "OFFLOAD_SHUTDOWN_GRACE", default_value_t = 10.0)]
    shutdown_grace: f64,
    /// Let the dashboard's profile views sample this process's worker threads while open.
    #[arg(long, env = "OFFLOAD_PROFILER")]
    profiler: bool,
}

/// `offload worker`.
#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// The cluster to join.
    #[arg(long, env = "OFFLOAD_CLUSTER", value_name = "nats://HOST:PORT")]
    cluster: String,
    /// Tasks this process runs at once [default: the machine's cores].
    #[arg(long, env = "OFFLOAD_THREADS")]
    threads: Option<usize>,
    #[command(flatten)]
    nats: NatsArgs,
    /// Seconds a stop waits for running tasks (a task still running then runs again on
    /// another worker).
    #[arg(long, env = "OFFLOAD_SHUTDOWN_GRACE", default_value_t = 10.0)]
    shutdown_grace: f64,
    /// Serve `/metrics`, `/health` and `/json/*.json` for this worker on this address.
    #[arg(long, env = "OFFLOAD_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
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
    #[error("creating {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whatever runs this app server's tasks.
enum Workers {
    Embedded(EmbeddedCluster),
    Nats(NatsCluster),
}

impl Workers {
    /// Both have one scheduler; only what runs its tasks differs.
    fn scheduler(&self) -> &Scheduler {
        match self {
            Self::Embedded(cluster) => cluster.scheduler(),
            Self::Nats(cluster) => cluster.scheduler(),
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let ran = match cli.command {
        None => serve_app(cli.serve).await,
        Some(Command::Serve(args)) => serve_app(*args).await,
        Some(Command::Cluster(args)) => run_cluster(args).await,
        Some(Command::Worker(args)) => run_worker(args).await,
        Some(Command::Token(args)) => return manage_tokens(args),
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

async fn serve_app(args: Args) -> Result<(), StartError> {
    let dashboard_url = args.dashboard_url()?;
    let cookies = CookiePolicy::new(args.public_url.as_deref(), &args.trusted_proxies)
        .map_err(StartError::Flag)?;
    let time_limit = Args::seconds(args.task_time_limit, "--task-time-limit")?;
    let grace = Args::seconds(args.shutdown_grace, "--shutdown-grace")?;
    let mut leptos_options = get_configuration(None)?.leptos_options;
    if let Some(addr) = args.addr {
        leptos_options.site_addr = addr;
    }
    let addr = leptos_options.site_addr;
    raise_open_files_limit();

    let metrics = Metrics::install()?;
    let registry = tasks::registry();
    let legacy_type = registry.first().map_or("", |t| t.name());
    let retention = Retention {
        max_age: Some(
            Duration::try_from_secs_f64(args.retention_days * 86_400.0).map_err(|_| {
                StartError::Days {
                    flag: "--retention-days",
                    value: args.retention_days,
                }
            })?,
        ),
        per_owner: args.max_history_per_owner.max(1),
        terminal_lines: args.terminal_lines,
        ..Retention::default()
    };
    let (store, writer, saved, next_task) = Store::open(&args.data_dir, legacy_type, retention)?;
    let pruning = tokio::spawn({
        let store = store.clone();
        async move {
            // The first tick is at once, but the writer prunes at start anyway.
            let mut ticks = tokio::time::interval(PRUNE_EVERY);
            loop {
                ticks.tick().await;
                if let Err(error) = store.prune().await {
                    tracing::error!(%error, "could not prune old tasks");
                }
            }
        }
    });
    let config = ClusterConfig {
        max_output_bytes: args.max_output_bytes,
        workers: args.workers,
        queue_capacity: args.queue_capacity,
        task_time_limit: (!time_limit.is_zero()).then_some(time_limit),
        max_queued_per_submitter: args.max_queued_per_session,
        max_running_per_submitter: args.max_running_per_session,
        ..ClusterConfig::default()
    };
    let cluster = match &args.cluster {
        None => Workers::Embedded(EmbeddedCluster::start(config, registry)?),
        Some(url) => {
            let server = args
                .server_id
                .clone()
                .unwrap_or_else(|| token(&format!("{}-{}", host_name(), addr.port())));
            let nats = NatsConfig {
                in_flight_per_thread: args.in_flight_per_thread,
                max_in_flight: args.max_in_flight,
                result_grace: Args::seconds(args.result_grace, "--result-grace")?,
                ..NatsConfig::new(url.clone(), args.nats.nats_prefix.clone(), server)
            };
            Workers::Nats(NatsCluster::connect(nats, config, registry).await?)
        }
    };
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
        cluster: cluster.scheduler().client(),
        sessions,
        streams: StreamLimits::new(args.max_streams_per_session, args.max_streams),
        shutdown: Shutdown::default(),
        dashboard_url,
        idempotency: Default::default(),
    };
    runner::rerun(&state, rerun).await;

    let dashboard_addr = args.dashboard_addr;
    let public_host = args.public_url.as_deref().and_then(url_host);
    let hosts = AllowedHosts::new(
        args.allowed_hosts
            .iter()
            .map(String::as_str)
            .chain(public_host),
        [addr, dashboard_addr],
    );
    let policy = Arc::new(Policy::app(
        state.dashboard_url.status(),
        &state.leptos_options,
    ));
    let app = app_router(&state, hosts.clone(), cookies, policy);
    // With NATS workers the dashboard is the cluster's, but this process's own figures and
    // health are served here, on the app's listener.
    let app = match &cluster {
        Workers::Embedded(_) => app,
        Workers::Nats(_) => app.merge(ops_router(
            OpsState::new(
                state.cluster.clone(),
                metrics.clone(),
                Some(app_figures(&state)),
            ),
            hosts.clone(),
        )),
    };
    let listener = bind(addr).await?;
    // With NATS workers the dashboard is the cluster's (`offload cluster` serves it).
    let dashboard = match &cluster {
        Workers::Embedded(_) => {
            let state = DashboardState::new(
                state.leptos_options.clone(),
                state.cluster.clone(),
                DashboardFeed::start(state.cluster.clone(), Duration::from_secs(1), args.profiler),
                metrics,
                Some(app_figures(&state)),
            );
            Some((bind(dashboard_addr).await?, dashboard_router(&state, hosts)))
        }
        Workers::Nats(_) => None,
    };
    tracing::info!("Offload is serving on http://{addr}");
    if dashboard.is_some() {
        tracing::info!("the cluster dashboard is on http://{dashboard_addr}/status");
    }
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
        let dashboard = async {
            if let Some((listener, router)) = dashboard {
                serve("dashboard", listener, router, limits, stopped()).await;
            }
        };
        tokio::join!(serve("app", listener, app, limits, stopped()), dashboard);
    });

    shutdown_signal().await;
    // Pages are told and submissions refused at once; the listeners keep answering (503)
    // while running tasks get their grace.
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "stopping: waiting for running tasks"
    );
    state.shutdown.begin();
    cluster.scheduler().drain();
    if !cluster.scheduler().wait_idle(grace).await {
        tracing::info!("tasks still running: they will run again after the next start");
    }
    let _ = stop_serving.send(true);
    let _ = servers.await;
    expiry.abort();
    pruning.abort();
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

/// The app's own figures, for the ops endpoints: sessions held, live streams open and the
/// task database.
fn app_figures(state: &AppState) -> AppFigures {
    let (sessions, streams) = (state.sessions.clone(), state.streams.clone());
    AppFigures::new(move || {
        let (db_bytes, db_tasks, db_owners, db_pruned) = sessions.store().figures().read();
        AppCounts {
            sessions: sessions.len(),
            streams: streams.open_count(),
            db_bytes,
            db_tasks,
            db_owners,
            db_pruned,
        }
    })
}

/// `offload cluster`: a local NATS unless one is named, this process's workers, and the
/// cluster's dashboard, which shows every worker and every app server of the cluster.
async fn run_cluster(args: ClusterArgs) -> Result<(), StartError> {
    let grace = Args::seconds(args.shutdown_grace, "--shutdown-grace")?;
    let prefix = args.nats_names.nats_prefix.clone();
    let local = match &args.nats {
        Some(_) => None,
        None => {
            let store = args.data_dir.join("nats");
            std::fs::create_dir_all(&store).map_err(|source| StartError::DataDir {
                path: store.clone(),
                source,
            })?;
            Some(LocalNats::start(&args.nats_server, args.nats_port, &store).await?)
        }
    };
    let url = match (&args.nats, &local) {
        (Some(url), _) => url.clone(),
        (None, Some(local)) => local.url(),
        (None, None) => unreachable!("a local NATS starts when none is named"),
    };
    let worker = if args.workers > 0 {
        let config = WorkerConfig {
            url: url.clone(),
            prefix: prefix.clone(),
            threads: args.workers,
        };
        Some(NatsWorker::start(config, tasks::registry()).await?)
    } else {
        None
    };
    let observer = NatsObserver::start(&url, &prefix).await?;

    let dashboard_addr = args.dashboard_addr;
    let state = DashboardState::new(
        get_configuration(None)?.leptos_options,
        observer.client(),
        DashboardFeed::start(observer.client(), Duration::from_secs(1), args.profiler),
        Metrics::install()?,
        None,
    );
    let hosts = AllowedHosts::new(
        args.allowed_hosts.iter().map(String::as_str),
        [dashboard_addr],
    );
    let listener = bind(dashboard_addr).await?;
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(10),
        max_connections: 4_096,
        drain: Duration::from_secs(2),
    };
    let (stop_serving, mut serving) = tokio::sync::watch::channel(false);
    let dashboard = tokio::spawn(serve(
        "dashboard",
        listener,
        dashboard_router(&state, hosts),
        limits,
        async move {
            let _ = serving.wait_for(|stop| *stop).await;
        },
    ));
    tracing::info!("the cluster dashboard is on http://{dashboard_addr}/status");
    // Like cluster.py, which prints its scheduler's address for the app.
    let url = redacted(&url);
    println!("Offload cluster ready at {url}");
    println!("  start the app with:   offload serve --cluster {url}");
    println!("  add workers with:     offload worker --cluster {url}");

    shutdown_signal().await;
    tracing::info!("stopping the cluster");
    if let Some(worker) = worker {
        worker.stop(grace).await;
    }
    let _ = stop_serving.send(true);
    let _ = dashboard.await;
    drop(state);
    drop(observer);
    if let Some(local) = local {
        local.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// `offload worker`: runs tasks for a NATS cluster until stopped.
async fn run_worker(args: WorkerArgs) -> Result<(), StartError> {
    let grace = Args::seconds(args.shutdown_grace, "--shutdown-grace")?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let config = WorkerConfig {
        url: args.cluster.clone(),
        prefix: args.nats.nats_prefix.clone(),
        threads,
    };
    let metrics = args.metrics_addr.map(|addr| (addr, Metrics::install()));
    let worker = NatsWorker::start(config, tasks::registry()).await?;
    let (stop_serving, mut serving) = tokio::sync::watch::channel(false);
    let ops = match metrics {
        Some((addr, metrics)) => {
            let hosts = AllowedHosts::new(std::iter::empty::<&str>(), [addr]);
            let router = ops_router(OpsState::new(worker.client(), metrics?, None), hosts);
            let listener = bind(addr).await?;
            tracing::info!("this worker's metrics are on http://{addr}/metrics");
            Some(tokio::spawn(serve(
                "metrics",
                listener,
                router,
                ConnectionLimits {
                    header_read_timeout: Duration::from_secs(10),
                    max_connections: 256,
                    drain: Duration::from_secs(1),
                },
                async move {
                    let _ = serving.wait_for(|stop| *stop).await;
                },
            )))
        }
        None => None,
    };
    println!(
        "worker {} runs {threads} tasks at once for {}",
        worker.name(),
        redacted(&args.cluster)
    );
    shutdown_signal().await;
    worker.stop(grace).await;
    let _ = stop_serving.send(true);
    if let Some(ops) = ops {
        let _ = ops.await;
    }
    Ok(())
}

/// Hands memory freed by expired sessions back to the system. glibc's allocator keeps freed
/// pages in its per-thread arenas; without this, memory after a burst of sessions stays at its
/// peak although nothing uses it.
/// `offload token …`: exits 0 when done, 2 when refused (a bad or taken name, no such
/// token), 1 when the database fails.
fn manage_tokens(args: TokenArgs) -> std::process::ExitCode {
    use app::ssr::tokens::{TokenError, Tokens};
    let registry = tasks::registry();
    let legacy_type = registry.first().map_or("", |t| t.name());
    let now = cluster::now_ms();
    let done = Tokens::open(&args.data_dir, legacy_type).and_then(|mut tokens| {
        match args.action {
            TokenAction::Create { names } => {
                for name in &names {
                    println!("{}", tokens.create(name, now)?);
                }
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    eprintln!(
                        "keep the token now: it is not shown again (send it as \
                         `Authorization: Bearer <token>`)"
                    );
                }
            }
            TokenAction::List => {
                for token in tokens.list()? {
                    let state = match token.revoked_at_ms {
                        Some(_) => "revoked",
                        None => "live",
                    };
                    println!(
                        "{}\t{}\t{}\t{state}",
                        token.name, token.id, token.created_at_ms
                    );
                }
            }
            TokenAction::Revoke { name } => {
                tokens.revoke(&name, now)?;
                eprintln!("token {name:?} revoked");
            }
        }
        Ok(())
    });
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("offload: {error}");
            match error {
                TokenError::BadName(_) | TokenError::Exists(_) | TokenError::Unknown(_) => {
                    std::process::ExitCode::from(2)
                }
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}

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
