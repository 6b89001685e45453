//! Starts the real `offload` binary (the release build `make build` makes) on free loopback
//! ports with its own data directory, and talks to it as a browser would: form posts to the
//! server functions and the page's event stream, each session by its own cookie.

#![allow(dead_code)] // each test file uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use load::Events;
use load::free_port;
use serde_json::Value;

/// The binary under test: the release build, which `make test` makes before it runs this.
/// A binary older than any of its sources is refused: after an edit, `cargo test` alone would
/// test what was there before.
pub fn binary() -> PathBuf {
    // Checked once per test binary: every server a test starts asks.
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED.get_or_init(checked_binary).clone()
}

fn checked_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("target/release/offload");
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `make build` (or `make test`) first",
                path.display()
            )
        });
    if let Some((source, _)) = newest_source(&root).filter(|(_, at)| *at > built) {
        panic!(
            "{} is older than {}: run `make build` (or `make test`) to test what the sources say",
            path.display(),
            source.display()
        );
    }
    path
}

/// The most recently changed file the release binary is built from (what `make build`
/// watches), and when it changed.
fn newest_source(root: &Path) -> Option<(PathBuf, std::time::SystemTime)> {
    fn walk(dir: &Path, newest: &mut Option<(PathBuf, std::time::SystemTime)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Tests (and build output) are not what the binary is built from.
                if path
                    .file_name()
                    .is_some_and(|n| n == "target" || n == "tests" || n == "benches")
                {
                    continue;
                }
                walk(&path, newest);
            } else if let Ok(at) = entry.metadata().and_then(|m| m.modified())
                && newest.as_ref().is_none_or(|(_, n)| at > *n)
            {
                *newest = Some((path, at));
            }
        }
    }
    let mut newest = None;
    for dir in [
        "model",
        "task",
        "tasks",
        "app",
        "dashboard",
        "cluster",
        "server/src",
        "style",
    ] {
        walk(&root.join(dir), &mut newest);
    }
    for file in ["Cargo.toml", "Cargo.lock", "server/Cargo.toml"] {
        let path = root.join(file);
        if let Ok(at) = std::fs::metadata(&path).and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(_, n)| at > *n)
        {
            newest = Some((path, at));
        }
    }
    newest
}

