//! Issue 29: the record in PostgreSQL (`offload serve --database postgres://…`), against the
//! release binary and a real PostgreSQL the tests start (`app::ssr::store::testing`): sessions,
//! history and tokens live there across a `kill -9`, a second server on the database refuses
//! to start, a database it cannot reach is said plainly, without its password, and a restart
//! of the database mid-run costs 503s while it is down and nothing else.

mod common;

use std::process::Command;

use std::time::Duration;

use app::ssr::store::testing::OwnServer;
use common::{PageStream, Server, Session, binary, eventually};
use reqwest::StatusCode;

/// `offload token ARGS… --database URL`: (exit code, stdout, stderr).
fn token(url: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .arg("token")
        .args(args)
        .args(["--database", url])
        .output()
        .expect("running offload token");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `GET /api/v1/tasks` with `token`: the status and the listed task ids.
async fn listed(server: &Server, token: &str) -> (StatusCode, Vec<u64>) {
    let response = reqwest::Client::new()
        .get(server.url("/api/v1/tasks"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let body: serde_json::Value =
        serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or_default();
    let ids = body["tasks"]
        .as_array()
        .map(|tasks| tasks.iter().filter_map(|t| t["id"].as_u64()).collect())
        .unwrap_or_default();
    (status, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgres_keeps_sessions_history_and_tokens_across_a_kill() {
    let url = app::ssr::store::testing::database().await;
    let server = Server::start(&["--database", &url]).await;
    let (code, out, err) = token(&url, &["create", "pg-bot"]);
    assert_eq!(code, 0, "{err}");
    let bot = out.trim().to_owned();
    assert_eq!(listed(&server, &bot).await, (StatusCode::OK, vec![]));

    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");
    let first = session.submit_ok(&server, 20).await;
    events.line(|l| l["task"] == first).await;
    let history = session.get_text(&server, "/history").await;
    assert!(history.contains(&format!("/tasks/{first}")), "{history}");

    let server = server.crash_and_restart().await;
    assert!(
        !server.data.join("offload.sqlite3").exists(),
        "the record is the database's, not the data directory's"
    );
    let mut events = session.events(&server).await;
    let snapshot = events.next().await.expect("a snapshot");
    let lines: Vec<u64> = snapshot["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["task"].as_u64())
        .collect();
    assert_eq!(lines, [first], "the same cookie, the same terminal");
    let history = session.get_text(&server, "/history").await;
    assert!(history.contains(&format!("/tasks/{first}")), "{history}");
    // Task ids go on from the record: never given twice.
    let second = session.submit_ok(&server, 21).await;
    assert!(second > first);
    events.line(|l| l["task"] == second).await;
    assert_eq!(listed(&server, &bot).await.0, StatusCode::OK);

    let (code, _, err) = token(&url, &["revoke", "pg-bot"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(listed(&server, &bot).await.0, StatusCode::UNAUTHORIZED);
    let (code, _, err) = token(&url, &["revoke", "pg-bot"]);
    assert_eq!(code, 2, "no live token of that name: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_database_refuses_to_start_and_the_first_goes_on() {
    let url = app::ssr::store::testing::database().await;
    let server = Server::start(&["--database", &url]).await;
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args(["--addr", "127.0.0.1:0", "--dashboard-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--database", &url])
        .output()
        .expect("offload runs");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("another Offload server is using the database"),
        "{text}"
    );
    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");
    let id = session.submit_ok(&server, 5).await;
    events.line(|l| l["task"] == id).await;
}

#[test]
fn a_database_it_cannot_reach_is_said_plainly_without_its_password() {
    let data = tempfile::tempdir().unwrap();
    for url in [
        "postgres://offload:s3cret@127.0.0.1:1/offload",
        "postgres://offload:s3cret@[not-a-host",
    ] {
        let out = Command::new(binary())
            .args(["--addr", "127.0.0.1:0", "--dashboard-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--database", url])
            .output()
            .expect("offload runs");
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("connecting to the database"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
    let (code, _, err) = token("postgres://offload:s3cret@127.0.0.1:1/offload", &["list"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("connecting to the database") && !err.contains("s3cret"),
        "{err}"
    );
}

/// `GET /health` of `server` (its dashboard's listener, with the embedded cluster).
async fn health(server: &Server) -> (StatusCode, String) {
    let response = reqwest::get(server.dashboard_url("/health"))
        .await
        .expect("the server answers");
    (response.status(), response.text().await.unwrap_or_default())
}

/// `POST /api/v1/tasks` of fibonacci(n) with `token`: the status, `Retry-After` and the body.
async fn api_submit(server: &Server, token: &str, n: u64) -> (StatusCode, Option<String>, String) {
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/tasks"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(format!(r#"{{"type": "fibonacci", "input": {{"n": {n}}}}}"#))
        .send()
        .await
        .expect("the server answers");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        response.status(),
        retry_after,
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restarted_mid_run_costs_503s_while_down_and_loses_nothing() {
    let database = OwnServer::start().await;
    let url = database.database().await;
    let server = Server::start(&["--database", &url]).await;
    let (code, out, err) = token(&url, &["create", "bot"]);
    assert_eq!(code, 0, "{err}");
    let bot = out.trim().to_owned();
    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");
    // Some seconds of work, under way when the database goes: its result comes during the
    // outage.
    let long = session.submit_ok(&server, 44).await;

    let stopping = tokio::task::spawn_blocking(move || {
        database.stop();
        database
    });
    let database = stopping.await.unwrap();
    let (status, retry_after, body) = api_submit(&server, &bot, 5).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert!(body.contains("try again"), "{body}");
    let (status, _) = session.submit(&server, 6).await;
    assert!(
        status >= 500,
        "a page's submission is refused too: {status}"
    );
    // The result is shown all the same, and waits for the record.
    let line = events.line(|l| l["task"] == long).await;
    assert!(line.contains("=701408733"), "{line}");

    database.start_again().await;
    let what = "/health says ok again";
    eventually(what, Duration::from_secs(20), || async {
        (health(&server).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    // Served again without a restart: the pool and the writer connect again.
    let what = "the API takes submissions again";
    let resubmitted = eventually(what, Duration::from_secs(20), || async {
        let (status, _, body) = api_submit(&server, &bot, 7).await;
        (status == StatusCode::ACCEPTED).then_some(body)
    })
    .await;
    assert!(resubmitted.contains("\"id\""), "{resubmitted}");
    let again = session.submit_ok(&server, 8).await;
    events.line(|l| l["task"] == again).await;

    // The result that came during the outage is on record: after a kill -9, the terminal has
    // it, and nothing runs again.
    let what = "the result of the outage is recorded";
    eventually(what, Duration::from_secs(20), || async {
        let history = session.get_text(&server, "/history?outcome=finished").await;
        history.contains(&format!("/tasks/{long}\"")).then_some(())
    })
    .await;
    let server = server.crash_and_restart().await;
    let mut events = session.events(&server).await;
    let snapshot = events.next().await.expect("a snapshot");
    let lines: Vec<(u64, String)> = snapshot["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let text = l["text"].as_str().unwrap_or_default().to_owned();
            (l["task"].as_u64().unwrap(), text)
        })
        .collect();
    // In the order they were recorded: the outage's result may come after a later one's.
    let mut ids: Vec<u64> = lines.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [long, again], "each once: {lines:?}");
    assert!(
        lines.iter().all(|(_, text)| !text.contains("rerun")),
        "nothing ran again: {lines:?}"
    );
    assert!(
        snapshot["tasks"].as_array().unwrap().is_empty(),
        "{snapshot}"
    );
}
