//! Issue 28's acceptance: a worker sends results to their app server as core requests, and
//! stores them in the results stream only when the server does not take them (stopped, or cut
//! off from NATS); every result arrives once either way, and every message is counted. The
//! release binary, a real nats-server on loopback, real SIGSTOPs.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    Nats, Proc, Server, Session, eventually, get, signal, submit_until_it_progresses,
    wait_for_threads, worker_with_ops,
};
use serde_json::Value;

/// One cluster at a time: on two cores a second one would slow the first past its bounds.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sessions of a flood, each submitting up to its queue's cap.
const SESSIONS: usize = 50;
const EACH: usize = 100;

/// A worker of two threads with its metrics on a free port, and an app server, on `nats`:
/// the worker, its `/metrics`, and the server once it counts the worker's threads.
async fn cluster(nats: &Nats) -> (Proc, String, Server) {
    let (worker, port) = worker_with_ops(nats, 2, &[]);
    let server = Server::start(&["--cluster", &nats.url()]).await;
    wait_for_threads(&server, 2).await;
    (worker, format!("http://127.0.0.1:{port}/metrics"), server)
}

/// The value of `sample` (its name and labels as `/metrics` prints them) at `url`.
async fn metric(url: &str, sample: &str) -> f64 {
    let (status, scrape) = get(url.to_owned()).await;
    assert_eq!(status, 200, "{scrape}");
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in {scrape}"))
}