/// The binary, run from the workspace root, quiet but for warnings and errors.
fn offload() -> Command {
    let mut command = Command::new(binary());
    command
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// Asks `check` again and again until it answers (`Some`), and returns the answer; fails with
/// `what` after `within`. The one way these tests wait for what another process does (they
/// cannot hear its events), asking often enough that a test waits no longer than it must.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(answer) = check().await {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never, within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub dashboard_port: u16,
    pub data: PathBuf,
    args: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A server with a fresh data directory and `args` on top of the defaults.
    pub async fn start(args: &[&str]) -> Self {
        let server = Self::start_unready(args);
        server.ready().await;
        server
    }

    /// A server with a fresh data directory and `args`, not waited for (see
    /// [`Server::ready`]): a standby (`--standby`) answers once the server it forwards to does.
    pub fn start_unready(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let data = dir.path().to_owned();
        let mut server = Self::launch(data, args.iter().map(|a| a.to_string()).collect());
        server._dir = Some(dir);
        server
    }

    async fn spawn(data: PathBuf, args: Vec<String>) -> Self {
        let server = Self::launch(data, args);
        server.ready().await;
        server
    }

    fn launch(data: PathBuf, args: Vec<String>) -> Self {
        let (port, dashboard_port) = (free_port(), free_port());
        let child = offload()
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--dashboard-addr")
            .arg(format!("127.0.0.1:{dashboard_port}"))
            .arg("--data-dir")
            .arg(&data)
            .args(&args)
            .spawn()
            .expect("starting offload");
        Self {
            child,
            port,
            dashboard_port,
            data,
            args,
            _dir: None,
        }
    }

    /// Waits until it answers.
    pub async fn ready(&self) {
        let client = reqwest::Client::new();
        let what = format!("offload answers on port {}", self.port);
        eventually(&what, Duration::from_secs(15), || async {
            let answered = client.get(self.url("/api/events")).send().await;
            answered
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn dashboard_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.dashboard_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, from /proc.
    pub fn rss_kb(&self) -> u64 {
        load::rss_kb(self.pid()).expect("the server is running")
    }

    /// `kill -9`, and waits for the process to go.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// `kill -9`, then the same server (data directory, flags) started again on new ports.
    pub async fn crash_and_restart(self) -> Self {
        self.crash_and_restart_with(&[]).await
    }

    /// `kill -9`, then the same server started again with `more` flags.
    pub async fn crash_and_restart_with(mut self, more: &[&str]) -> Self {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
        let dir = self._dir.take();
        let mut args = self.args.clone();
        args.extend(more.iter().map(|a| a.to_string()));
        let mut again = Self::spawn(self.data.clone(), args).await;
        again._dir = dir;
        again
    }

    /// SIGTERM: the graceful stop.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for the process to exit (after [`Server::terminate`]).
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        eventually("the server exits", within, || {
            std::future::ready(child.try_wait().expect("try_wait"))
        })
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a test sends its requests: an app server, or a balancer in front of some.
pub trait Base {
    /// `path` there, as a full URL.
    fn url(&self, path: &str) -> String;
}

impl Base for Server {
    fn url(&self, path: &str) -> String {
        Server::url(self, path)
    }
}

/// HAProxy (Debian's, which `make test` installs) in front of app servers, configured as
/// [`load::balancer`] says. Stopped when dropped.
pub struct Balancer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Balancer {
    /// In front of `servers`: each one's app port and the port its `/health` is on.
    pub async fn start(servers: &[(u16, u16)]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, load::balancer::haproxy_config(port, servers))
            .expect("writing haproxy.cfg");
        let child = Command::new(load::balancer::haproxy())
            .args(["-q", "-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("haproxy (installed by `make test`) starts");
        let balancer = Self {
            child,
            port,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        eventually(
            "HAProxy passes a request on",
            Duration::from_secs(15),
            || async {
                let answered = client.get(balancer.url("/api/events")).send().await;
                answered
                    .is_ok_and(|r| r.status().is_success())
                    .then_some(())
            },
        )
        .await;
        balancer
    }
}

impl Base for Balancer {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session: a cookie of its own.
#[derive(Clone)]
pub struct Session {
    pub http: reqwest::Client,
    pub cookie: Option<String>,
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Session {
    /// A session with a well-formed cookie the server has not seen yet.
    pub fn new() -> Self {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{:016x}{:016x}", std::process::id(), n);
        Self {
            http: reqwest::Client::new(),
            cookie: Some(format!("offload_session={id}")),
        }
    }

    /// No cookie at all, like a script or a first visit.
    pub fn cookieless() -> Self {
        Self {
            http: reqwest::Client::new(),
            cookie: None,
        }
    }

    pub fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        }
    }

    /// `GET path` as this session: the body (a page's HTML).
    pub async fn get_text(&self, server: &impl Base, path: &str) -> String {
        self.request(reqwest::Method::GET, server.url(path))
            .send()
            .await
            .expect("the server answers")
            .text()
            .await
            .expect("a body")
    }

    /// `GET path` as this session, read as JSON (the API's answers).
    pub async fn get_json(&self, server: &impl Base, path: &str) -> Value {
        let body = self.get_text(server, path).await;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// Posts a form to a server function; returns the status and the body.
    pub async fn post(&self, server: &impl Base, path: &str, form: &str) -> (u16, String) {
        let response = self
            .request(reqwest::Method::POST, server.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Submits fibonacci(n); returns the status and the body.
    pub async fn submit(&self, server: &impl Base, n: i64) -> (u16, String) {
        self.post(server, "/api/submit", &format!("n={n}")).await
    }

    /// Submits fibonacci(n) and returns the task id, failing the test on a refusal.
    pub async fn submit_ok(&self, server: &impl Base, n: i64) -> u64 {
        self.submit_form_ok(server, &format!("n={n}")).await
    }

    /// Posts `form` (URL-encoded, `task=…` and the type's fields) as the task page does and
    /// returns the task id, failing the test on a refusal.
    pub async fn submit_form_ok(&self, server: &impl Base, form: &str) -> u64 {
        let (status, body) = self.post(server, "/api/submit", form).await;
        assert_eq!(status, 200, "submit {form}: {body}");
        let task: Value = serde_json::from_str(&body).expect("the submission as JSON");
        task["task"]["id"].as_u64().expect("a task id")
    }

    /// Opens the page's event stream.
    pub async fn events(&self, server: &impl Base) -> Events {
        let response = self
            .request(reqwest::Method::GET, server.url("/api/events"))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status(), 200, "the event stream opens");
        Events::new(response)
    }

    /// Opens the page's event stream, if it opens (not while no server is there).
    pub async fn try_events(&self, server: &impl Base) -> Option<Events> {
        let response = self
            .request(reqwest::Method::GET, server.url("/api/events"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then(|| Events::new(response))
    }
}

/// What a page does with its stream, on top of reading it.
pub trait PageStream {
    /// Reads updates until one brings a line that satisfies `pred`; returns its text.
    async fn line(&mut self, pred: impl Fn(&Value) -> bool) -> String;
    /// The lines the next update brings: one as it is done, or all of them in a snapshot
    /// (sent first, and again when the page fell behind).
    async fn lines(&mut self) -> Vec<Value>;
}

impl PageStream for Events {
    async fn line(&mut self, pred: impl Fn(&Value) -> bool) -> String {
        loop {
            if let Some(line) = self.lines().await.into_iter().find(|l| pred(l)) {
                return line["text"].as_str().unwrap_or_default().to_owned();
            }
        }
    }

    async fn lines(&mut self) -> Vec<Value> {
        loop {
            let update = self.next().await.expect("the stream stays open");
            match update["type"].as_str() {
                Some("done") => return vec![update],
                Some("snapshot") => return update["lines"].as_array().cloned().unwrap_or_default(),
                _ => {}
            }
        }
    }
}

/// Another `offload` process: `offload cluster` or `offload worker`. Killed when dropped.
pub struct Proc {
    child: Child,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Self {
        let child = offload().args(args).spawn().expect("starting offload");
        Self { child }
    }

    /// In a process group of its own, as a terminal starts a command: a Ctrl-C there is
    /// SIGINT to the whole group ([`signal_group`]), children too.
    pub fn spawn_group(args: &[&str]) -> Self {
        use std::os::unix::process::CommandExt;
        let child = offload()
            .args(args)
            .process_group(0)
            .spawn()
            .expect("starting offload");
        Self { child }
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        eventually("the process exits", within, || {
            std::future::ready(child.try_wait().expect("try_wait"))
        })
        .await
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (`INT`, `STOP`, …) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Sends `signal` to the process group `pgid`, as a terminal's Ctrl-C does (`INT`).
pub fn signal_group(pgid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pgid}")])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} -- -{pgid}");
}

/// Whether any process of group `pgid` is left.
pub fn group_alive(pgid: u32) -> bool {
    Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The pinned nats-server that `make nats` installs; a missing one fails the test.
pub fn nats_server() -> PathBuf {
    std::env::var_os("OFFLOAD_NATS_SERVER").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/nats/bin/nats-server"),
        PathBuf::from,
    )
}

/// A nats-server with JetStream on a free port and a temporary store; it can be stopped and
/// started again on the same port with the same store.
pub struct Nats {
    pub port: u16,
    store: tempfile::TempDir,
    server: Option<cluster::nats::LocalNats>,
    /// More lines of its configuration.
    config: String,
}

impl Nats {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// With more lines of configuration.
    pub async fn start_with(config: &str) -> Self {
        let mut nats = Self {
            port: free_port(),
            store: tempfile::tempdir().expect("a temporary store"),
            server: None,
            config: config.to_owned(),
        };
        nats.restart().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The nats-server's process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().and_then(cluster::nats::LocalNats::pid)
    }

    /// SIGTERM, and waits for the exit.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    pub async fn restart(&mut self) {
        let server = cluster::nats::LocalNats::start_with(
            &nats_server(),
            self.port,
            self.store.path(),
            &self.config,
        )
        .await
        .expect("nats-server (installed by `make nats`) starts");
        self.server = Some(server);
    }
}

/// `offload worker` on `nats` with `threads` threads, `more` flags and its ops endpoints
/// (`/metrics`, `/health`) on a free port: the process and that port.
pub fn worker_with_ops(nats: &Nats, threads: usize, more: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let (url, threads) = (nats.url(), threads.to_string());
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["worker", "--cluster", &url, "--threads", &threads];
    args.extend(["--metrics-addr", &addr]);
    args.extend(more);
    (Proc::spawn(&args), port)
}

/// Waits until the app server counts `n` worker threads (from the workers' heartbeats).
pub async fn wait_for_threads(server: &Server, n: usize) {
    let what = format!("the app server counts {n} worker threads");
    eventually(&what, Duration::from_secs(30), || async {
        let (status, body) = Session::cookieless()
            .post(server, "/api/cluster-info", "")
            .await;
        assert_eq!(status, 200, "{body}");
        let info: Value = serde_json::from_str(&body).unwrap();
        (info["workers"].as_u64() == Some(n as u64)).then_some(())
    })
    .await;
}

/// Submits fibonacci(n) for `session` and returns its id once its first progress came: it
/// has been running on a worker for a while (on NATS, 100 ms).
pub async fn submit_until_it_progresses(server: &impl Base, session: &Session, n: i64) -> u64 {
    let mut events = session.events(server).await;
    events.next().await.expect("a snapshot first");
    let id = session.submit_ok(server, n).await;
    loop {
        let update = events.next().await.expect("the stream stays open");
        assert_ne!(
            update["type"], "done",
            "fibonacci({n}) ended before it progressed"
        );
        if update["type"] == "task" && update["id"] == id && update["progress"].as_f64() > Some(0.0)
        {
            return id;
        }
    }
}

/// Submits fibonacci(n) for `session` and waits for its line.
pub async fn line_of(server: &Server, session: &Session, n: i64) -> String {
    let mut events = session.events(server).await;
    events.next().await.expect("a snapshot first");
    let id = session.submit_ok(server, n).await;
    events.line(|u| u["task"] == id).await
}

/// A GET: the status and the body.
pub async fn get(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the server answers");
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Scrapes `url` (a `/metrics`): 200, `promtool` passes, and each of `families` (a line's
/// start) is there. Returns the scrape.
pub async fn scrape(url: String, families: &[&str]) -> String {
    let (status, scrape) = get(url).await;
    assert_eq!(status, 200, "{scrape}");
    promtool_check(&scrape);
    for family in families {
        assert!(scrape.contains(family), "{family} missing from:\n{scrape}");
    }
    scrape
}

/// `promtool check metrics` (Debian's prometheus package; `make test` installs it) passes on
/// `scrape`.
fn promtool_check(scrape: &str) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package, `make test` installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// `/json/counts.json` of the process that schedules: the dashboard listener's with embedded
/// workers, the app listener's with NATS workers.
pub async fn counts(server: &Server) -> Value {
    for url in [
        server.url("/json/counts.json"),
        server.dashboard_url("/json/counts.json"),
    ] {
        if let Ok(response) = reqwest::get(&url).await
            && response.status() == 200
        {
            return serde_json::from_str(&response.text().await.expect("a body"))
                .expect("counts as JSON");
        }
    }
    panic!(
        "no /json/counts.json on port {} or {}",
        server.port, server.dashboard_port
    );
}

/// `session`'s tasks still waiting for a worker, from a fresh stream's snapshot.
pub async fn waiting(server: &Server, session: &Session) -> usize {
    let mut events = session.events(server).await;
    let snapshot = events.next().await.expect("a snapshot first");
    snapshot["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["status"] == "queued")
        .count()
}

/// Issue 9's fairness scenario, against a server started with `--task-time-limit 2` and four
/// worker threads: session A floods (four fibonacci(93), then 10,000 × fibonacci(40)), yet B's
/// fibonacci(1) is done while A's work still waits, A's long tasks stop at the limit, and
/// after a crowd of cookie-less long tasks a fresh session C is still served ahead of them.
/// (How long B and C wait is a figure of `make bench`; here, the order is what is checked.)
pub async fn one_session_cannot_wedge_the_cluster(server: &Server) {
    let a = Session::new();
    let mut a_events = a.events(server).await;
    let mut fib93 = Vec::new();
    for _ in 0..4 {
        fib93.push(a.submit_ok(server, 93).await);
    }
    // All 10,000 are sent: past the cap each is refused, as more of A's tasks finish a few
    // more get in.
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..10_000 {
        match a.submit(server, 40).await {
            (200, _) => accepted += 1,
            (status, body) => {
                assert_eq!(status, 429, "{body}");
                assert!(body.contains("100 tasks waiting"), "{body}");
                refused += 1;
            }
        }
    }
    assert!(refused > 5_000, "{accepted} accepted, {refused} refused");

    let b = Session::new();
    let line = line_of(server, &b, 1).await;
    assert_eq!(line.split(" in ").next(), Some("fibonacci(1)=1"));
    // A's 100 fibonacci(40) take seconds on three threads: B did not wait behind them.
    let a_waiting = waiting(server, &a).await;
    assert!(
        a_waiting > 50,
        "A had {a_waiting} tasks waiting when B's line came"
    );

    // Lines arrive in completion order, not submission order.
    let mut stopped = std::collections::HashMap::new();
    while stopped.len() < fib93.len() {
        for line in a_events.lines().await {
            if fib93.iter().any(|id| line["task"] == *id) {
                stopped.insert(line["task"].clone(), line["text"].clone());
            }
        }
    }
    for text in stopped.values() {
        assert_eq!(text, "fibonacci(93) stopped: it ran past the 2 s limit");
    }

    // Only the time limit fails tasks here: A's four are counted already.
    let failed = counts(server).await["failed"].clone();
    for _ in 0..4 {
        let (status, body) = Session::cookieless().submit(server, 93).await;
        assert_eq!(status, 200, "{body}");
    }
    let c = Session::new();
    let line = line_of(server, &c, 1).await;
    assert_eq!(line.split(" in ").next(), Some("fibonacci(1)=1"));
    // The crowd's fibonacci(93)s run until the 2 s limit: C's line came first.
    assert_eq!(
        counts(server).await["failed"],
        failed,
        "C waited for the crowd's long tasks to stop"
    );
}
