//! The NATS backend against a real `nats-server` on a free port: the same client API as the
//! embedded cluster, with workers that pull from JetStream.

use std::path::PathBuf;
use std::time::Duration;

use cluster::nats::{LocalNats, NatsCluster, NatsConfig, NatsWorker, WorkerConfig};
use cluster::{ClusterConfig, Registry, Submitter, TaskError, tasks::Fibonacci};

/// The pinned server `make nats` installs; a missing one fails the test.
fn nats_server() -> PathBuf {
    std::env::var_os("OFFLOAD_NATS_SERVER").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/nats/bin/nats-server"),
        PathBuf::from,
    )
}

fn fib(n: u64) -> u64 {
    (0..n).fold((0, 1), |(a, b), _| (b, a + b)).0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn nats(store: &tempfile::TempDir) -> LocalNats {
    LocalNats::start(&nats_server(), free_port(), store.path())
        .await
        .expect("nats-server (make nats) must be installed")
}

async fn app(url: &str, config: ClusterConfig) -> NatsCluster {
    app_with(url, config, 1).await
}

async fn app_with(url: &str, config: ClusterConfig, in_flight_per_thread: usize) -> NatsCluster {
    NatsCluster::connect(
        NatsConfig {
            url: url.into(),
            prefix: "t".into(),
            server: "app".into(),
            in_flight_per_thread,
        },
        config,
        Registry::default(),
    )
    .await
    .unwrap()
}

async fn worker(url: &str, threads: usize) -> NatsWorker {
    NatsWorker::start(
        WorkerConfig {
            url: url.into(),
            prefix: "t".into(),
            threads,
        },
        Registry::default(),
    )
    .await
    .unwrap()
}

async fn wait_for_workers(client: &cluster::Client, n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.workers() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the workers' heartbeats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_on_nats_workers_with_progress_and_cancel() {
    let store = tempfile::tempdir().unwrap();
    let server = nats(&store).await;
    let app = app(&server.url(), ClusterConfig::default()).await;
    let client = app.scheduler().client();
    assert_eq!(client.backend_name(), "nats");
    let worker = worker(&server.url(), 2).await;
    wait_for_workers(&client, 2).await;

    let me = Submitter::new("me");
    let handles: Vec<_> =
        futures::future::join_all((0..50).map(|n| client.submit::<Fibonacci>(n % 20, &me)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    for (n, handle) in (0..50).zip(handles) {
        assert_eq!(handle.result().await.unwrap(), fib(n % 20));
    }

    let long = client.submit::<Fibonacci>(60, &me).await.unwrap();
    let mut progress = long.progress();
    progress.changed().await.unwrap();
    client.cancel(long.id()).await.unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(5), long.result()).await;
    assert_eq!(cancelled.unwrap().unwrap_err(), TaskError::Cancelled);

    worker.stop(Duration::from_secs(1)).await;
    drop(app);
    server.stop().await;
}

/// With many tasks in flight, quick tasks handed over together travel in one message: far
/// fewer work messages than tasks, and every task still answered with its own result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_quick_tasks_travels_in_batches() {
    let store = tempfile::tempdir().unwrap();
    let nats = nats(&store).await;
    // One worker process per test process: workers are named after their process.
    let worker = worker(&nats.url(), 4).await;
    let config = ClusterConfig {
        queue_capacity: 10_000,
        max_queued_per_submitter: 10_000,
        max_running_per_submitter: Some(1_000),
        ..ClusterConfig::default()
    };
    let app = app_with(&nats.url(), config, 32).await;
    let client = app.scheduler().client();
    wait_for_workers(&client, 4 * 32).await;
    let who = Submitter::new("flood");
    let mut handles = Vec::new();
    for i in 0..2_000_u64 {
        let n = i % 20;
        handles.push((n, client.submit::<Fibonacci>(n as i64, &who).await.unwrap()));
    }
    for (n, handle) in handles {
        assert_eq!(handle.result().await.unwrap(), fib(n));
    }
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let messages = js
        .get_stream("t_work")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .last_sequence;
    assert!(
        messages <= 1_000,
        "{messages} work messages carried 2,000 quick tasks"
    );
    drop(app);
    worker.stop(Duration::from_secs(2)).await;
    nats.stop().await;
}
