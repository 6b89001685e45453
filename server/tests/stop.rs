//! A stop always stops. A Ctrl-C at any moment ends `offload cluster` and the nats-server it
//! started (a terminal signals both) within the grace period plus 5 s; with NATS frozen, a
//! worker and an app server end within theirs too, and a second Ctrl-C ends a stop at once.

mod common;

use std::time::Duration;

use common::{Nats, Proc, Server, eventually, group_alive, nats_server, signal, signal_group};
use load::free_port;

/// Every command here runs with `--shutdown-grace 2`.
const GRACE: &str = "2";
/// The grace period plus 5 s.
const WITHIN: Duration = Duration::from_secs(2 + 5);

/// One command at a time: on two cores a second cluster would slow the first past its bounds.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `offload worker` on `nats` with its metrics on a free port (ready once they answer).
async fn worker(nats: &Nats, grace: &str) -> Proc {
    let port = free_port();
    let worker = Proc::spawn(&[
        "worker",
        "--cluster",
        &nats.url(),
        "--threads",
        "1",
        "--shutdown-grace",
        grace,
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    let health = format!("http://127.0.0.1:{port}/health");
    eventually("the worker answers", Duration::from_secs(15), || async {
        let response = reqwest::get(&health).await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    worker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_any_moment_stops_the_cluster_and_its_nats_server() {
    let _one = ONE_AT_A_TIME.lock().await;
    // From its first instant to a cluster that has been up a while: spread moments rather
    // than random ones, so that a failure can be run again.
    for after_ms in [0, 100, 300, 700, 1_200, 2_000, 3_500] {
        let data = tempfile::tempdir().unwrap();
        let mut cluster = Proc::spawn_group(&[
            "cluster",
            "--nats-server",
            nats_server().to_str().unwrap(),
            "--nats-port",
            &free_port().to_string(),
            "--dashboard-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--workers",
            "2",
            "--shutdown-grace",
            GRACE,
        ]);
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        let group = cluster.pid();
        signal_group(group, "INT");
        cluster.wait_exit(WITHIN).await;
        let what = format!("the nats-server of a cluster stopped {after_ms} ms in ends");
        eventually(&what, Duration::from_secs(5), || async {
            (!group_alive(group)).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_frozen_a_worker_and_an_app_server_stop_within_their_grace() {
    let _one = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    let mut worker = worker(&nats, GRACE).await;
    let mut server = Server::start(&["--cluster", &nats.url(), "--shutdown-grace", GRACE]).await;
    let nats_pid = nats.pid().expect("nats-server runs");
    // Every request either makes from now on waits for an answer that does not come.
    signal(nats_pid, "STOP");
    signal(worker.pid(), "INT");
    signal(server.pid(), "INT");
    worker.wait_exit(WITHIN).await;
    server.wait_exit(WITHIN).await;
    signal(nats_pid, "CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_ends_a_stop_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    // A long grace period, and NATS frozen: the first Ctrl-C's stop would wait long.
    let mut worker = worker(&nats, "60").await;
    let nats_pid = nats.pid().expect("nats-server runs");
    signal(nats_pid, "STOP");
    signal(worker.pid(), "INT");
    // Signals sent together arrive as one (the kernel keeps one pending SIGINT): the second
    // Ctrl-C comes a moment later, as a person's does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(worker.running(), "still stopping");
    signal(worker.pid(), "INT");
    let status = worker.wait_exit(Duration::from_secs(3)).await;
    assert_eq!(status.code(), Some(130), "{status}");
    signal(nats_pid, "CONT");
}
