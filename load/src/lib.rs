//! Offload's load and soak tool. Many concurrent browser sessions, each with its own cookie,
//! open the task page's event stream, submit fibonacci tasks through the same server function
//! the page posts to, and wait for each result on the stream, as the page does. In API mode
//! ([`LoadConfig::api`]) the owners are tokens instead: each follows `/api/v1/events` and
//! posts to `/api/v1/tasks`, as a script would.
//!
//! It starts the server itself (its own data directory, free loopback ports, short session
//! expiry) so that it can read the server's memory before, during and after the run, and it
//! talks to nothing but 127.0.0.1. Every run is bounded in count (sessions × tasks) and in
//! time (`max_wait` per result, `soak` for the whole).

pub mod balancer;
pub mod owners;
pub mod soak;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The `offload` binary to start.
    pub server: PathBuf,
    /// Concurrent sessions.
    pub sessions: usize,
    /// Tasks each session submits, one after the other.
    pub tasks_per_session: usize,
    /// The n of each fibonacci task.
    pub n: i64,
    /// Sessions start spread over this long, as visitors arrive.
    pub ramp: Duration,
    /// Longest wait for one result before it counts as an error.
    pub max_wait: Duration,
    /// The server's idle-session expiry, in seconds (short, so the run can see it).
    pub session_idle_secs: u64,
    /// Owners are API tokens (made with `offload token create`) driving `/api/v1`, instead
    /// of browser sessions.
    pub api: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            server: PathBuf::from("target/release/offload"),
            sessions: 1_000,
            tasks_per_session: 5,
            n: 10,
            ramp: Duration::from_secs(2),
            max_wait: Duration::from_secs(30),
            session_idle_secs: 2,
            api: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("starting the server {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the server did not answer within 15 s")]
    NotReady,
    #[error("reading the server's memory: {0}")]
    Rss(String),
    #[error("making API tokens: {0}")]
    Tokens(String),
}

/// One round's figures.
#[derive(Debug, Clone)]
pub struct Round {
    pub results: usize,
    pub errors: usize,
    /// Submit → result, sorted.
    pub latencies: Vec<Duration>,
    pub took: Duration,
    pub rss_peak_kb: u64,
}

impl Round {
    /// One line of its figures.
    pub fn summary(&self) -> String {
        format!(
            "{} results, {} errors in {:.1} s; submit→result p50 {}, p99 {}, max {}; RSS peak {}",
            self.results,
            self.errors,
            self.took.as_secs_f64(),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            mb(self.rss_peak_kb)
        )
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i]
    }
}

/// A started server, stopped when dropped.
pub struct Target {
    /// The server, when the target started it.
    child: Option<tokio::process::Child>,
    pid: u32,
    base: String,
    server: PathBuf,
    data: PathBuf,
    /// The data directory, when the target made it (removed with the target).
    _made: Option<tempfile::TempDir>,
}

impl Target {
    /// Starts `config.server` on a free loopback port, with a data directory of its own.
    pub async fn start(config: &LoadConfig) -> Result<Self, LoadError> {
        let made = tempfile::tempdir().map_err(|source| LoadError::Spawn {
            path: config.server.clone(),
            source,
        })?;
        let mut target = Self::start_in(config, made.path()).await?;
        target._made = Some(made);
        Ok(target)
    }

