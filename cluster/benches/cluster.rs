//! `cargo bench -p cluster` (`make bench`): the cluster's figures against the seed's Dask
//! cluster, for the embedded workers and for NATS workers in two `offload worker` processes.
//!
//! Prints the submit→result round trip of fibonacci(0) (p50, p99), the throughput of tiny
//! tasks on 4 worker threads, and fibonacci(32) in a worker. A plain binary rather than
//! criterion: the figures to report are these, in these units.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::nats::{LocalNats, NatsCluster, NatsConfig};
use cluster::{Client, ClusterConfig, EmbeddedCluster, Registry, Submitter, tasks::Fibonacci};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One submitter stands for the seed's one Dask client: admission's per-session caps would
/// otherwise hold it to 100 waiting and 3 running.
fn config() -> ClusterConfig {
    ClusterConfig {
        workers: 4,
        queue_capacity: 200_000,
        max_queued_per_submitter: 200_000,
        max_running_per_submitter: Some(1_000),
        ..ClusterConfig::default()
    }
}

async fn measure(client: &Client, label: &str, trips: usize, tiny: i64, runs: usize) {
    let who = Submitter::new("bench");
    // Round trip: one task at a time, like a user's click.
    let mut times = Vec::new();
    for i in 0..trips + 200 {
        let start = Instant::now();
        let handle = client.submit::<Fibonacci>(0, &who).await.unwrap();
        handle.result().await.unwrap();
        if i >= 200 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    println!(
        "{label}: round trip fibonacci(0), {trips} reps: p50 {:.1} µs, p99 {:.1} µs  (seed: 10,800 µs, 18,300 µs)",
        micros(percentile(&times, 0.5)),
        micros(percentile(&times, 0.99)),
    );

    // Throughput: submit everything, then collect everything.
    let mut rates = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let mut handles = Vec::with_capacity(tiny as usize);
        for i in 0..tiny {
            handles.push(client.submit::<Fibonacci>(i % 10, &who).await.unwrap());
        }
        for handle in handles {
            handle.result().await.unwrap();
        }
        rates.push(tiny as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{label}: throughput, {tiny} tasks fibonacci(i mod 10), {runs} runs: median {:.0} tasks/s (min {:.0}, max {:.0})  (seed: 882 tasks/s)",
        rates[runs / 2],
        rates[0],
        rates[runs - 1]
    );

    // fibonacci(32) in a worker, submit to result.
    let mut times = Vec::new();
    for _ in 0..11 {
        let start = Instant::now();
        let value = client
            .submit::<Fibonacci>(32, &who)
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
        assert_eq!(value, 2_178_309);
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "{label}: fibonacci(32) in a worker, 11 runs: median {:.2} ms (min {:.2})  (seed: 220 ms)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}

fn workspace(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A worker process, killed when dropped.
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn nats(quick: bool) {
    let server_bin = std::env::var_os("OFFLOAD_NATS_SERVER")
        .map_or_else(|| workspace("target/nats/bin/nats-server"), PathBuf::from);
    let offload = workspace("target/release/offload");
    assert!(
        offload.exists(),
        "{} is missing: run `make bench` (it builds it)",
        offload.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let store = std::env::temp_dir().join(format!("offload-bench-nats-{}", std::process::id()));
    let local = LocalNats::start(&server_bin, port, &store)
        .await
        .expect("nats-server (make nats)");
    let _workers: Vec<WorkerProcess> = (0..2)
        .map(|_| {
            WorkerProcess(
                Command::new(&offload)
                    .args(["worker", "--cluster", &local.url(), "--threads", "2"])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("offload worker"),
            )
        })
        .collect();
    for per_thread in [1, 4] {
        let cluster = NatsCluster::connect(
            NatsConfig {
                url: local.url(),
                prefix: "offload".into(),
                server: format!("bench-{per_thread}"),
                in_flight_per_thread: per_thread,
            },
            config(),
            Registry::default(),
        )
        .await
        .expect("connecting to NATS");
        let client = cluster.scheduler().client();
        while client.workers() < 4 * per_thread {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let label = format!("nats, 2 processes × 2 threads, {per_thread} in flight per thread");
        let (trips, tiny, runs) = if quick {
            (100, 1_000, 1)
        } else {
            (2_000, 20_000, 3)
        };
        measure(&client, &label, trips, tiny, runs).await;
    }
    local.stop().await;
    let _ = std::fs::remove_dir_all(store);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench -p cluster --bench cluster -- --quick`: a second of each, to check it runs.
    let quick = std::env::args().any(|a| a == "--quick");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("offload cluster benchmark, {cores} cores");
    {
        let cluster = EmbeddedCluster::start(config());
        let (trips, tiny, runs) = if quick {
            (100, 1_000, 1)
        } else {
            (5_000, 100_000, 5)
        };
        measure(&cluster.client(), "embedded, 4 threads", trips, tiny, runs).await;
    }
    nats(quick).await;
}
