//! The three stacks, started as their users start them, each process in its own process group
//! and stopped with its whole group.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use load::free_port;

use crate::BenchError;

/// The port the seed's cluster.py listens on (`DASK_SCHEDULER_PORT`, fixed in its text).
pub const SEED_SCHEDULER_PORT: u16 = 64719;

/// How long a stack may take to answer: Dask's `LocalCluster` spawns 4 Python processes.
const START_PATIENCE: Duration = Duration::from_secs(90);

/// Which app a stack serves: the browser benchmark finds its button and terminal differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageKind {
    /// The seed's `panel serve app.py`: widgets rendered by BokehJS, an xterm.js terminal.
    Panel,
    /// Offload's task page.
    Offload,
}

/// How the benchmark reaches a stack's cluster from its own client.
#[derive(Debug, Clone)]
pub enum ClusterAccess {
    /// A Dask scheduler address, for `dask_client.py`.
    Dask(String),
    /// Offload's embedded cluster lives inside the app process: the benchmark runs its own, as
    /// an app server would.
    Embedded,
    /// The NATS URL of `offload cluster`.
    Nats(String),
}

/// One process of a stack. Dropping it stops its whole process group: SIGTERM, then SIGKILL
/// after 10 s.
struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    /// Held open: the seed's cluster.py waits on `input()` and ends when its stdin closes.
    _stdin: Option<ChildStdin>,
}