    /// Starts `config.server` on a free loopback port, on the data directory `data` (which a
    /// test or a benchmark may have filled).
    pub async fn start_in(config: &LoadConfig, data: &Path) -> Result<Self, LoadError> {
        let port = free_port();
        let dashboard = free_port();
        let child = tokio::process::Command::new(&config.server)
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--dashboard-addr")
            .arg(format!("127.0.0.1:{dashboard}"))
            .arg("--data-dir")
            .arg(data)
            .arg("--session-idle-secs")
            .arg(config.session_idle_secs.to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| LoadError::Spawn {
                path: config.server.clone(),
                source,
            })?;
        let pid = child.id().unwrap_or(0);
        let target = Self {
            child: Some(child),
            pid,
            base: format!("http://127.0.0.1:{port}"),
            server: config.server.clone(),
            data: data.to_owned(),
            _made: None,
        };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            let ready = http
                .get(format!("{}/api/events", target.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(target);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(LoadError::NotReady)
    }

    /// A server someone else started, reached at `base` (a balancer in front of it, say),
    /// whose memory is process `pid`'s; `server` made it and `data` is its data directory
    /// (for tokens). Left running when the target stops.
    pub fn started(base: String, pid: u32, server: PathBuf, data: PathBuf) -> Self {
        Self {
            child: None,
            pid,
            base,
            server,
            data,
            _made: None,
        }
    }

    /// `count` API tokens, made by the server's own `offload token create` in one run.
    pub async fn tokens(&self, count: usize) -> Result<Vec<String>, LoadError> {
        let names: Vec<String> = (0..count).map(|i| format!("load-{i}")).collect();
        let output = tokio::process::Command::new(&self.server)
            .arg("token")
            .arg("create")
            .args(&names)
            .arg("--data-dir")
            .arg(&self.data)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| LoadError::Tokens(e.to_string()))?;
        let tokens: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        if !output.status.success() || tokens.len() != count {
            return Err(LoadError::Tokens(
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ));
        }
        Ok(tokens)
    }

    /// The server's resident memory.
    pub fn rss_kb(&self) -> Result<u64, LoadError> {
        rss_kb(self.pid)
    }

    /// Its data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    pub async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill().await;
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The resident memory of process `pid`, from /proc.
pub fn rss_kb(pid: u32) -> Result<u64, LoadError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| LoadError::Rss(e.to_string()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| LoadError::Rss("no VmRSS line".into()))
}

/// Runs `config.sessions` sessions (or, in API mode, the owners of `tokens`) against
/// `target` once.
pub async fn round(target: &Target, config: &LoadConfig, tokens: &[String]) -> Round {
    // Two connections per session (its stream and its posts), plus some to spare.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(config.sessions)
        .build()
        .unwrap_or_default();
    let peak = Arc::new(AtomicU64::new(target.rss_kb().unwrap_or(0)));
    let sampler = {
        let (peak, pid) = (peak.clone(), target.pid);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kb(pid).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    static ROUND: AtomicU64 = AtomicU64::new(0);
    let round = ROUND.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let spacing = config.ramp / config.sessions.max(1) as u32;
    let sessions: Vec<_> = (0..config.sessions)
        .map(|i| {
            let (http, base, config) = (http.clone(), target.base.clone(), config.clone());
            let cookie = format!(
                "offload_session={:016x}{:08x}{:08x}",
                std::process::id(),
                round,
                i
            );
            let who = match tokens.get(i) {
                Some(token) => Caller::Token(token.clone()),
                None => Caller::Session(cookie),
            };
            tokio::spawn(async move {
                tokio::time::sleep(spacing * i as u32).await;
                caller(&http, &base, &who, &config).await
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for outcome in futures::future::join_all(sessions).await {
        match outcome {
            Ok((times, failed)) => {
                latencies.extend(times);
                errors += failed;
            }
            Err(_) => errors += config.tasks_per_session,
        }
    }
    sampler.abort();
    latencies.sort();
    Round {
        results: latencies.len(),
        errors,
        latencies,
        took: started.elapsed(),
        rss_peak_kb: peak.load(Ordering::Relaxed),
    }
}

/// Who one of the crowd is: a browser session (its cookie, the page's endpoints and stream) or
/// an API owner (a token, `/api/v1`).
enum Caller {
    Session(String),
    Token(String),
}

impl Caller {
    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Session(cookie) => request.header("cookie", cookie),
            Self::Token(token) => request.bearer_auth(token),
        }
    }

    fn stream_path(&self) -> &'static str {
        match self {
            Self::Session(_) => "/api/events",
            Self::Token(_) => "/api/v1/events",
        }
    }

    /// The submission of fibonacci(`n`), as the page posts it or as a script does.
    fn submit(&self, http: &reqwest::Client, base: &str, n: i64) -> reqwest::RequestBuilder {
        let request = match self {
            Self::Session(_) => http
                .post(format!("{base}/api/submit"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("n={n}")),
            Self::Token(_) => http
                .post(format!("{base}/api/v1/tasks"))
                .header("content-type", "application/json")
                .body(serde_json::json!({"type": "fibonacci", "input": {"n": n}}).to_string()),
        };
        self.authorize(request)
    }

    /// The task id an accepted submission answers with.
    fn accepted_id(&self, answer: &Value) -> Option<u64> {
        match self {
            Self::Session(_) => answer["task"]["id"].as_u64(),
            Self::Token(_) => answer["id"].as_u64(),
        }
    }

    /// Whether task `id` finished, if `update` says it ended.
    fn ended(&self, update: &Value, id: u64) -> Option<bool> {
        match self {
            // The line comes on its own, or inside a snapshot (the stream's first, or one
            // sent after the page fell behind).
            Self::Session(_) => match update["type"].as_str() {
                Some("done") => Some(update.clone()),
                Some("snapshot") => update["lines"]
                    .as_array()
                    .and_then(|lines| lines.iter().find(|l| l["task"] == id).cloned()),
                _ => None,
            }
            .filter(|line| line["task"] == id)
            .map(|line| line["outcome"] == "finished"),
            Self::Token(_) => (update["id"] == id && update["summary"].is_string())
                .then(|| update["state"] == "finished"),
        }
    }
}

/// One of the crowd: its stream, then its tasks one after the other. Returns the submit →
/// result times and the number of tasks that failed.
async fn caller(
    http: &reqwest::Client,
    base: &str,
    who: &Caller,
    config: &LoadConfig,
) -> (Vec<Duration>, usize) {
    let mut times = Vec::new();
    let stream = who
        .authorize(http.get(format!("{base}{}", who.stream_path())))
        .send()
        .await;
    let mut events = match stream {
        Ok(r) if r.status().is_success() => Events::new(r),
        _ => return (times, config.tasks_per_session),
    };
    // Its first update: the snapshot.
    if events.next().await.is_none() {
        return (times, config.tasks_per_session);
    }
    for done in 0..config.tasks_per_session {
        let asked = Instant::now();
        let id = match who.submit(http, base, config.n).send().await {
            Ok(r) if r.status().is_success() => r
                .bytes()
                .await
                .ok()
                .and_then(|body| serde_json::from_slice::<Value>(&body).ok())
                .and_then(|answer| who.accepted_id(&answer)),
            _ => None,
        };
        let Some(id) = id else {
            return (times, config.tasks_per_session - done);
        };
        let result = tokio::time::timeout(config.max_wait, async {
            while let Some(update) = events.next().await {
                if let Some(finished) = who.ended(&update, id) {
                    return finished;
                }
            }
            false
        })
        .await;
        match result {
            Ok(true) => times.push(asked.elapsed()),
            _ => return (times, config.tasks_per_session - done),
        }
    }
    (times, 0)
}

/// An update as the stream sends it, `{"task": {...}}` or `"restarting"`, as one object with
/// its kind under `"type"`: `{"type": "task", ...}`, the shape this tool and the tests read.
fn flatten(update: Value) -> Value {
    match update {
        Value::String(kind) => serde_json::json!({ "type": kind }),
        Value::Object(map) if map.len() == 1 => {
            let (kind, inner) = map.into_iter().next().expect("one entry");
            let mut inner = match inner {
                Value::Object(fields) => fields,
                _ => serde_json::Map::new(),
            };
            inner.insert("type".into(), kind.into());
            Value::Object(inner)
        }
        other => other,
    }
}

/// A page's event stream (`GET /api/events`), one JSON update at a time, flattened (see
/// [`flatten`]).
pub struct Events {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buffer: String,
}

impl Events {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            body: Box::pin(response.bytes_stream().map(|c| c.map(|b| b.to_vec()))),
            buffer: String::new(),
        }
    }

    /// The next update; None when the stream ends.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return serde_json::from_str(&data).ok().map(flatten);
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// Waits until idle sessions have had time to expire on `target`, then returns its memory.
/// The server notices a closed stream at its next keep-alive (15 s), the session then idles
/// for `session_idle_secs`, and the expiry sweep runs every 2 s.
pub async fn rss_after_expiry(target: &Target, config: &LoadConfig) -> Result<u64, LoadError> {
    tokio::time::sleep(Duration::from_secs(15 + config.session_idle_secs + 2 + 3)).await;
    target.rss_kb()
}

/// Megabytes, for printing.
pub fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_flattened_with_their_kind() {
        let task = serde_json::json!({"task": {"id": 3, "status": "running"}});
        assert_eq!(
            flatten(task),
            serde_json::json!({"type": "task", "id": 3, "status": "running"})
        );
        assert_eq!(
            flatten(serde_json::json!("restarting")),
            serde_json::json!({"type": "restarting"})
        );
    }
}
