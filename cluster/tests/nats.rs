//! The NATS backend against a real `nats-server` on a free port: the same client API as the
//! embedded cluster, with workers that pull from JetStream.

use std::path::PathBuf;
use std::time::Duration;

use cluster::nats::{
    LocalNats, NatsCluster, NatsConfig, NatsWorker, TypeAd, WorkerConfig, WorkerInfo,
};
use cluster::{ClusterConfig, EventKind, ProcessStats, Submitter, TaskError, WorkerStats};
use futures::StreamExt;
use tasks::Fibonacci;

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
    app_with(NatsConfig::new(url, "t", "app"), config).await
}

async fn app_with(nats: NatsConfig, config: ClusterConfig) -> NatsCluster {
    NatsCluster::connect(nats, config, tasks::registry())
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
        tasks::registry(),
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
    assert_eq!(client.backend(), cluster::Backend::Nats);
    let worker = worker(&server.url(), 2).await;
    wait_for_workers(&client, 2).await;

    let me = Submitter::new("me");
    let handles: Vec<_> = futures::future::join_all(
        (0..50).map(|n| client.submit::<Fibonacci>(Fibonacci::n(n % 20), &me)),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    for (n, handle) in (0..50).zip(handles) {
        let ended = handle.ended().await;
        assert_eq!(ended.outcome, Ok(fib(n % 20).into()));
        let ran = ended.ran.expect("a NATS worker says where it ran the task");
        assert!(ran.worker.starts_with(worker.name()), "{ran:?}");
        assert_eq!(ran.attempt, 1);
    }

    let long = client
        .submit::<Fibonacci>(Fibonacci::n(60), &me)
        .await
        .unwrap();
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
    let app = app(&nats.url(), config).await;
    let client = app.scheduler().client();
    wait_for_workers(&client, 4).await;
    let who = Submitter::new("flood");
    let mut handles = Vec::new();
    for i in 0..2_000_u64 {
        let n = i % 20;
        handles.push((
            n,
            client
                .submit::<Fibonacci>(Fibonacci::n(n as i64), &who)
                .await
                .unwrap(),
        ));
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

/// This process's OS threads.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// What a pretend worker process writes to: JetStream, and the workers' heartbeat bucket.
async fn pretend_workers(
    nats: &LocalNats,
) -> (
    async_nats::jetstream::Context,
    async_nats::jetstream::kv::Store,
) {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let kv = js.get_key_value("t_workers").await.unwrap();
    (js, kv)
}

/// A pretend worker process: it writes a heartbeat advertising `threads` threads under
/// `name`, and nothing else unless the test makes it.
async fn heartbeat(kv: &async_nats::jetstream::kv::Store, name: &str, threads: usize) {
    let types = TypeAd::all(&tasks::registry());
    let info = WorkerInfo {
        name: name.into(),
        host: "nowhere".into(),
        pid: 1,
        queue: TypeAd::queue(&types),
        types,
        threads: (0..threads).map(WorkerStats::idle).collect(),
        process: ProcessStats::default(),
        at_ms: cluster::now_ms(),
    };
    kv.put(name, serde_json::to_vec(&info).unwrap().into())
        .await
        .unwrap();
}

/// A pretend worker's hold on the work queue: the consumer every worker of the shipped
/// types shares.
async fn work_consumer(
    js: &async_nats::jetstream::Context,
) -> async_nats::jetstream::consumer::PullConsumer {
    let queue = TypeAd::queue(&TypeAd::all(&tasks::registry()));
    js.get_stream("t_work")
        .await
        .unwrap()
        .get_or_create_consumer(
            &format!("workers-{queue}"),
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some(format!("workers-{queue}")),
                filter_subject: format!("t.work.{queue}"),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                ack_wait: cluster::nats::ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

/// Takes the next work message and acks it, as a worker that then hangs would; returns the
/// tasks it carried as JSON.
async fn take_work(
    consumer: &async_nats::jetstream::consumer::PullConsumer,
) -> Vec<serde_json::Value> {
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let message = loop {
        if let Some(message) = batch.next().await {
            break message.unwrap();
        }
        batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    };
    message.ack().await.unwrap();
    serde_json::from_slice(&message.payload).unwrap()
}

/// A worker that takes a task, acks it and never answers: the task ends as lost at its
/// deadline (time limit + grace), its slot is free for the next task, and no thread of the
/// app server ever waited for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_worker_never_answers_ends_as_lost_and_frees_its_slot() {
    let store = tempfile::tempdir().unwrap();
    let nats = nats(&store).await;
    let config = ClusterConfig {
        task_time_limit: Some(Duration::from_millis(500)),
        ..ClusterConfig::default()
    };
    let app = app_with(
        NatsConfig {
            // One slot: the second task can only run if the first one's slot was freed.
            max_in_flight: 1,
            result_grace: Duration::from_millis(500),
            ..NatsConfig::new(nats.url(), "t", "app")
        },
        config,
    )
    .await;
    let client = app.scheduler().client();
    let (js, kv) = pretend_workers(&nats).await;
    heartbeat(&kv, "hangs", 1).await;
    wait_for_workers(&client, 1).await;
    let consumer = work_consumer(&js).await;
    let before = threads();

    let who = Submitter::new("u");
    let stuck = client
        .submit::<Fibonacci>(Fibonacci::n(25), &who)
        .await
        .unwrap();
    let id = stuck.id();
    let taken = take_work(&consumer).await;
    assert_eq!(taken[0]["task"], id.0);
    let mut events = client.events();
    let outcome = stuck.result().await;
    assert!(
        matches!(&outcome, Err(TaskError::Lost(m)) if m.contains("no worker answered")),
        "{outcome:?}"
    );
    assert!(threads() <= before, "no thread waited for the result");
    let stats = client.stats();
    assert_eq!((stats.totals.lost, stats.totals.running), (1, 0));
    // The dashboard hears of it as a failure, with the reason.
    let failed = loop {
        let event = events.recv().await.unwrap();
        if event.task == id {
            break event;
        }
    };
    assert!(
        matches!(failed.kind, EventKind::Failed { .. }),
        "{failed:?}"
    );

    // A real worker now: the one slot takes the next task.
    let worker = worker(&nats.url(), 1).await;
    let next = client
        .submit::<Fibonacci>(Fibonacci::n(20), &who)
        .await
        .unwrap();
    assert_eq!(next.result().await.unwrap(), 6765);

    worker.stop(Duration::from_secs(1)).await;
    drop(app);
    nats.stop().await;
}

/// A result that does not decode fails its task with the reason instead of leaving it to wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_does_not_decode_fails_its_task_with_the_reason() {
    let store = tempfile::tempdir().unwrap();
    let nats = nats(&store).await;
    let app = app(&nats.url(), ClusterConfig::default()).await;
    let client = app.scheduler().client();
    let (js, kv) = pretend_workers(&nats).await;
    heartbeat(&kv, "garbles", 1).await;
    wait_for_workers(&client, 1).await;
    let consumer = work_consumer(&js).await;

    let task = client
        .submit::<Fibonacci>(Fibonacci::n(10), &Submitter::new("u"))
        .await
        .unwrap();
    let taken = take_work(&consumer).await;
    // Its boot and task, but an outcome of the wrong shape and no worker name.
    let garbled = serde_json::json!([{
        "boot": taken[0]["boot"],
        "task": taken[0]["task"],
        "outcome": {"Maybe": 55},
    }]);
    js.publish(
        "t.results.app",
        serde_json::to_vec(&garbled).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let outcome = task.result().await;
    assert!(
        matches!(&outcome, Err(TaskError::Failed(m)) if m.contains("did not decode")),
        "{outcome:?}"
    );
    drop(app);
    nats.stop().await;
}

/// Workers advertising 100,000 threads open no more slots than the bound, and slots are
/// futures: a thousand tasks in flight cost the app server no thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_advertising_100_000_threads_cost_the_app_server_no_thread() {
    let store = tempfile::tempdir().unwrap();
    let nats = nats(&store).await;
    let config = ClusterConfig {
        queue_capacity: 10_000,
        max_queued_per_submitter: 10_000,
        max_running_per_submitter: Some(10_000),
        ..ClusterConfig::default()
    };
    let app = app(&nats.url(), config).await;
    let client = app.scheduler().client();
    let (_, kv) = pretend_workers(&nats).await;
    // A heartbeat must fit in a NATS message: 20 processes of 5,000 threads each.
    for i in 0..20 {
        heartbeat(&kv, &format!("huge-{i}"), 5_000).await;
    }
    wait_for_workers(&client, NatsConfig::MAX_IN_FLIGHT).await;
    assert_eq!(client.slots(), NatsConfig::MAX_IN_FLIGHT);
    let before = threads();

    // Nobody pulls: every slot fills and stays in flight.
    let who = Submitter::new("flood");
    let mut handles = Vec::new();
    for i in 0..2_000_i64 {
        handles.push(
            client
                .submit::<Fibonacci>(Fibonacci::n(i % 10), &who)
                .await
                .unwrap(),
        );
    }
    let mut events = client.events();
    while client.stats().totals.running < NatsConfig::MAX_IN_FLIGHT as u64 {
        let _ = events.recv().await;
    }
    let stats = client.stats();
    assert_eq!(stats.totals.running, NatsConfig::MAX_IN_FLIGHT as u64);
    assert_eq!(
        stats.totals.queued,
        2_000 - NatsConfig::MAX_IN_FLIGHT as u64
    );
    let during = threads();
    assert!(
        during <= before,
        "{during} threads with 1,024 tasks in flight, {before} before"
    );
    drop(handles);
    drop(app);
    nats.stop().await;
}

/// Two builds of one task type: the same name, another input.
mod echo {
    use cluster::{Task, TaskContext, TaskError};

    pub struct V1;
    #[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct One {
        pub x: u32,
    }
    impl Task for V1 {
        const NAME: &'static str = "echo";
        const TITLE: &'static str = "Echo";
        const DESCRIPTION: &'static str = "Its input.";
        type Input = One;
        type Output = u32;
        fn summary(_: &One, output: &u32) -> String {
            output.to_string()
        }
        fn run(input: One, _: &TaskContext<'_>) -> Result<u32, TaskError> {
            Ok(input.x)
        }
    }

    pub struct V2;
    #[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Two {
        pub x: u32,
        pub y: u32,
    }
    impl Task for V2 {
        const NAME: &'static str = "echo";
        const TITLE: &'static str = "Echo";
        const DESCRIPTION: &'static str = "Its input, another way.";
        type Input = Two;
        type Output = u32;
        fn summary(_: &Two, output: &u32) -> String {
            output.to_string()
        }
        fn run(input: Two, _: &TaskContext<'_>) -> Result<u32, TaskError> {
            Ok(input.x + input.y)
        }
    }
}

async fn worker_with(url: &str, registry: cluster::Registry) -> NatsWorker {
    NatsWorker::start(
        WorkerConfig {
            url: url.into(),
            prefix: "t".into(),
            threads: 1,
        },
        registry,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_goes_only_to_workers_that_run_its_type_with_the_same_schema() {
    let store = tempfile::tempdir().unwrap();
    let server = nats(&store).await;
    let url = server.url();
    let _plain = worker_with(&url, tasks::registry()).await;
    let app = NatsCluster::connect(
        NatsConfig::new(url.clone(), "t", "app"),
        ClusterConfig::default(),
        tasks::registry().register::<echo::V1>(),
    )
    .await
    .unwrap();
    let client = app.scheduler().client();
    let who = Submitter::new("u");
    let echo = |x| echo::One { x };

    // No worker runs echo: refused with the type's name, while fibonacci runs.
    wait_for_workers(&client, 1).await;
    let refused = client.submit::<echo::V1>(echo(1), &who).await.err();
    assert_eq!(
        refused,
        Some(cluster::SubmitError::NoWorker {
            task: "echo".into()
        })
    );
    let message = refused.unwrap().to_string();
    assert!(message.contains("no live worker runs echo"), "{message}");
    let fib10 = client
        .submit::<Fibonacci>(Fibonacci::n(10), &who)
        .await
        .unwrap();
    assert_eq!(fib10.result().await, Ok(55));

    // A worker with another build of echo does not count, and gets none of them.
    let _other = worker_with(&url, tasks::registry().register::<echo::V2>()).await;
    wait_for_workers(&client, 2).await;
    assert!(matches!(
        client.submit::<echo::V1>(echo(1), &who).await.err(),
        Some(cluster::SubmitError::NoWorker { .. })
    ));

    // A worker with this build's echo takes every echo task; the other worker would have
    // failed them (another schema) or answered x + y.
    let _same = worker_with(&url, tasks::registry().register::<echo::V1>()).await;
    wait_for_workers(&client, 3).await;
    let handles =
        futures::future::join_all((0..20).map(|x| client.submit::<echo::V1>(echo(x), &who))).await;
    for (x, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.unwrap().result().await, Ok(x as u32));
    }
    // And fibonacci still runs on any of the three.
    let handles = futures::future::join_all(
        (0..30).map(|n| client.submit::<Fibonacci>(Fibonacci::n(n % 15), &who)),
    )
    .await;
    for (n, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.unwrap().result().await, Ok(fib((n % 15) as u64)));
    }
}

/// Bytes that do not compress: an output as big as a large picture.
mod noise {
    use cluster::{Binary, Task, TaskContext, TaskError};

    pub struct Noise;
    #[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Size {
        pub bytes: u32,
        pub seed: u32,
    }
    #[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub struct Out {
        pub data: Binary,
    }
    pub fn bytes(size: &Size) -> Vec<u8> {
        let mut x = u64::from(size.seed) | 1;
        (0..size.bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }
    impl Task for Noise {
        const NAME: &'static str = "noise";
        const TITLE: &'static str = "Noise";
        const DESCRIPTION: &'static str = "Random bytes.";
        type Input = Size;
        type Output = Out;
        fn summary(_: &Size, out: &Out) -> String {
            out.data.bytes().len().to_string()
        }
        fn run(size: Size, _: &TaskContext<'_>) -> Result<Out, TaskError> {
            Ok(Out {
                data: Binary::new("application/octet-stream", bytes(&size)),
            })
        }
    }
}

