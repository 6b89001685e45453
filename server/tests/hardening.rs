//! Issue 9's acceptance, against the real binary on loopback: a careless or hostile user can
//! neither wedge the service nor grow its memory without bound, every refusal says what
//! happened with its status, and nothing accepted is lost to a `kill -9`.
//!
//! The tests take turns (one server at a time): on two cores, a second server's load would
//! make the "within 1 s" checks measure the other test.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{PageStream, Server, Session, one_session_cannot_wedge_the_cluster};
use serde_json::Value;

/// Each test runs on its own runtime; tokio's mutex works across them.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_cannot_wedge_the_cluster_and_nor_can_a_crowd_of_fresh_ones() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&["--task-time-limit", "2"]).await;
    one_session_cannot_wedge_the_cluster(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_cookieless_requests_leave_nothing_behind() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&[]).await;
    let flood = |count: usize| {
        let base = server.url("");
        async move {
            let http = reqwest::Client::new();
            let mut failures = 0;
            let mut requests = futures::stream::iter(0..count)
                .map(|i| {
                    let (http, base) = (http.clone(), base.clone());
                    async move {
                        let response = match i % 3 {
                            0 => http.get(format!("{base}/")).send().await,
                            1 => http.get(format!("{base}/api/events")).send().await,
                            _ => {
                                http.post(format!("{base}/api/cancel"))
                                    .header("content-type", "application/x-www-form-urlencoded")
                                    .body(format!("id={i}"))
                                    .send()
                                    .await
                            }
                        };
                        let expected = if i % 3 == 2 { 404 } else { 200 };
                        match response {
                            Ok(r) if r.status() == expected => r.bytes().await.is_err(),
                            _ => true,
                        }
                    }
                })
                .buffer_unordered(32);
            while let Some(failed) = requests.next().await {
                failures += usize::from(failed);
            }
            failures
        }
    };
    use futures::StreamExt;
    // First use of each code path (allocator arenas, caches) is not growth.
    assert_eq!(flood(3_000).await, 0);
    let before = server.rss_kb();
    assert_eq!(
        flood(100_000).await,
        0,
        "every request answered as expected"
    );
    let after = server.rss_kb();
    let grown_mb = after.saturating_sub(before) as f64 / 1024.0;
    println!("RSS {before} kB → {after} kB after 100,000 cookie-less requests");
    assert!(grown_mb < 20.0, "RSS grew by {grown_mb:.1} MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_cap_get_503_and_the_rest_of_the_service_carries_on() {
    let _turn = ONE_AT_A_TIME.lock().await;
    rlimit::increase_nofile_limit(u64::MAX).expect("raise this test's open-files limit");
    let server = Server::start(&["--max-streams", "1000"]).await;
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..1_100 {
        let session = Session::new();
        let response = session
            .request(reqwest::Method::GET, server.url("/api/events"))
            .send()
            .await
            .expect("answered");
        match response.status().as_u16() {
            200 => open.push(response),
            503 => {
                refused += 1;
                assert!(response.text().await.unwrap().contains("1000 live streams"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((open.len(), refused), (1_000, 100));

    // The dashboard still answers (how fast is a figure of `make bench`).
    let status = reqwest::get(server.dashboard_url("/status")).await.unwrap();
    assert_eq!(status.status(), 200);

    // A fresh session submits and, with no stream to spare, sees its line on the page itself.
    let fresh = Session::new();
    fresh.submit_ok(&server, 20).await;
    common::eventually(
        "the result reached the page",
        Duration::from_secs(2),
        || async {
            let page = fresh.get_text(&server, "/").await;
            page.contains("fibonacci(20)=6765 in").then_some(())
        },
    )
    .await;
    drop(open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_hosts_and_origins_are_answered_and_the_profiler_stays_off() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&["--header-read-timeout", "1"]).await;

    // A client that never finishes its headers is let go.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the connection is closed after the header timeout"
    );

    let http = reqwest::Client::new();
    for url in [server.url("/"), server.dashboard_url("/status")] {
        let evil = http
            .get(&url)
            .header("host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(evil.status(), 403, "{url}");
        let fine = http
            .get(&url)
            .header("host", "localhost")
            .send()
            .await
            .unwrap();
        assert_eq!(fine.status(), 200, "{url}");
    }
    let rebinding = http
        .post(server.url("/api/submit"))
        .header("host", format!("evil.example:{}", server.port))
        .header("origin", format!("http://evil.example:{}", server.port))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("n=1")
        .send()
        .await
        .unwrap();
    assert_eq!(rebinding.status(), 403);
    let forged_origin = Session::new()
        .request(reqwest::Method::POST, server.url("/api/submit"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("n=1")
        .send()
        .await
        .unwrap();
    assert_eq!(forged_origin.status(), 403);

    // Asking for profiles without --profiler: the frames say it is off.
    let mut frames = Session::cookieless()
        .request(
            reqwest::Method::GET,
            server.dashboard_url("/dashboard/stream?profile=true"),
        )
        .send()
        .await
        .unwrap()
        .bytes_stream();
    use futures::StreamExt;
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = frames.next().await.expect("a frame").unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let frame: Value =
        serde_json::from_str(text.trim().trim_start_matches("data:").trim()).unwrap();
    assert_eq!(frame["profiles"]["disabled"], true);
    assert_eq!(frame["profiles"]["hz"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_status_and_a_message() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut server = Server::start(&[
        "--workers",
        "1",
        "--max-queued-per-session",
        "2",
        "--queue-capacity",
        "3",
        "--max-sessions",
        "2",
        "--shutdown-grace",
        "5",
    ])
    .await;
    let s = Session::new();
    let big = format!("n={}", "1".repeat(20_000));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/api/submit", "n=-1".into(), 400, "n must be 0 or more"),
        ("/api/submit", "n=94".into(), 400, "at most 93"),
        ("/api/submit", "n=2.5".into(), 400, "whole number"),
        ("/api/submit", "n=abc".into(), 400, "whole number"),
        (
            "/api/submit",
            "".into(),
            400,
            "Enter n: a whole number from 0 to 93.",
        ),
        ("/api/submit", "m=3".into(), 400, "this task has no field"),
        ("/api/submit", "n=3&evil=1".into(), 400, "its fields are n"),
        (
            "/api/submit",
            "task=nope&n=3".into(),
            400,
            "there is no task type",
        ),
        ("/api/submit", "task=fibonacci&n=3&n=4".into(), 400, ""),
        ("/api/cancel", "id=999".into(), 404, "not in your queue"),
        ("/api/cancel", "id=x".into(), 400, "invalid digit"),
        ("/api/submit", big, 413, "16 KB"),
    ];
    for (path, form, status, message) in cases {
        let (got, body) = s.post(&server, path, &form).await;
        assert_eq!(got, status, "{path} {:.40}: {body}", form);
        assert!(body.contains(message), "{path} {:.40}: {body}", form);
    }

    // The only worker runs s's first task; two more wait; a third waiting one is too many.
    let mut events = s.events(&server).await;
    s.submit_ok(&server, 60).await;
    while events.next().await.expect("open")["status"] != "running" {}
    s.submit_ok(&server, 60).await;
    s.submit_ok(&server, 60).await;
    let (status, body) = s.submit(&server, 60).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("2 tasks waiting"), "{body}");
    // Another session's task fills the shared queue (3).
    let t = Session::new();
    t.submit_ok(&server, 60).await;
    let (status, body) = t.submit(&server, 60).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("busy: 3 tasks"), "{body}");
    // Two busy sessions, the most allowed: a third cannot be created.
    let (status, body) = Session::new().submit(&server, 1).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("2 sessions"), "{body}");

    // While the server stops, submissions are refused and say why.
    server.terminate();
    common::eventually(
        "a stopping server answers 503 with a reason",
        Duration::from_secs(2),
        || async {
            let (status, body) = s.submit(&server, 1).await;
            (status == 503 && body.contains("restarting")).then_some(())
        },
    )
    .await;
    // After the grace (5 s) for the running task, both listeners drain and it exits cleanly.
    let status = server.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_loses_nothing_and_shows_every_result_once_in_completion_order() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&[]).await;
    let sessions = [Session::new(), Session::new()];
    let mut ids: Vec<HashSet<u64>> = vec![HashSet::new(), HashSet::new()];
    let mut streams = Vec::new();
    for session in &sessions {
        let mut events = session.events(&server).await;
        events.next().await.expect("a snapshot");
        streams.push(events);
    }
    // Two task types: the first session's fibonacci(41), the second's hash chains of about
    // the same length.
    const CHAIN: &str = "task=hash-chain&text=crash&algorithm=sha256&rounds=3000000";
    for _ in 0..10 {
        ids[0].insert(sessions[0].submit_ok(&server, 41).await);
        ids[1].insert(sessions[1].submit_form_ok(&server, CHAIN).await);
    }
    // Some finish, some run, some wait: then the server dies.
    streams[0].line(|_| true).await;
    drop(streams);
    let server = server.crash_and_restart().await;

    let expected = ["fibonacci(41)=165580141 in ", "sha256×3000000(\"crash\")="];
    for ((session, ids), expected) in sessions.iter().zip(&ids).zip(expected) {
        let mut events = session.events(&server).await;
        let mut lines: Vec<Value> = Vec::new();
        let snapshot = events.next().await.unwrap();
        lines.extend(snapshot["lines"].as_array().unwrap().iter().cloned());
        while lines.len() < 10 {
            let update = events.next().await.expect("stream open");
            match update["type"].as_str() {
                Some("done") => lines.push(update),
                // A page that fell behind is sent the whole state again.
                Some("snapshot") => lines = update["lines"].as_array().unwrap().clone(),
                _ => {}
            }
        }
        let seen: Vec<u64> = lines.iter().map(|l| l["task"].as_u64().unwrap()).collect();
        assert_eq!(
            seen.iter().copied().collect::<HashSet<_>>(),
            *ids,
            "each task once"
        );
        assert_eq!(seen.len(), 10);
        let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
        assert!(texts.iter().all(|t| t.starts_with(expected)), "{texts:?}");
        let results: HashSet<&str> = texts
            .iter()
            .map(|t| t.split(" in ").next().unwrap())
            .collect();
        assert_eq!(results.len(), 1, "every rerun computes the same: {texts:?}");
        assert!(
            texts.iter().any(|t| t.ends_with("(rerun after a restart)")),
            "the rerun is marked: {texts:?}"
        );
        // The API counts the restart as an attempt.
        for (id, text) in seen.iter().zip(&texts) {
            let record = session
                .get_json(&server, &format!("/api/v1/tasks/{id}"))
                .await;
            let rerun = text.ends_with("(rerun after a restart)");
            assert_eq!(record["attempts"], 1 + u32::from(rerun), "{record}");
        }

        // A reload: the same history, in the same (completion) order.
        let mut again = session.events(&server).await;
        let snapshot = again.next().await.unwrap();
        let reloaded: Vec<u64> = snapshot["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["task"].as_u64().unwrap())
            .collect();
        assert_eq!(reloaded, seen);
        assert!(snapshot["tasks"].as_array().unwrap().is_empty());
    }
}

/// Two servers on one data directory would hand out the same task ids: the second refuses to
/// start, names the directory and the flag, and the first loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_directory_refuses_to_start_and_loses_nothing() {
    let server = Server::start(&[]).await;
    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");
    let first = session.submit_ok(&server, 20).await;
    events.line(|l| l["task"] == first).await;

    let data = server.data.to_str().unwrap().to_owned();
    let out = std::process::Command::new(common::binary())
        .args([
            "--addr",
            "127.0.0.1:0",
            "--dashboard-addr",
            "127.0.0.1:0",
            "--data-dir",
            &data,
        ])
        .output()
        .expect("offload runs");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&data) && text.contains("--data-dir"),
        "{text}"
    );

    let second = session.submit_ok(&server, 21).await;
    events.line(|l| l["task"] == second).await;
    let server = server.crash_and_restart().await;
    let mut events = session.events(&server).await;
    let snapshot = events.next().await.expect("a snapshot");
    let tasks: Vec<u64> = snapshot["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["task"].as_u64())
        .collect();
    assert_eq!(tasks, [first, second]);
}
