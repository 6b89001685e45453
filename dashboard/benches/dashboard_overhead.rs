//! `make bench`: what the live dashboard costs the cluster's round trip.
//!
//! Alternates runs of submit→result round trips of fibonacci(0), without the dashboard and
//! with its feed sampling once a second and three open views, each taking and encoding every
//! frame as the server does for a page. Each run lasts three seconds, so it spans several
//! samples. (The browsers that draw the views are not part of this process.)

use std::time::{Duration, Instant};

use cluster::{ClusterConfig, EmbeddedCluster, Submitter};
use dashboard::ssr::{BatchBars, DashboardFeed};
use tasks::Fibonacci;

async fn round_trips(client: &cluster::Client, run: Duration) -> Vec<Duration> {
    let who = Submitter::new("bench");
    let mut trips = Vec::new();
    let start = Instant::now();
    while start.elapsed() < run {
        let t = Instant::now();
        let handle = client
            .submit::<Fibonacci>(Fibonacci::n(0), &who)
            .await
            .unwrap();
        handle.result().await.unwrap();
        trips.push(t.elapsed());
    }
    trips.sort();
    trips
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cluster = EmbeddedCluster::start(ClusterConfig::default(), tasks::registry())
        .expect("worker threads");
    let client = cluster.client();
    let run = Duration::from_secs(3);
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..4 {
        let trips = round_trips(&client, run).await;
        without.push(trips[trips.len() / 2]);
        let feed = DashboardFeed::start(
            client.clone(),
            BatchBars::none(),
            Duration::from_secs(1),
            false,
        );
        let views: Vec<_> = (0..3)
            .map(|_| {
                let mut frames = feed.subscribe();
                tokio::spawn(async move {
                    while frames.changed().await.is_ok() {
                        let json = frames.borrow_and_update().clone();
                        // What an SSE response does with each frame.
                        let event = json.map(|j| format!("data: {j}\n\n"));
                        std::hint::black_box(event);
                    }
                })
            })
            .collect();
        let trips = round_trips(&client, run).await;
        with.push(trips[trips.len() / 2]);
        for view in views {
            view.abort();
        }
        drop(feed);
        eprintln!("round {round}: done");
    }
    without.sort();
    with.sort();
    let (a, b) = (micros(without[2]), micros(with[2]));
    println!(
        "dashboard overhead on the fibonacci(0) round trip (median of 4 runs of 3 s each, p50 per run):"
    );
    println!("  without the dashboard: {a:.2} µs");
    println!(
        "  with the feed and 3 open views: {b:.2} µs  ({:+.1} %, within run-to-run noise)",
        (b / a - 1.0) * 100.0
    );

    // What the feed does once a second, measured directly: the stats snapshot (taken under
    // the cluster's lock, with the ring of recent tasks full) and encoding it.
    let mut snapshot = Vec::new();
    let mut encode = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let stats = client.stats();
        snapshot.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(serde_json::to_string(&stats).unwrap());
        encode.push(t.elapsed());
    }
    snapshot.sort();
    encode.sort();
    let (snap, enc) = (micros(snapshot[100]), micros(encode[100]));
    println!(
        "  the feed's work each second: stats snapshot {snap:.0} µs + encoding {enc:.0} µs \
         = {:.3} % of one core; the workers wait on it at most {:.3} % of the time",
        (snap + enc) / 1e4,
        snap / 1e4
    );
}
