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