/// A worker and an app server that run `noise` too, the worker heard of.
async fn noise_cluster(url: &str) -> (NatsWorker, NatsCluster) {
    let registry = || tasks::registry().register::<noise::Noise>();
    let worker = worker_with(url, registry()).await;
    let app = NatsCluster::connect(
        NatsConfig::new(url, "t", "app"),
        ClusterConfig::default(),
        registry(),
    )
    .await
    .unwrap();
    wait_for_workers(&app.scheduler().client(), 1).await;
    (worker, app)
}

/// NATS refuses a message over its `max_payload` (1 MB unless configured): the local server
/// is started with 8 MB, so results of megabytes arrive whole, several at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_bigger_than_natss_default_message_arrive_whole() {
    let store = tempfile::tempdir().unwrap();
    let server = nats(&store).await;
    let url = server.url();
    let (_worker, app) = noise_cluster(&url).await;
    let client = app.scheduler().client();
    let who = Submitter::new("u");
    let sizes: Vec<_> = (1..=3)
        .map(|seed| noise::Size {
            bytes: 2_500_000,
            seed,
        })
        .collect();
    let handles = futures::future::join_all(
        sizes
            .iter()
            .map(|size| client.submit::<noise::Noise>(noise::Size { ..*size }, &who)),
    )
    .await;
    for (size, handle) in sizes.iter().zip(handles) {
        let out = handle.unwrap().result().await.unwrap();
        assert!(out.data.bytes() == noise::bytes(size), "seed {}", size.seed);
    }
    drop(app);
    server.stop().await;
}

/// A NATS server of someone else's, with the default 1 MB messages: a bigger result fails
/// with a message that says what to raise, and the worker carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_bigger_than_the_servers_messages_fails_and_says_why() {
    let store = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = tokio::process::Command::new(nats_server())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server (make nats) must be installed");
    let url = format!("nats://127.0.0.1:{port}");
    // Both wait for the server to accept connections.
    let (_worker, app) = noise_cluster(&url).await;
    let client = app.scheduler().client();
    let who = Submitter::new("u");
    let big = client
        .submit::<noise::Noise>(
            noise::Size {
                bytes: 2_000_000,
                seed: 1,
            },
            &who,
        )
        .await
        .unwrap();
    match big.result().await {
        Err(TaskError::Failed(message)) => assert!(
            message.contains("more than the") && message.contains("max_payload"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    let small = client
        .submit::<noise::Noise>(
            noise::Size {
                bytes: 1000,
                seed: 2,
            },
            &who,
        )
        .await
        .unwrap();
    assert_eq!(small.result().await.unwrap().data.bytes().len(), 1000);
    drop(app);
    let _ = server.kill().await;
}
