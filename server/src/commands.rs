//! The commands beside `offload serve`: `offload cluster` and `offload worker` (a NATS
//! cluster's workers and dashboard), and `offload token` (API tokens).

use std::time::Duration;

use app::ssr::AllowedHosts;
use cluster::nats::{LocalNats, NatsObserver, NatsWorker, WorkerConfig, redacted};
use dashboard::ssr::{BatchBars, DashboardFeed, DashboardState, Metrics, OpsState};
use leptos::config::get_configuration;

use crate::args::{Args, ClusterArgs, StartError, TokenAction, TokenArgs, WorkerArgs};
use crate::routes::{dashboard_router, ops_router};
use crate::serve::{ConnectionLimits, serve};
use crate::{bind, stop};

/// `offload cluster`: a local NATS unless one is named, this process's workers, and the
/// cluster's dashboard, which shows every worker and every app server of the cluster.
pub(crate) async fn run_cluster(args: ClusterArgs) -> Result<(), StartError> {
    let grace = Args::seconds(args.shutdown_grace, "--shutdown-grace")?;
    let prefix = args.nats_names.nats_prefix.clone();
    let (local, url) = nats_of(&args).await?;
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
        DashboardFeed::start(
            observer.client(),
            BatchBars::none(),
            Duration::from_secs(1),
            args.profiler,
        ),
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

    stop::requested(grace).await;
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

/// The NATS the cluster runs on: the one `--nats` names, or one started here (returned, to
/// be stopped with the cluster); and its URL.
async fn nats_of(args: &ClusterArgs) -> Result<(Option<LocalNats>, String), StartError> {
    if let Some(url) = &args.nats {
        return Ok((None, url.clone()));
    }
    let store = args.data_dir.join("nats");
    std::fs::create_dir_all(&store).map_err(|source| StartError::DataDir {
        path: store.clone(),
        source,
    })?;
    let local = LocalNats::start(&args.nats_server, args.nats_port, &store).await?;
    if let Some(pid) = local.pid() {
        stop::along_with_me(pid);
    }
    let url = local.url();
    Ok((Some(local), url))
}

/// `offload worker`: runs tasks for a NATS cluster until stopped.
pub(crate) async fn run_worker(args: WorkerArgs) -> Result<(), StartError> {
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
    stop::requested(grace).await;
    worker.stop(grace).await;
    let _ = stop_serving.send(true);
    if let Some(ops) = ops {
        let _ = ops.await;
    }
    Ok(())
}

/// `offload token …`: exits 0 when done, 2 when refused (a bad or taken name, no such
/// token), 1 when the database fails.
pub(crate) async fn manage_tokens(args: TokenArgs) -> std::process::ExitCode {
    use app::ssr::tokens::{TokenError, Tokens};
    let now = cluster::now_ms();
    let opened = match &args.database {
        Some(url) => Tokens::connect(url).await,
        None => Tokens::open(&args.data_dir, tasks::FIRST_RELEASE),
    };
    let done = async {
        let mut tokens = opened?;
        match args.action {
            TokenAction::Create { names } => {
                for name in &names {
                    println!("{}", tokens.create(name, now).await?);
                }
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    eprintln!(
                        "keep the token now: it is not shown again (send it as \
                         `Authorization: Bearer <token>`)"
                    );
                }
            }
            TokenAction::List => {
                for token in tokens.list().await? {
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
                tokens.revoke(&name, now).await?;
                eprintln!("token {name:?} revoked");
            }
        }
        Ok::<_, TokenError>(())
    }
    .await;
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
