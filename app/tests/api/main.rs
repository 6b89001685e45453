//! The JSON API in process: its router behind the session layer, a real store in a temporary
//! directory and the embedded cluster running test task types, called with
//! `tower::ServiceExt::oneshot`. Refusals and lists, checked without starting the binary.

#![cfg(feature = "ssr")]

mod batches;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use app::ssr::batches::{BatchConfig, Batches};
use app::ssr::state::DashboardUrl;
use app::ssr::store::{Retention, Store, WriterThread};
use app::ssr::stream::StreamLimits;
use app::ssr::{AppState, CookiePolicy, SessionConfig, Sessions, Shutdown, session_cookie};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::middleware::from_fn_with_state;
use cluster::{ClusterConfig, EmbeddedCluster, Registry, Task, TaskContext, TaskError};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A task that runs until the test opens its gate (or it is cancelled): it holds a worker for
/// exactly as long as a test needs, with no clock involved.
struct Gate;

/// Which gate to wait at.
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct GateInput {
    key: u64,
}

static OPENED: Mutex<Option<HashSet<u64>>> = Mutex::new(None);
/// The keys of every gate task a worker started, counted on the workers.
static STARTED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// The gate tasks with keys in `keys` that a worker started.
fn started(keys: std::ops::Range<u64>) -> Vec<u64> {
    let started = STARTED.lock().unwrap();
    started
        .iter()
        .copied()
        .filter(|k| keys.contains(k))
        .collect()
}
static OPENING: Condvar = Condvar::new();

fn open_gate(key: u64) {
    OPENED
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(key);
    OPENING.notify_all();
}

impl Task for Gate {
    const NAME: &'static str = "gate";
    const TITLE: &'static str = "Gate";
    const DESCRIPTION: &'static str = "Waits until the test opens its gate.";
    type Input = GateInput;
    type Output = u64;
    fn summary(input: &GateInput, _: &u64) -> String {
        format!("gate({}) opened", input.key)
    }
    fn run(input: GateInput, ctx: &TaskContext<'_>) -> Result<u64, TaskError> {
        STARTED.lock().unwrap().push(input.key);
        let mut opened = OPENED.lock().unwrap();
        loop {
            // A batch's keys (`batches::keys`) open with their test's gate too.
            if opened
                .as_ref()
                .is_some_and(|o| o.contains(&input.key) || o.contains(&(input.key / 1_000_000)))
            {
                return Ok(input.key);
            }
            if ctx.is_cancelled() {
                return Err(TaskError::Cancelled);
            }
            opened = OPENING
                .wait_timeout(opened, Duration::from_millis(5))
                .unwrap()
                .0;
        }
    }
}

/// The app's state and the API's router over a fresh store, with the cluster that runs them.
struct Harness {
    router: Router,
    /// The app's state, for what only a page sees (the session's queue and terminal).
    state: AppState,
    dir: tempfile::TempDir,
    /// Opened when the test ends, so no worker is left waiting.
    gate: u64,
    _cluster: EmbeddedCluster,
    _writer: WriterThread,
}

/// The browser session the tests call as, unless they say otherwise.
const SESSION: &str = "0123456789abcdef0123456789abcdef";

