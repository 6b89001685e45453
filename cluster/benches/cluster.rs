//! `cargo bench -p cluster`: the cluster's figures against the seed's Dask cluster.
//!
//! Prints the submit→result round trip of fibonacci(0) (p50, p99), the throughput of 100,000
//! tiny tasks on 4 workers, and fibonacci(32) in a worker. A plain binary rather than
//! criterion: the figures to report are these three, in these units.

use std::time::{Duration, Instant};

use cluster::{ClusterConfig, EmbeddedCluster, Submitter, tasks::Fibonacci};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let cluster = EmbeddedCluster::start(ClusterConfig {
            workers: 4,
            queue_capacity: 200_000,
            // One submitter stands for the seed's one Dask client: admission's per-session
            // caps would otherwise hold it to 100 waiting and 3 running.
            max_queued_per_submitter: 200_000,
            max_running_per_submitter: Some(4),
            ..ClusterConfig::default()
        });
        let client = cluster.client();
        let who = Submitter::new("bench");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("offload cluster benchmark: 4 embedded workers, {cores} cores");

        // Round trip: one task at a time, like a user's click.
        let mut trips = Vec::new();
        for i in 0..5_200 {
            let start = Instant::now();
            let handle = client.submit::<Fibonacci>(0, &who).await.unwrap();
            handle.result().await.unwrap();
            if i >= 200 {
                trips.push(start.elapsed());
            }
        }
        trips.sort();
        println!(
            "round trip fibonacci(0), 5000 reps: p50 {:.1} µs, p99 {:.1} µs  (seed: 10,800 µs, 18,300 µs)",
            micros(percentile(&trips, 0.5)),
            micros(percentile(&trips, 0.99)),
        );

        // Throughput: submit everything, then collect everything.
        let mut runs = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let mut handles = Vec::with_capacity(100_000);
            for i in 0..100_000i64 {
                handles.push(client.submit::<Fibonacci>(i % 10, &who).await.unwrap());
            }
            for handle in handles {
                handle.result().await.unwrap();
            }
            runs.push(100_000.0 / start.elapsed().as_secs_f64());
        }
        runs.sort_by(f64::total_cmp);
        println!(
            "throughput, 100,000 tasks fibonacci(i mod 10), 5 runs: median {:.0} tasks/s (min {:.0}, max {:.0})  (seed: 882 tasks/s)",
            runs[2], runs[0], runs[4]
        );

        // fibonacci(32) in a worker: compute time as the worker measures it.
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
            "fibonacci(32) in a worker, 11 runs: median {:.2} ms (min {:.2})  (seed: 220 ms)",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3
        );
    });
}
