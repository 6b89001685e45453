//! A stop always stops. A Ctrl-C at any moment ends `offload cluster` and the nats-server it
//! started (a terminal signals both) within the grace period plus 5 s; with NATS frozen, a
//! worker and an app server end within theirs too, and a second Ctrl-C ends a stop at once.

mod common;

use std::time::Duration;

use common::{
    Nats, Proc, Server, Session, eventually, group_alive, nats_server, signal, signal_group,
    submit_until_it_progresses, wait_for_threads, worker_with_ops,
};
use load::free_port;

/// Every command here runs with `--shutdown-grace 2`.
const GRACE: &str = "2";
/// The grace period plus 5 s.
const WITHIN: Duration = Duration::from_secs(2 + 5);

/// One command at a time: on two cores a second cluster would slow the first past its bounds.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `offload worker` on `nats`, ready once its ops endpoints answer.
async fn worker(nats: &Nats, grace: &str) -> Proc {
    let (worker, port) = worker_with_ops(nats, 1, &["--shutdown-grace", grace]);
    let health = format!("http://127.0.0.1:{port}/health");
    eventually("the worker answers", Duration::from_secs(15), || async {
        let response = reqwest::get(&health).await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    worker
}

/// One of the twenty stops of a command.
#[derive(Debug, Clone, Copy)]
struct Stop {
    /// How long after its start (idle) or after its task started (busy) it is stopped.
    at: Duration,
    /// The nats-server is stopped at the same moment (for `offload cluster`, its own: the
    /// terminal's Ctrl-C reaches both).
    nats_too: bool,
    /// A long task is running (on the worker; in the app server's slot).
    busy: bool,
    /// A second Ctrl-C follows the first (with a long grace period, so that only it ends
    /// the stop).
    twice: bool,
}

/// Twenty stops at random moments of the first 3 s, the same at every run (a failure can be
/// run again), each way of stopping five times.
fn stops() -> Vec<Stop> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..20)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Stop {
                at: Duration::from_millis(x % 3_000),
                nats_too: i % 2 == 1,
                busy: i % 4 >= 2,
                twice: i % 5 == 4,
            }
        })
        .collect()
}

impl Stop {
    fn grace(&self) -> &'static str {
        if self.twice { "60" } else { GRACE }
    }

    /// At its moment, `nats` stopped too when it should be, then Ctrl-C (or two) to `proc`;
    /// checks it ends in time.
    async fn made(&self, nats: &Nats, proc: &mut impl Stoppable) {
        tokio::time::sleep(self.at).await;
        if self.nats_too {
            signal(nats.pid().expect("nats-server runs"), "TERM");
        }
        self.send(proc, false).await;
    }

    /// Ctrl-C (or two) to `proc` and its group when `group`; checks it ends in time.
    async fn send(&self, proc: &mut impl Stoppable, group: bool) {
        let pid = proc.pid();
        let interrupt = || {
            if group {
                signal_group(pid, "INT");
            } else {
                signal(pid, "INT");
            }
        };
        interrupt();
        if self.twice {
            // A person's second Ctrl-C, a moment later (two sent together arrive as one).
            tokio::time::sleep(Duration::from_millis(300)).await;
            if proc.running() {
                interrupt();
                let status = proc.wait_exit(Duration::from_secs(2)).await;
                assert_eq!(status.code(), Some(130), "{self:?}: {status}");
                return;
            }
        }
        proc.wait_exit(WITHIN).await;
    }
}

/// A process a test stops: an `offload` command, or an app server.
trait Stoppable {
    fn pid(&self) -> u32;
    fn running(&mut self) -> bool;
    async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus;
}

macro_rules! stoppable {
    ($($process:ident),*) => {$(
        impl Stoppable for $process {
            fn pid(&self) -> u32 {
                $process::pid(self)
            }
            fn running(&mut self) -> bool {
                $process::running(self)
            }
            async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
                $process::wait_exit(self, within).await
            }
        }
    )*};
}

stoppable!(Proc, Server);

/// An app server on `nats` running fibonacci(50) (minutes) on its worker: returns once the
/// task runs.
async fn busy_server(nats_url: &str, threads: usize, grace: &str) -> Server {
    let server = Server::start(&["--cluster", nats_url, "--shutdown-grace", grace]).await;
    wait_for_threads(&server, threads).await;
    submit_until_it_progresses(&server, &Session::new(), 50).await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_stopped_at_twenty_moments_ends_with_its_nats_server() {
    let _one = ONE_AT_A_TIME.lock().await;
    for stop in stops() {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cluster = Proc::spawn_group(&[
            "cluster",
            "--nats-server",
            nats_server().to_str().unwrap(),
            "--nats-port",
            &port.to_string(),
            "--dashboard-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--workers",
            "1",
            "--shutdown-grace",
            stop.grace(),
        ]);
        let _server = match stop.busy {
            true => Some(busy_server(&format!("nats://127.0.0.1:{port}"), 1, GRACE).await),
            false => None,
        };
        tokio::time::sleep(stop.at).await;
        // Its own nats-server ends with it either way: told by the terminal, or by the
        // cluster as it stops.
        let group = cluster.pid();
        stop.send(&mut cluster, stop.nats_too).await;
        let what = format!("the nats-server of a cluster stopped ({stop:?}) ends");
        eventually(&what, Duration::from_secs(5), || async {
            (!group_alive(group)).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_at_twenty_moments_ends_within_its_grace() {
    let _one = ONE_AT_A_TIME.lock().await;
    for stop in stops() {
        let nats = Nats::start().await;
        let mut worker = Proc::spawn(&[
            "worker",
            "--cluster",
            &nats.url(),
            "--threads",
            "1",
            "--shutdown-grace",
            stop.grace(),
        ]);
        let _server = match stop.busy {
            true => Some(busy_server(&nats.url(), 1, GRACE).await),
            false => None,
        };
        stop.made(&nats, &mut worker).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_server_stopped_at_twenty_moments_ends_within_its_grace() {
    let _one = ONE_AT_A_TIME.lock().await;
    for stop in stops() {
        let nats = Nats::start().await;
        let _worker = Proc::spawn(&["worker", "--cluster", &nats.url(), "--threads", "1"]);
        if stop.busy {
            let mut server = busy_server(&nats.url(), 1, stop.grace()).await;
            stop.made(&nats, &mut server).await;
            continue;
        }
        // Idle: stopped in its first seconds, ready or not.
        let data = tempfile::tempdir().unwrap();
        let mut server = Proc::spawn(&[
            "--cluster",
            &nats.url(),
            "--addr",
            &format!("127.0.0.1:{}", free_port()),
            "--dashboard-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--shutdown-grace",
            stop.grace(),
        ]);
        stop.made(&nats, &mut server).await;
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
