//! `offload serve`: the app server. Three steps, one function each: [`start`] builds its state
//! (the record, the cluster, the sessions, and the tasks that run again), [`listen`] opens the
//! app's listener (and, with embedded workers, the dashboard's), and [`stop`] is the graceful
//! shutdown that follows a signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::ssr::batches::{BatchConfig, Batches};
use app::ssr::runner::Watcher;
use app::ssr::store::{Retention, Store, WriterThread, follow_writer};
use app::ssr::stream::StreamLimits;
use app::ssr::{
    AllowedHosts, AppState, CookiePolicy, Policy, SessionConfig, Sessions, Shutdown, runner,
    url_host,
};
use cluster::nats::{NatsCluster, NatsConfig, host_name, token};
use cluster::{ClusterConfig, EmbeddedCluster, Scheduler};
use dashboard::ssr::{
    AppCounts, AppFigures, BatchBars, DashboardFeed, DashboardState, Metrics, OpsState, RecordProbe,
};
use leptos::config::get_configuration;
use tokio::task::JoinHandle;

use crate::args::{Args, StartError};
use crate::routes::{app_router, dashboard_router, health_router, ops_router};
use crate::serve::{ConnectionLimits, serve};
use crate::standby::Switch;
use crate::{bind, raise_open_files_limit, release_freed_memory, stop};

/// How often the store is asked to prune what retention no longer keeps.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often the server says it is alive to its standbys (see `--takeover-after`).
const BEAT_EVERY: Duration = Duration::from_secs(1);

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

/// A started app server: what [`stop`] takes down, in order.
struct Started {
    state: AppState,
    cluster: Workers,
    store: Store,
    writer: WriterThread,
    metrics: Metrics,
    /// The store's periodic pruning and heartbeat, and the sessions' expiry.
    chores: [JoinHandle<()>; 3],
}

/// The app listener of a standby, open before it takes over (see [`crate::standby`]).
struct StandingBy {
    switch: Switch,
    serving: JoinHandle<()>,
}

/// Serves the app until SIGTERM or Ctrl-C, then stops gracefully (see [`stop`]).
pub async fn serve_app(args: Args) -> Result<(), StartError> {
    let grace = Args::seconds(args.shutdown_grace, "--shutdown-grace")?;
    let cookies = CookiePolicy::new(args.public_url.as_deref(), &args.trusted_proxies)
        .map_err(StartError::Flag)?;
    let addr = app_addr(&args)?;
    // Where the servers of one database reach this one (none without a database).
    let advertised = match args.database {
        Some(_) => Some(args.advertise_url(addr)?),
        None => None,
    };
    let hosts = allowed_hosts(&args, addr, advertised.as_deref());
    let (stop_serving, _) = tokio::sync::watch::channel(false);
    let standing_by = match &args.database {
        Some(url) if args.standby => {
            let switch = Switch::new(follow_writer(url)?, cookies.clone());
            let router = switch.router(hosts.clone());
            let listener = bind(addr).await?;
            tracing::info!(
                "standing by on http://{addr}: forwarding to the server that writes the database"
            );
            let serving = tokio::spawn(serve(
                "app",
                listener,
                router,
                connection_limits(&args),
                stopped(&stop_serving),
            ));
            Some(StandingBy { switch, serving })
        }
        _ => None,
    };
    let Some(started) = start(&args).await? else {
        stop_serving.send_replace(true);
        if let Some(standing_by) = standing_by {
            let _ = standing_by.serving.await;
        }
        tracing::info!("stopped while standing by");
        return Ok(());
    };
    let servers = listen(&args, &started, cookies, hosts, standing_by, &stop_serving).await?;
    let store = started.store.clone();
    if let Some(advertised) = &advertised {
        // Now that it listens: the standbys forward to it from here on.
        store.announce(advertised);
    }
    tokio::select! {
        () = stop::requested(grace) => {
            stop(started, grace, stop_serving, servers).await;
            Ok(())
        }
        () = store.lost() => {
            // Its results could not be recorded: the server that took over runs them again.
            stop(started, Duration::ZERO, stop_serving, servers).await;
            Err(StartError::Lost)
        }
    }
}