static NEXT_GATE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Harness {
    fn new() -> Self {
        Self::with_cluster(|_| {})
    }

    /// A harness whose cluster `configure` changed.
    fn with_cluster(configure: impl FnOnce(&mut ClusterConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer, _, next_task) =
            Store::open(dir.path(), "gate", Retention::default()).unwrap();
        let mut config = ClusterConfig {
            workers: 3,
            max_running_per_submitter: Some(2),
            ..ClusterConfig::default()
        };
        configure(&mut config);
        let cluster = EmbeddedCluster::start(config, Registry::empty().register::<Gate>()).unwrap();
        let state = AppState {
            leptos_options: leptos::config::LeptosOptions::builder()
                .output_name("offload")
                .build(),
            cluster: cluster.client(),
            sessions: Arc::new(Sessions::new(SessionConfig::default(), store, next_task)),
            streams: StreamLimits::new(8, 100),
            shutdown: Shutdown::default(),
            dashboard_url: DashboardUrl::parse("http://localhost:8787/status").unwrap(),
            idempotency: Default::default(),
            batches: Arc::new(Batches::new(BatchConfig::default(), 0)),
        };
        let router = app::ssr::api::router(&state)
            .0
            .layer(from_fn_with_state(CookiePolicy::default(), session_cookie))
            .with_state(state.clone());
        Self {
            router,
            state,
            dir,
            gate: NEXT_GATE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            _cluster: cluster,
            _writer: writer,
        }
    }

    /// `method path` with `body` as this test's browser session: (status, media type, JSON).
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> (StatusCode, String, Value) {
        self.call_as(SESSION, method, path, body).await
    }

    /// `method path` with `body` as the browser session `session` (32 hex digits).
    async fn call_as(
        &self,
        session: &str,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> (StatusCode, String, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, format!("offload_session={session}"));
        let request = match body {
            Some((media, body)) => request
                .header(header::CONTENT_TYPE, media)
                .body(Body::from(body.to_owned())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let media = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, media, json)
    }

    /// Submits a gate task (this test's gate) and returns its id.
    async fn submit_gate(&self) -> u64 {
        let body = json!({"type": "gate", "input": {"key": self.gate}}).to_string();
        let (status, _, task) = self
            .call("POST", "/api/v1/tasks", Some(("application/json", &body)))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{task}");
        task["id"].as_u64().unwrap()
    }

    async fn state_of(&self, id: u64) -> String {
        let (_, _, task) = self.call("GET", &format!("/api/v1/tasks/{id}"), None).await;
        task["state"].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        open_gate(self.gate);
    }
}

/// Waits until `check` holds, asking again as soon as the runtime has run other work; fails
/// after 10 s. (What the test waits for happens on the cluster's threads, not on a clock.)
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn assert_problem(what: &str, got: &(StatusCode, String, Value), status: u16, says: &str) {
    let (code, media, problem) = got;
    assert_eq!(code.as_u16(), status, "{what}: {problem}");
    assert_eq!(media, "application/problem+json", "{what}");
    assert_eq!(problem["status"], status, "{what}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(says),
        "{what}: {detail:?} should say {says:?}"
    );
}

#[tokio::test]
async fn every_refusal_is_a_problem_with_its_status() {
    let api = Harness::new();
    let json = Some((
        "application/json",
        r#"{"type": "gate", "input": {"key": 1}}"#,
    ));
    for (what, got, status, says) in [
        (
            "an unknown path",
            api.call("GET", "/api/v1/nope", None).await,
            404,
            "/api/v1/nope is not an endpoint of this API",
        ),
        (
            "an unknown path under a task",
            api.call("POST", "/api/v1/tasks/1/nope", None).await,
            404,
            "is not an endpoint",
        ),
        (
            "the API's root",
            api.call("GET", "/api/v1", None).await,
            404,
            "/api/v1/openapi.json lists them",
        ),
        (
            "a body of another media type",
            api.call(
                "POST",
                "/api/v1/tasks",
                Some(("text/plain", r#"{"type": "gate"}"#)),
            )
            .await,
            415,
            "Content-Type: application/json",
        ),
        (
            "JSON that is not a task",
            api.call("POST", "/api/v1/tasks", Some(("application/json", "[1]")))
                .await,
            400,
            "invalid type",
        ),
        (
            "a task id that is not a number",
            api.call("GET", "/api/v1/tasks/abc", None).await,
            404,
            "\"abc\" is not a task id",
        ),
        (
            "another owner's task, or none",
            api.call("GET", "/api/v1/tasks/999", None).await,
            404,
            "task 999 is not one of yours",
        ),
        (
            "a state that does not exist",
            api.call("GET", "/api/v1/tasks?state=sleeping", None).await,
            400,
            "unknown variant `sleeping`",
        ),
        (
            "a page of none",
            api.call("GET", "/api/v1/tasks?limit=0", None).await,
            400,
            "limit must be from 1 to 100 (got 0)",
        ),
        (
            "an unknown type",
            api.call(
                "POST",
                "/api/v1/tasks",
                Some(("application/json", r#"{"type": "nope"}"#)),
            )
            .await,
            400,
            "nope",
        ),
    ] {
        assert_problem(what, &got, status, says);
    }
    // The same body as JSON is accepted: the refusals above were about what they said.
    let (status, _, _) = api.call("POST", "/api/v1/tasks", json).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_state_filter_pages_through_exactly_the_tasks_in_that_state() {
    let api = Harness::new();
    // Two run (the session's cap), the third and fourth wait behind them; all are newer
    // than the two that ended.
    let ended = [api.submit_gate().await, api.submit_gate().await];
    eventually("the first two run", || async {
        api.state_of(ended[0]).await == "running" && api.state_of(ended[1]).await == "running"
    })
    .await;
    for id in ended {
        let (status, _, _) = api
            .call("POST", &format!("/api/v1/tasks/{id}/cancel"), None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    eventually("both are cancelled", || async {
        api.state_of(ended[0]).await == "cancelled" && api.state_of(ended[1]).await == "cancelled"
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(api.submit_gate().await);
    }
    eventually("two run", || async {
        let (_, _, page) = api.call("GET", "/api/v1/tasks?state=running", None).await;
        page["tasks"].as_array().is_some_and(|t| t.len() == 2)
    })
    .await;

    // One a page: each page has its one, and the cursor leads to the rest.
    for state in ["running", "queued"] {
        let mut seen = Vec::new();
        let mut path = format!("/api/v1/tasks?state={state}&limit=1");
        loop {
            let (status, _, page) = api.call("GET", &path, None).await;
            assert_eq!(status, StatusCode::OK);
            let tasks = page["tasks"].as_array().unwrap();
            assert_eq!(tasks.len(), 1, "{state}: {page}");
            assert_eq!(tasks[0]["state"], state);
            seen.push(tasks[0]["id"].as_u64().unwrap());
            match page["next_cursor"].as_str() {
                Some(cursor) => {
                    path = format!("/api/v1/tasks?state={state}&limit=1&cursor={cursor}")
                }
                None => break,
            }
        }
        assert_eq!(seen.len(), 2, "{state}: {seen:?}");
        assert!(
            seen.windows(2).all(|w| w[0] > w[1]),
            "newest first: {seen:?}"
        );
        assert!(
            seen.iter().all(|id| ids.contains(id)),
            "{seen:?} of {ids:?}"
        );
    }
    let (_, _, page) = api
        .call("GET", "/api/v1/tasks?state=cancelled&limit=1", None)
        .await;
    assert_eq!(page["tasks"][0]["id"], ended[1]);
    assert!(page["next_cursor"].is_string(), "{page}");
}

/// Collects what the code under test logs.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_store_failure_is_a_500_that_hides_the_cause_and_logs_it() {
    let api = Harness::new();
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    // Someone removes the tasks' table under the running server.
    let conn = app::ssr::store::open_shared(api.dir.path(), "gate").unwrap();
    conn.execute_batch("DROP TABLE tasks").unwrap();

    let got = api.call("GET", "/api/v1/tasks", None).await;
    assert_problem(
        "a store failure",
        &got,
        500,
        "something went wrong on the server (error ",
    );
    let detail = got.2["detail"].as_str().unwrap().to_owned();
    assert!(
        !detail.contains("tasks") && !detail.to_lowercase().contains("sql"),
        "{detail}"
    );
    let id = detail
        .split("(error ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let line = logged
        .lines()
        .find(|l| l.contains(id))
        .unwrap_or_else(|| panic!("error {id} is not in the log:\n{logged}"));
    assert!(line.contains("no such table: tasks"), "{line}");
}
