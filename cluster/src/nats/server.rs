//! A local `nats-server` with JetStream as a child process: what `offload cluster` starts when
//! it is given no NATS to join, and what tests and benchmarks start on a free port.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// Why the local NATS server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "cannot run {bin:?}: {source} (install it with `make nats`, or pass its path with --nats-server)"
    )]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the nats-server configuration {path:?}: {source}")]
    Config {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nats-server exited at start ({status}): is port {port} free?")]
    Exited {
        status: std::process::ExitStatus,
        port: u16,
    },
    #[error("nats-server did not accept connections on port {0} within 10 s")]
    NotReady(u16),
}

/// The largest message the local NATS server takes (its `max_payload`; NATS's default is
/// 1 MB): a task's result travels as one message, and results may be up to
/// `--max-output-bytes` (4 MB by default). NATS advises against more than 8 MB.
pub const MAX_PAYLOAD: usize = 8 << 20;

/// A running `nats-server -js`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct LocalNats {
    child: Child,
    port: u16,
}

impl LocalNats {
    /// Starts `bin` on 127.0.0.1:`port` with its JetStream store in `store`, and waits until
    /// it accepts connections.
    pub async fn start(bin: &Path, port: u16, store: &Path) -> Result<Self, ServerError> {
        Self::start_with(bin, port, store, "").await
    }

    /// [`Self::start`] with more lines of nats-server configuration (tests shorten its
    /// `ping_interval`, to see a stopped client's connection closed).
    pub async fn start_with(
        bin: &Path,
        port: u16,
        store: &Path,
        more: &str,
    ) -> Result<Self, ServerError> {
        // `max_payload` has no command-line flag: it goes in a configuration file.
        let config = store.join("nats-server.conf");
        std::fs::create_dir_all(store)
            .and_then(|()| std::fs::write(&config, format!("max_payload: {MAX_PAYLOAD}\n{more}")))
            .map_err(|source| ServerError::Config {
                path: config.clone(),
                source,
            })?;
        let mut command = Command::new(bin);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl and getppid are async-signal-safe, nothing here allocates, and they
        // touch only the child being started.
        // Its parent killed (or stopped by a signal before it could stop its children) must
        // not leave a nats-server holding the port and the store.
        unsafe {
            let parent = std::process::id();
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                // A parent that died before the line above sends no signal.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = command
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-c"])
            .arg(&config)
            .arg("-sd")
            .arg(store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ServerError::Spawn {
                bin: bin.to_owned(),
                source,
            })?;
        for _ in 0..200 {
            if let Some(status) = child.try_wait().ok().flatten() {
                return Err(ServerError::Exited { status, port });
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(Self { child, port });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ServerError::NotReady(port))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Asks it to stop (SIGTERM, which lets JetStream close its store) and waits up to 5 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}