/// Opens the record, starts the cluster and the sessions, and runs again what had not ended.
/// `None`: a standby was asked to stop before it took over.
async fn start(args: &Args) -> Result<Option<Started>, StartError> {
    let dashboard_url = args.dashboard_url()?;
    let time_limit = Args::seconds(args.task_time_limit, "--task-time-limit")?;
    let mut leptos_options = get_configuration(None)?.leptos_options;
    leptos_options.site_addr = app_addr(args)?;
    raise_open_files_limit();
    let metrics = Metrics::install()?;
    let (store, writer, saved, next_task) = match &args.database {
        Some(url) if args.standby => {
            let silent_after = Args::seconds(args.takeover_after, "--takeover-after")?;
            if silent_after < BEAT_EVERY * 3 {
                return Err(StartError::Flag(format!(
                    "--takeover-after must be at least {} seconds (got {}): the server beats every second, and a beat may be late",
                    (BEAT_EVERY * 3).as_secs(),
                    args.takeover_after
                )));
            }
            tokio::select! {
                opened = Store::stand_by(url, retention(args)?, silent_after) => opened?,
                () = stop::signal() => return Ok(None),
            }
        }
        Some(url) => Store::connect(url, retention(args)?).await?,
        None => Store::open(&args.data_dir, tasks::FIRST_RELEASE, retention(args)?)?,
    };
    let pruning = tokio::spawn(prune_every(store.clone(), PRUNE_EVERY));
    let beating = tokio::spawn(beat_every(store.clone(), BEAT_EVERY));
    let cluster = start_cluster(args, time_limit, leptos_options.site_addr.port()).await?;
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
        record = %match &args.database {
            Some(_) => "the PostgreSQL database".to_owned(),
            None => args.data_dir.display().to_string(),
        },
        "session records loaded"
    );
    let expiry = tokio::spawn(
        sessions
            .clone()
            .expire_every(Duration::from_secs(2), release_freed_memory),
    );
    let (open_batches, last_batch) = store.open_batches().await?;
    let state = AppState {
        leptos_options,
        cluster: cluster.scheduler().client(),
        sessions,
        streams: StreamLimits::new(args.max_streams_per_session, args.max_streams),
        shutdown: Shutdown::default(),
        dashboard_url,
        idempotency: Default::default(),
        batches: Arc::new(Batches::new(
            BatchConfig {
                max_members: args.max_batch,
                max_open_per_owner: args.max_open_batches,
            },
            last_batch,
        )),
    };
    let rerun = rerun
        .into_iter()
        .map(|(session, task)| (Watcher::Session(session), task))
        .collect();
    runner::rerun(&state, rerun).await;
    if !open_batches.is_empty() {
        tracing::info!(
            batches = open_batches.len(),
            "going on with the open batches"
        );
    }
    state.batches.resume(&state, open_batches).await;
    Ok(Some(Started {
        state,
        cluster,
        store,
        writer,
        metrics,
        chores: [pruning, beating, expiry],
    }))
}

/// Where the app listens: `--addr`, else the Leptos configuration's address.
fn app_addr(args: &Args) -> Result<SocketAddr, StartError> {
    Ok(match args.addr {
        Some(addr) => addr,
        None => get_configuration(None)?.leptos_options.site_addr,
    })
}

/// The host names the listeners answer to: the flags', the public URL's, the listen addresses
/// and the `advertised` URL's (the one the other servers forward to).
fn allowed_hosts(args: &Args, addr: SocketAddr, advertised: Option<&str>) -> AllowedHosts {
    let public_host = args.public_url.as_deref().and_then(url_host);
    AllowedHosts::new(
        args.allowed_hosts
            .iter()
            .map(String::as_str)
            .chain(public_host)
            .chain(advertised.and_then(url_host)),
        [addr, args.dashboard_addr],
    )
}

fn connection_limits(args: &Args) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        max_connections: args.max_connections,
        drain: Duration::from_secs(2),
    }
}

/// Resolves once `stop` says so.
fn stopped(stop: &tokio::sync::watch::Sender<bool>) -> impl Future<Output = ()> + use<> {
    let mut serving = stop.subscribe();
    async move {
        let _ = serving.wait_for(|stop| *stop).await;
    }
}

/// What the record keeps, from the flags.
fn retention(args: &Args) -> Result<Retention, StartError> {
    let max_age = Duration::try_from_secs_f64(args.retention_days * 86_400.0).map_err(|_| {
        StartError::Days {
            flag: "--retention-days",
            value: args.retention_days,
        }
    })?;
    Ok(Retention {
        max_age: Some(max_age),
        per_owner: args.max_history_per_owner.max(1),
        terminal_lines: args.terminal_lines,
        ..Retention::default()
    })
}

/// Asks the store to prune every `period` (the writer also prunes at start).
async fn prune_every(store: Store, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        if let Err(error) = store.prune().await {
            tracing::error!(%error, "could not prune old tasks");
        }
    }
}

/// Tells the store that this server is alive every `period`, from this runtime: a server whose
/// runtime is stuck stops beating, and its standby takes over.
async fn beat_every(store: Store, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        store.beat();
    }
}

