//! Several app servers (`offload-bench failover`): a server on a PostgreSQL record, a standby
//! (`--standby`, forwarding) and Debian's HAProxy in front of both ([`load::balancer`]), as the README's
//! "Several app servers" sets them up. Measured: a load round through the balancer, and the takeover — the server
//! that writes killed (`kill -9`), and how long until a new visitor's task is answered through
//! the balancer — several times, the two servers trading places.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use load::balancer::haproxy_config;
use load::{LoadConfig, Round, Target, free_port};

use crate::BenchError;

/// Longest a takeover may take before the benchmark gives up on it.
const TAKEOVER_AT_MOST: Duration = Duration::from_secs(60);

/// One of the two app servers: fixed ports, so that the balancer's configuration holds across
/// its restarts.
struct AppServer {
    name: &'static str,
    port: u16,
    dashboard: u16,
    child: Option<Child>,
}

/// Both servers, the balancer, and which server writes the record now.
pub struct Pair {
    offload: PathBuf,
    database: String,
    logs: PathBuf,
    data: tempfile::TempDir,
    servers: [AppServer; 2],
    balancer: Child,
    /// The balancer's address: where every request goes.
    pub base: String,
    active: usize,
}

impl Pair {
    /// Starts a server on `database`, its standby (which forwards to it until it takes over)
    /// and HAProxy round robin over both, each checked on its app port's `/health`, logging
    /// into `logs`.
    pub async fn start(offload: &Path, database: &str, logs: &Path) -> Result<Self, BenchError> {
        let servers = ["a", "b"].map(|name| AppServer {
            name,
            port: free_port(),
            dashboard: free_port(),
            child: None,
        });
        let port = free_port();
        let config = logs.join("haproxy.cfg");
        let backends = servers.each_ref().map(|s| (s.port, s.port));
        std::fs::write(&config, haproxy_config(port, &backends))
            .map_err(BenchError::io(&config))?;
        let log = logs.join("haproxy.log");
        let out = File::create(&log).map_err(BenchError::io(&log))?;
        let balancer = Command::new(load::balancer::haproxy())
            .args(["-db", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stderr(out.try_clone().map_err(BenchError::io(&log))?)
            .stdout(out)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                what: "haproxy (make test installs it)".into(),
                source,
            })?;
        let mut pair = Self {
            offload: offload.to_owned(),
            database: database.to_owned(),
            logs: logs.to_owned(),
            data: tempfile::tempdir().map_err(BenchError::io(std::env::temp_dir()))?,
            servers,
            balancer,
            base: format!("http://127.0.0.1:{port}"),
            active: 0,
        };
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(Some(status)) = pair.balancer.try_wait() {
            return Err(BenchError::Exited {
                what: "haproxy".into(),
                status,
                log,
            });
        }
        pair.spawn(0, false)?;
        pair.answered(TAKEOVER_AT_MOST).await?;
        pair.spawn(1, true)?;
        app::ssr::store::testing::until_one_stands_by(database).await;
        Ok(pair)
    }

    fn spawn(&mut self, which: usize, standby: bool) -> Result<(), BenchError> {
        let server = &mut self.servers[which];
        let log = self.logs.join(format!("offload-{}.log", server.name));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(BenchError::io(&log))?;
        let err = out.try_clone().map_err(BenchError::io(&log))?;
        let mut command = Command::new(&self.offload);
        command
            .args(["serve", "--shutdown-grace", "1", "--session-idle-secs", "2"])
            .arg("--addr")
            .arg(format!("127.0.0.1:{}", server.port))
            .arg("--dashboard-addr")
            .arg(format!("127.0.0.1:{}", server.dashboard))
            .arg("--data-dir")
            .arg(self.data.path().join(server.name))
            .args(["--database", &self.database])
            .args(standby.then_some("--standby"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        server.child = Some(command.spawn().map_err(|source| BenchError::Spawn {
            what: format!("offload serve ({})", server.name),
            source,
        })?);
        Ok(())
    }

    /// The process of the server that writes the record now (whose memory a load round
    /// samples).
    pub fn active_pid(&self) -> u32 {
        self.servers[self.active]
            .child
            .as_ref()
            .map_or(0, Child::id)
    }

    /// A load target through the balancer.
    pub fn target(&self) -> Target {
        Target::started(
            self.base.clone(),
            self.active_pid(),
            self.offload.clone(),
            self.data.path().to_owned(),
        )
    }

    /// Kills the server that writes the record and times until a new visitor's task is
    /// answered through the balancer (by the standby that took over); then starts the killed
    /// one again as the standby.
    pub async fn takeover(&mut self) -> Result<Duration, BenchError> {
        let killed = self.active;
        if let Some(mut child) = self.servers[killed].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let started = Instant::now();
        self.answered(TAKEOVER_AT_MOST).await?;
        let took = started.elapsed();
        self.active = 1 - killed;
        self.spawn(killed, true)?;
        app::ssr::store::testing::until_one_stands_by(&self.database).await;
        Ok(took)
    }

    /// Waits until one visitor's fibonacci(10) is answered through the balancer.
    async fn answered(&self, within: Duration) -> Result<(), BenchError> {
        let config = LoadConfig {
            sessions: 1,
            tasks_per_session: 1,
            ramp: Duration::ZERO,
            max_wait: Duration::from_secs(5),
            ..LoadConfig::default()
        };
        let target = self.target();
        let deadline = Instant::now() + within;
        loop {
            if load::round(&target, &config, &[]).await.errors == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError::Measure {
                    what: "a task through HAProxy".into(),
                    detail: format!("not answered within {within:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until a round's sessions and streams are gone (the server notices a closed
    /// stream at its next keep-alive), as `make load` does between rounds.
    pub async fn settle(&self) {
        let _ = load::rss_after_expiry(&self.target(), &LoadConfig::default()).await;
    }

    /// A load round of `sessions` sessions × 5 fibonacci(10) through the balancer, or
    /// straight to the server that writes the record.
    pub async fn load(&self, sessions: usize, through_balancer: bool) -> Round {
        let config = LoadConfig {
            sessions,
            ..LoadConfig::default()
        };
        let target = if through_balancer {
            self.target()
        } else {
            Target::started(
                format!("http://127.0.0.1:{}", self.servers[self.active].port),
                self.active_pid(),
                self.offload.clone(),
                self.data.path().to_owned(),
            )
        };
        load::round(&target, &config, &[]).await
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for child in self
            .servers
            .iter_mut()
            .filter_map(|server| server.child.as_mut())
            .chain([&mut self.balancer])
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