impl Process {
    fn spawn(name: &str, mut command: Command, logs: &Path) -> Result<Self, BenchError> {
        let log = logs.join(format!("{}.log", name.replace(' ', "-")));
        let out = File::create(&log).map_err(BenchError::io(&log))?;
        let err = out.try_clone().map_err(BenchError::io(&log))?;
        let mut child = command
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                what: name.to_string(),
                source,
            })?;
        Ok(Self {
            name: name.to_string(),
            _stdin: child.stdin.take(),
            child,
            log,
        })
    }

    fn check_running(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(BenchError::Exited {
                what: self.name.clone(),
                status,
                log: self.log.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn signal_group(&self, signal: libc::c_int) {
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) with a negative pid signals that process group; it touches no memory.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever the leader left behind (a Dask worker, nats-server) goes too.
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// One running stack.
pub struct Stack {
    /// Its key in the report: `seed`, `offload_embedded` or `offload_nats`.
    pub key: &'static str,
    /// Its task page.
    pub url: String,
    pub page: PageKind,
    pub cluster: ClusterAccess,
    /// An Offload app server's data directory (where its API tokens are kept).
    pub data_dir: Option<PathBuf>,
    processes: Vec<Process>,
}

/// Where the stacks' programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The release `offload` binary.
    pub offload: PathBuf,
    /// The pinned nats-server.
    pub nats_server: PathBuf,
    /// The seed's virtualenv's python (its `panel` is beside it).
    pub seed_python: PathBuf,
    /// The folder with the seed's cluster.py, tasks.py and app.py.
    pub seed_dir: PathBuf,
}

impl Programs {
    pub fn check_offload(&self) -> Result<(), BenchError> {
        exists(&self.offload, "the offload binary", "run `make build`")?;
        exists(&self.nats_server, "nats-server", "run `make nats`")
    }

    pub fn check_seed(&self) -> Result<(), BenchError> {
        exists(
            &self.seed_python,
            "the seed's python",
            "run `make bench-seed`",
        )?;
        exists(
            &self.seed_dir.join("cluster.py"),
            "the seed's cluster.py",
            "it belongs in bench/seed/",
        )
    }
}

fn exists(path: &Path, what: &'static str, hint: &'static str) -> Result<(), BenchError> {
    if path.exists() {
        Ok(())
    } else {
        Err(BenchError::Missing {
            what,
            path: path.to_path_buf(),
            hint,
        })
    }
}

impl Stack {
    /// The seed: `python cluster.py` (scheduler on its fixed port, 4 workers), then
    /// `panel serve app.py`, both run from the seed's folder as its text says.
    pub async fn seed(programs: &Programs, logs: &Path) -> Result<Self, BenchError> {
        if std::net::TcpListener::bind(("127.0.0.1", SEED_SCHEDULER_PORT)).is_err() {
            return Err(BenchError::PortTaken {
                port: SEED_SCHEDULER_PORT,
                who: "the seed's cluster.py (is another one running?)",
            });
        }
        let mut cluster = Command::new(&programs.seed_python);
        cluster.arg("cluster.py").current_dir(&programs.seed_dir);
        let mut cluster = Process::spawn("seed cluster.py", cluster, logs)?;
        wait_for_port(&mut cluster, SEED_SCHEDULER_PORT).await?;

        let port = free_port();
        let panel = programs.seed_python.with_file_name("panel");
        let mut app = Command::new(panel);
        app.args(["serve", "app.py", "--address", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--allow-websocket-origin")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(&programs.seed_dir);
        let mut app = Process::spawn("seed panel serve", app, logs)?;
        let url = format!("http://127.0.0.1:{port}/app");
        wait_for_http(&mut [&mut cluster, &mut app], &url).await?;
        Ok(Self {
            key: "seed",
            url,
            page: PageKind::Panel,
            cluster: ClusterAccess::Dask(format!("tcp://127.0.0.1:{SEED_SCHEDULER_PORT}")),
            data_dir: None,
            processes: vec![cluster, app],
        })
    }

    /// `offload` alone: the app with its embedded cluster of 4 workers and its dashboard.
    pub async fn embedded(
        programs: &Programs,
        data: &Path,
        logs: &Path,
    ) -> Result<Self, BenchError> {
        Self::embedded_with(programs, data, logs, &[]).await
    }

    /// [`Stack::embedded`] with `more` flags (`--database URL`).
    pub async fn embedded_with(
        programs: &Programs,
        data: &Path,
        logs: &Path,
        more: &[&str],
    ) -> Result<Self, BenchError> {
        let (port, dashboard) = (free_port(), free_port());
        let mut app = Command::new(&programs.offload);
        app.args(["serve", "--shutdown-grace", "1", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--dashboard-addr")
            .arg(format!("127.0.0.1:{dashboard}"))
            .arg("--data-dir")
            .arg(data.join("embedded"))
            .args(more);
        let mut app = Process::spawn("offload embedded", app, logs)?;
        let url = format!("http://127.0.0.1:{port}/");
        wait_for_http(&mut [&mut app], &url).await?;
        wait_for_http(
            &mut [&mut app],
            &format!("http://127.0.0.1:{dashboard}/health"),
        )
        .await?;
        Ok(Self {
            key: "offload_embedded",
            url,
            page: PageKind::Offload,
            cluster: ClusterAccess::Embedded,
            data_dir: Some(data.join("embedded")),
            processes: vec![app],
        })
    }

    /// The seed's three terminals, Offload's way: `offload cluster` (its own nats-server, 2
    /// worker threads and the dashboard), one more `offload worker` process with 2 threads, and
    /// `offload serve --cluster`. 4 worker threads in 2 processes, as the seed has 4 workers.
    pub async fn nats(programs: &Programs, data: &Path, logs: &Path) -> Result<Self, BenchError> {
        let (nats, dashboard, port) = (free_port(), free_port(), free_port());
        let nats_url = format!("nats://127.0.0.1:{nats}");
        let mut cluster = Command::new(&programs.offload);
        cluster
            .args(["cluster", "--workers", "2", "--shutdown-grace", "1"])
            .arg("--nats-server")
            .arg(&programs.nats_server)
            .arg("--nats-port")
            .arg(nats.to_string())
            .arg("--dashboard-addr")
            .arg(format!("127.0.0.1:{dashboard}"))
            .arg("--data-dir")
            .arg(data.join("cluster"));
        let mut cluster = Process::spawn("offload cluster", cluster, logs)?;
        let mut worker = Command::new(&programs.offload);
        worker
            .args([
                "worker",
                "--threads",
                "2",
                "--shutdown-grace",
                "1",
                "--cluster",
            ])
            .arg(&nats_url);
        let mut worker = Process::spawn("offload worker", worker, logs)?;
        let mut app = Command::new(&programs.offload);
        app.args(["serve", "--shutdown-grace", "1", "--cluster"])
            .arg(&nats_url)
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--dashboard-url")
            .arg(format!("http://127.0.0.1:{dashboard}/status"))
            .arg("--data-dir")
            .arg(data.join("nats-app"));
        let mut app = Process::spawn("offload serve --cluster", app, logs)?;
        let url = format!("http://127.0.0.1:{port}/");
        let mut all = [&mut cluster, &mut worker, &mut app];
        wait_for_http(&mut all, &format!("http://127.0.0.1:{dashboard}/health")).await?;
        wait_for_http(&mut all, &url).await?;
        Ok(Self {
            key: "offload_nats",
            url,
            page: PageKind::Offload,
            cluster: ClusterAccess::Nats(nats_url),
            data_dir: Some(data.join("nats-app")),
            processes: vec![cluster, worker, app],
        })
    }

    /// A new API token for this Offload stack's app server (`offload token create`).
    pub fn token(&self, offload: &Path) -> Result<String, BenchError> {
        let failed = |detail: String| BenchError::Measure {
            what: format!("making an API token for {}", self.key),
            detail,
        };
        let data = self
            .data_dir
            .as_ref()
            .ok_or_else(|| failed("it is not an Offload app server".into()))?;
        let output = Command::new(offload)
            .args(["token", "create", "bench", "--data-dir"])
            .arg(data)
            .output()
            .map_err(|e| failed(e.to_string()))?;
        if !output.status.success() {
            return Err(failed(String::from_utf8_lossy(&output.stderr).into_owned()));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The resident memory of every process this stack started, and of theirs, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let system = Self::processes_now();
        self.tree(&system)
            .iter()
            .filter_map(|pid| system.process(*pid))
            .map(sysinfo::Process::memory)
            .sum()
    }

    /// Every process this stack started, and theirs, with their names: its own as it names
    /// them, the others by their program (`nats-server`).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let system = Self::processes_now();
        let mut pids: Vec<(String, u32)> = self
            .processes
            .iter()
            .map(|p| (p.name.clone(), p.child.id()))
            .collect();
        for pid in self.tree(&system) {
            if !pids.iter().any(|(_, own)| *own == pid.as_u32())
                && let Some(process) = system.process(pid)
            {
                pids.push((process.name().to_string_lossy().into_owned(), pid.as_u32()));
            }
        }
        pids
    }

    fn processes_now() -> sysinfo::System {
        let mut system = sysinfo::System::new();
        system.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::All,
            true,
            sysinfo::ProcessRefreshKind::nothing().with_memory(),
        );
        system
    }

    /// The processes this stack started and all their descendants.
    fn tree(&self, system: &sysinfo::System) -> HashSet<sysinfo::Pid> {
        let mut children: HashMap<sysinfo::Pid, Vec<sysinfo::Pid>> = HashMap::new();
        for (pid, process) in system.processes() {
            // Threads are listed as tasks of their process: counting them would count it twice.
            if process.thread_kind().is_some() {
                continue;
            }
            if let Some(parent) = process.parent() {
                children.entry(parent).or_default().push(*pid);
            }
        }
        let mut seen = HashSet::new();
        let mut todo: Vec<sysinfo::Pid> = self
            .processes
            .iter()
            .map(|p| sysinfo::Pid::from_u32(p.child.id()))
            .collect();
        while let Some(pid) = todo.pop() {
            if seen.insert(pid) {
                todo.extend(children.get(&pid).into_iter().flatten().copied());
            }
        }
        seen
    }

    /// The processes it started itself (their children are counted in its memory).
    pub fn process_names(&self) -> Vec<&str> {
        self.processes.iter().map(|p| p.name.as_str()).collect()
    }
}

async fn wait_for_port(process: &mut Process, port: u16) -> Result<(), BenchError> {
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        process.check_running()?;
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(not_ready(process));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `url` answers 200, failing as soon as one of `processes` exits.
async fn wait_for_http(processes: &mut [&mut Process], url: &str) -> Result<(), BenchError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| BenchError::Measure {
            what: "an HTTP client".into(),
            detail: e.to_string(),
        })?;
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        for process in processes.iter_mut() {
            process.check_running()?;
        }
        if let Ok(response) = http.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(not_ready(processes.last().expect("a process")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn not_ready(process: &Process) -> BenchError {
    BenchError::NotReady {
        what: process.name.clone(),
        secs: START_PATIENCE.as_secs(),
        log: process.log.clone(),
    }
}