/// The embedded workers, or a NATS cluster's (`--cluster`), named after this server's port
/// unless `--server-id` names it.
async fn start_cluster(
    args: &Args,
    time_limit: Duration,
    port: u16,
) -> Result<Workers, StartError> {
    let config = ClusterConfig {
        max_output_bytes: args.max_output_bytes,
        workers: args.workers,
        queue_capacity: args.queue_capacity,
        task_time_limit: (!time_limit.is_zero()).then_some(time_limit),
        max_queued_per_submitter: args.max_queued_per_session,
        max_running_per_submitter: args.max_running_per_session,
        ..ClusterConfig::default()
    };
    let registry = tasks::registry();
    Ok(match &args.cluster {
        None => Workers::Embedded(EmbeddedCluster::start(config, registry)?),
        Some(url) => {
            let server = args
                .server_id
                .clone()
                .unwrap_or_else(|| token(&format!("{}-{port}", host_name())));
            let nats = NatsConfig {
                in_flight_per_thread: args.in_flight_per_thread,
                max_in_flight: args.max_in_flight,
                result_grace: Args::seconds(args.result_grace, "--result-grace")?,
                ..NatsConfig::new(url.clone(), args.nats.nats_prefix.clone(), server)
            };
            Workers::Nats(NatsCluster::connect(nats, config, registry).await?)
        }
    })
}

/// Opens the app's listener (with this process's ops endpoints when the workers are NATS's),
/// or has a standby's serve this app from now on, and, with embedded workers, opens the
/// dashboard's; they serve until `stop_serving` says so.
async fn listen(
    args: &Args,
    started: &Started,
    cookies: CookiePolicy,
    hosts: AllowedHosts,
    standing_by: Option<StandingBy>,
    stop_serving: &tokio::sync::watch::Sender<bool>,
) -> Result<JoinHandle<()>, StartError> {
    let Started {
        state,
        cluster,
        metrics,
        ..
    } = started;
    let (addr, dashboard_addr) = (state.leptos_options.site_addr, args.dashboard_addr);
    let policy = Arc::new(Policy::app(
        state.dashboard_url.status(),
        &state.leptos_options,
    ));
    let app = app_router(state, hosts.clone(), cookies, policy);
    let ops = || {
        OpsState::new(
            state.cluster.clone(),
            metrics.clone(),
            Some(app_figures(state)),
        )
    };
    // With NATS workers the dashboard is the cluster's (`offload cluster` serves it), but this
    // process's own figures and health are served here, on the app's listener.
    let (app, dashboard) = match cluster {
        Workers::Embedded(_) => {
            let batches = state.batches.clone();
            let feed = DashboardFeed::start(
                state.cluster.clone(),
                BatchBars::new(move || batches.bars()),
                Duration::from_secs(1),
                args.profiler,
            );
            let dashboard = DashboardState::new(
                state.leptos_options.clone(),
                state.cluster.clone(),
                feed,
                metrics.clone(),
                Some(app_figures(state)),
            );
            let listener = bind(dashboard_addr).await?;
            let health = health_router(ops(), hosts.clone());
            (
                app.merge(health),
                Some((listener, dashboard_router(&dashboard, hosts))),
            )
        }
        Workers::Nats(_) => (app.merge(ops_router(ops(), hosts)), None),
    };
    let limits = connection_limits(args);
    let serving_app = match standing_by {
        Some(StandingBy { switch, serving }) => {
            switch.serve_own(app);
            serving
        }
        None => {
            let listener = bind(addr).await?;
            tokio::spawn(serve("app", listener, app, limits, stopped(stop_serving)))
        }
    };
    tracing::info!("Offload is serving on http://{addr}");
    if dashboard.is_some() {
        tracing::info!("the cluster dashboard is on http://{dashboard_addr}/status");
    }
    let dashboard_stopped = stopped(stop_serving);
    Ok(tokio::spawn(async move {
        let dashboard = async {
            if let Some((listener, router)) = dashboard {
                serve("dashboard", listener, router, limits, dashboard_stopped).await;
            }
        };
        let (_, ()) = tokio::join!(serving_app, dashboard);
    }))
}

/// The graceful stop: pages are told and submissions refused at once; the listeners keep
/// answering (503) while running tasks get their `grace`; then everything recorded is written
/// before the process ends.
async fn stop(
    started: Started,
    grace: Duration,
    stop_serving: tokio::sync::watch::Sender<bool>,
    servers: JoinHandle<()>,
) {
    let Started {
        state,
        cluster,
        store,
        writer,
        chores,
        ..
    } = started;
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "stopping: waiting for running tasks"
    );
    state.shutdown.begin();
    cluster.scheduler().drain();
    if !cluster.scheduler().wait_idle(grace).await {
        tracing::info!("tasks still running: they will run again after the next start");
    }
    stop_serving.send_replace(true);
    let _ = servers.await;
    chores.iter().for_each(JoinHandle::abort);
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
    if tokio::time::timeout(Duration::from_secs(1), joined)
        .await
        .is_err()
    {
        tracing::info!("left the session database's writer to the exit");
    }
    tracing::info!("stopped");
}

/// The app's own figures, for the ops endpoints: sessions held, live streams open and the
/// task database.
fn app_figures(state: &AppState) -> AppFigures {
    let (sessions, streams) = (state.sessions.clone(), state.streams.clone());
    let store = state.sessions.store().clone();
    let probe: RecordProbe = Arc::new(move || {
        let store = store.clone();
        Box::pin(async move { store.reachable().await.map_err(|e| e.to_string()) })
    });
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
    .with_record(probe)
}