/// Each session submits `each` fibonacci(10), one after the other, all sessions at once;
/// `accepted` counts the submissions as they are accepted. Each session's task ids.
async fn flood(
    server: &Server,
    sessions: &[Session],
    each: usize,
    accepted: &AtomicUsize,
) -> Vec<HashSet<u64>> {
    futures::future::join_all(sessions.iter().map(|session| async move {
        let mut ids = HashSet::new();
        for _ in 0..each {
            ids.insert(session.submit_ok(server, 10).await);
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        ids
    }))
    .await
}

/// Waits until every session's terminal shows a line for each of its tasks; none twice.
async fn every_result_once(server: &Server, sessions: &[Session], ids: &[HashSet<u64>]) {
    for (session, ids) in sessions.iter().zip(ids) {
        let lines = eventually("every result shown", Duration::from_secs(60), || async {
            let mut events = session.events(server).await;
            let snapshot = events.next().await.expect("a snapshot");
            let lines = snapshot["lines"].as_array().cloned().unwrap_or_default();
            (lines.len() >= ids.len()).then_some(lines)
        })
        .await;
        let shown: Vec<u64> = lines.iter().filter_map(|l| l["task"].as_u64()).collect();
        let unique: HashSet<u64> = shown.iter().copied().collect();
        assert_eq!(shown.len(), unique.len(), "a task shown twice");
        assert_eq!(&unique, ids, "every task shown");
        for line in &lines {
            let text = line["text"].as_str().unwrap_or_default();
            assert!(
                text.starts_with("fibonacci(10)=55 in ")
                    || text.starts_with("fibonacci(40)=102334155 in "),
                "{line}"
            );
        }
    }
}

/// A session whose fibonacci(40) (a few hundred ms) has run on the worker for 100 ms or more
/// (its first progress came): its result comes while the app server is stopped next.
async fn running_on_the_worker(server: &Server) -> (Session, HashSet<u64>) {
    let session = Session::new();
    let id = submit_until_it_progresses(server, &session, 40).await;
    (session, HashSet::from([id]))
}

/// Waits until `accepted` reaches `count`, so that the flood is under way.
async fn until_accepted(accepted: &AtomicUsize, count: usize) {
    eventually(
        "the flood under way",
        Duration::from_secs(60),
        move || async move { (accepted.load(Ordering::Relaxed) >= count).then_some(()) },
    )
    .await;
}

/// `sessions` flood the app server with `EACH` tiny tasks each; once `after` are accepted,
/// and a task of a few hundred ms runs on the worker, the server is stopped for `stopped_for`.
/// Every result arrives once.
async fn a_stop_mid_flood(
    server: &Server,
    sessions: &[Session],
    after: usize,
    stopped_for: Duration,
) {
    let accepted = AtomicUsize::new(0);
    let stop = async {
        until_accepted(&accepted, after).await;
        let slow = running_on_the_worker(server).await;
        signal(server.pid(), "STOP");
        // The scenario's length, not a wait for something.
        tokio::time::sleep(stopped_for).await;
        signal(server.pid(), "CONT");
        slow
    };
    let (ids, (slow, slow_ids)) = tokio::join!(flood(server, sessions, EACH, &accepted), stop);
    every_result_once(server, sessions, &ids).await;
    every_result_once(server, &[slow], &[slow_ids]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_flood_sends_no_progress_for_tiny_tasks_and_stores_no_result() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    let (_worker, worker_metrics, server) = cluster(&nats).await;
    let sessions: Vec<Session> = (0..SESSIONS).map(|_| Session::new()).collect();
    let ids = flood(&server, &sessions, 20, &AtomicUsize::new(0)).await;
    every_result_once(&server, &sessions, &ids).await;

    let tasks = (SESSIONS * 20) as f64;
    let server_metrics = server.url("/metrics");
    let sent = |sample: &'static str| metric(&worker_metrics, sample);
    // fibonacci(10) reports its progress, but ends long before the first report is due.
    assert_eq!(sent("offload_worker_progress_messages_total").await, 0.0);
    assert_eq!(sent("offload_worker_result_fallbacks_total").await, 0.0);
    assert!(sent("offload_worker_result_requests_total").await >= 1.0);
    let taken = |sample: &'static str| metric(&server_metrics, sample);
    assert_eq!(taken("offload_nats_progress_messages_total").await, 0.0);
    assert_eq!(
        taken("offload_nats_result_messages_total{path=\"stream\"}").await,
        0.0
    );
    assert_eq!(taken("offload_nats_results_total").await, tasks);
    assert_eq!(taken("offload_nats_work_tasks_total").await, tasks);
    assert!(taken("offload_nats_work_messages_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_server_stopped_for_three_seconds_mid_flood_gets_every_result_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    let (_worker, worker_metrics, server) = cluster(&nats).await;
    let sessions: Vec<Session> = (0..SESSIONS).map(|_| Session::new()).collect();
    a_stop_mid_flood(&server, &sessions, 1_000, Duration::from_secs(3)).await;

    // The results the worker had while the server was stopped went to the stream.
    let stored = metric(&worker_metrics, "offload_worker_result_fallbacks_total").await;
    assert!(stored > 0.0, "no fallback store");
    let server_metrics = server.url("/metrics");
    let taken = metric(
        &server_metrics,
        "offload_nats_result_messages_total{path=\"stream\"}",
    )
    .await;
    assert!(taken > 0.0, "nothing taken from the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_for_an_app_server_cut_off_from_nats_wait_in_the_stream_until_it_is_back() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // NATS closes a connection that answers no ping for two seconds: a stopped app server's
    // subscription goes with it, and a result request meets no responders.
    let nats = Nats::start_with("ping_interval: \"1s\"\nping_max: 1\n").await;
    let (_worker, worker_metrics, server) = cluster(&nats).await;
    let sessions: Vec<Session> = (0..10).map(|_| Session::new()).collect();
    a_stop_mid_flood(&server, &sessions, 200, Duration::from_secs(5)).await;
    let stored = metric(&worker_metrics, "offload_worker_result_fallbacks_total").await;
    assert!(stored > 0.0, "no fallback store");
    // Reconnected, it takes requests again: a task after the flood comes back directly.
    let direct = |server: &Server| {
        let url = server.url("/metrics");
        async move { metric(&url, "offload_nats_result_messages_total{path=\"request\"}").await }
    };
    let before = direct(&server).await;
    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");
    let id = session.submit_ok(&server, 12).await;
    let line: Value = loop {
        let update = events.next().await.expect("the stream stays open");
        if update["type"] == "done" && update["task"] == id {
            break update;
        }
    };
    assert!(
        line["text"]
            .as_str()
            .unwrap()
            .starts_with("fibonacci(12)=144 in ")
    );
    assert!(direct(&server).await > before, "taken as a request again");
}
