//! The dashboard listener's operational endpoints (Dask's `/metrics`, `/health`,
//! `/json/counts.json`, `/json/identity.json`, `/workers`), and each listener serving only its
//! own routes.

mod common;

use common::{PageStream, Server, Session, get, scrape};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_serves_only_its_own_routes() {
    let server = Server::start(&[]).await;
    for path in [
        "/status",
        "/individual-cpu",
        "/individual-task-stream",
        "/dashboard/stream",
    ] {
        let (status, body) = get(server.url(path)).await;
        assert_eq!(status, 404, "app {path}: {body}");
    }
    for path in ["/", "/dashboard"] {
        assert_eq!(get(server.url(path)).await.0, 200, "app {path}");
    }
    let session = Session::new();
    for path in [
        "/api/submit",
        "/api/cancel",
        "/api/task-page",
        "/api/cluster-info",
    ] {
        let response = session
            .request(reqwest::Method::POST, server.dashboard_url(path))
            .body("n=1")
            .send()
            .await
            .expect("the dashboard answers");
        assert_eq!(response.status(), 404, "dashboard {path}");
    }
    for path in [
        "/status",
        "/individual-cpu",
        "/workers",
        "/health",
        "/json/counts.json",
    ] {
        assert_eq!(
            get(server.dashboard_url(path)).await.0,
            200,
            "dashboard {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_show_the_tasks_and_the_json_and_workers_pages_agree() {
    let server = Server::start(&[]).await;
    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");
    for n in 0..10 {
        let id = session.submit_ok(&server, n).await;
        events.line(|l| l["task"] == id).await;
    }

    let scrape = scrape(
        server.dashboard_url("/metrics"),
        &[
            "offload_task_duration_seconds_bucket",
            "offload_http_requests_total{",
            "offload_worker_threads 4",
            "offload_sessions 1",
            "offload_open_streams 1",
            "offload_queue_length 0",
            "offload_worker_memory_bytes{",
        ],
    )
    .await;
    let finished = scrape
        .lines()
        .find(|l| {
            l.starts_with("offload_tasks_total{")
                && l.contains("task_type=\"fibonacci\"")
                && l.contains("outcome=\"finished\"")
        })
        .unwrap_or_else(|| panic!("no finished fibonacci count in:\n{scrape}"));
    assert!(finished.ends_with(" 10"), "{finished}");

    let (status, counts) = get(server.dashboard_url("/json/counts.json")).await;
    assert_eq!(status, 200);
    let counts: Value = serde_json::from_str(&counts).unwrap();
    assert_eq!(counts["finished"], 10);
    assert_eq!(counts["worker_threads"], 4);
    assert_eq!(counts["sessions"], 1);

    let (status, identity) = get(server.dashboard_url("/json/identity.json")).await;
    assert_eq!(status, 200);
    let identity: Value = serde_json::from_str(&identity).unwrap();
    assert_eq!(identity["type"], "Offload");
    assert_eq!(identity["backend"], "embedded");
    assert_eq!(identity["workers"][0]["pid"], server.pid());
    assert_eq!(identity["workers"][0]["tasks_done"], 10);
    // Which task types it runs, each with its schema hash's first digits.
    let runs: Vec<&str> = identity["workers"][0]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        runs.len() >= 3
            && runs
                .iter()
                .any(|r| r.starts_with("fibonacci ") && r.len() == 18),
        "{runs:?}"
    );

    let (status, page) = get(server.dashboard_url("/workers")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("1 worker processes, 4 threads (embedded)"),
        "{page}"
    );
    assert!(
        page.contains(&format!("<td>{}</td>", server.pid())),
        "{page}"
    );
    assert!(
        page.contains(runs[0]),
        "the page names the types too: {page}"
    );

    let (status, health) = get(server.dashboard_url("/health")).await;
    assert_eq!((status, health.as_str()), (200, "ok"));
}

/// The value of the metric line that starts with `name ` in `scrape`.
fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from:\n{scrape}"))
        .parse()
        .unwrap()
}

/// Retention 0: at the next start every ended task leaves the database, the unfinished one
/// stays (and runs again), and the database's size drops on the dashboard and in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_retention_ended_tasks_leave_and_unfinished_ones_stay() {
    let server = Server::start(&["--workers", "2"]).await;
    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");
    // 40 ended tasks with 8 KB of input each; then one that will not end before the crash.
    let text = "x".repeat(8_000);
    let mut ended = Vec::new();
    for i in 0..40 {
        let form = format!("task=hash-chain&text={text}{i}&rounds=1");
        ended.push(session.submit_form_ok(&server, &form).await);
    }
    for id in &ended {
        events.line(|l| l["task"] == *id).await;
    }
    let unfinished = session.submit_ok(&server, 60).await;
    let families = ["offload_db_bytes", "offload_db_tasks", "offload_db_owners"];
    let before = scrape(server.dashboard_url("/metrics"), &families).await;
    assert_eq!(metric(&before, "offload_db_tasks"), 41.0);
    assert_eq!(metric(&before, "offload_db_owners"), 1.0);
    let bytes = metric(&before, "offload_db_bytes");
    assert!(bytes > 320_000.0, "40 × 8 KB of input: {bytes} bytes");

    let server = server
        .crash_and_restart_with(&["--retention-days", "0"])
        .await;
    let after = scrape(server.dashboard_url("/metrics"), &families).await;
    assert_eq!(metric(&after, "offload_db_tasks"), 1.0, "{after}");
    assert_eq!(metric(&after, "offload_db_owners"), 0.0);
    assert_eq!(metric(&after, "offload_db_pruned_total"), 40.0);
    let shrunk = metric(&after, "offload_db_bytes");
    assert!(
        shrunk < bytes / 4.0,
        "{shrunk} bytes in use, {bytes} before"
    );

    // The history has only the unfinished task; the dashboard page says what the store holds.
    let history = session.get_text(&server, "/history").await;
    assert!(
        history.contains(&format!("/tasks/{unfinished}")),
        "{history}"
    );
    assert!(
        !history.contains(&format!("/tasks/{}", ended[0])),
        "{history}"
    );
    let page = session.get_text(&server, "/dashboard").await;
    assert!(
        page.contains("1 task of 0 owners · ended tasks kept 0 days, at most 100000 per owner · 40 pruned since start"),
        "{page}"
    );
    let record = session
        .get_json(&server, &format!("/api/v1/tasks/{unfinished}"))
        .await;
    assert!(
        matches!(record["state"].as_str(), Some("queued" | "running")),
        "{record}"
    );
    session
        .request(
            reqwest::Method::POST,
            server.url(&format!("/api/v1/tasks/{unfinished}/cancel")),
        )
        .header("origin", server.url(""))
        .send()
        .await
        .unwrap();
}

/// Nonsense retention flags stop the start with the flag's name.
#[test]
fn a_negative_retention_is_refused_at_start() {
    let out = std::process::Command::new(common::binary())
        .args(["--retention-days=-1", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("--retention-days must be a number of days, 0 or more (got -1)"),
        "{said}"
    );
}
