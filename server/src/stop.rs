//! Stopping. A first SIGTERM or Ctrl-C starts a graceful stop; a second one, or a stop that
//! outlasts its grace period, ends the process at once, whatever NATS is doing. (A stop was
//! seen waiting for minutes on a NATS connection whose server had gone with the same Ctrl-C,
//! deaf to a second one.) Ending at once loses nothing a `kill -9` would not: the session
//! database is committed write by write, and NATS redelivers what was not acknowledged.

use std::sync::Mutex;
use std::time::Duration;

/// What a stop may take beyond its grace period before it is cut short: an app server's own
/// steps after the grace take at most 3 s (2 s to drain connections, 1 s for the database's
/// writer), so a healthy stop is never cut; a worker's leave takes at most 2 s.
const MARGIN: Duration = Duration::from_secs(4);

/// Processes this one started (its own nats-server), stopped with it when a stop is cut
/// short: their owners' destructors do not run then.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Has `pid` stopped (SIGTERM) should this process end at once.
pub(crate) fn along_with_me(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(pid);
}

/// Waits for the first SIGTERM or Ctrl-C. From then on a second one ends the process at once
/// (exit 130), and so does the stop outlasting `grace` + [`MARGIN`] (exit 1).
pub(crate) async fn requested(grace: Duration) {
    signal().await;
    tokio::spawn(async {
        signal().await;
        eprintln!("offload: stopping at once (a second signal)");
        exit_now(130);
    });
    tokio::spawn(async move {
        tokio::time::sleep(grace + MARGIN).await;
        tracing::error!(
            grace_s = grace.as_secs_f64(),
            "the stop outlasted its grace period: stopping at once"
        );
        exit_now(1);
    });
}

fn exit_now(code: i32) -> ! {
    let children = CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for pid in children.iter() {
        // SIGTERM lets a nats-server close its JetStream store.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    std::process::exit(code)
}

/// The next SIGTERM or Ctrl-C.
pub(crate) async fn signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
