//! Issue 29, several app servers serving at once: a server that stands by (`--standby`)
//! listens from its start and forwards every request to the server that writes the database,
//! so one owner's requests may alternate between servers with no stickiness and every server
//! shows the same queue, terminal, history and API answers, live, and the caps hold. Against the
//! release binary, a real PostgreSQL, nats-server and workers.

mod common;

use std::collections::BTreeMap;

use app::ssr::store::testing;
use common::{Base, Nats, PageStream, Server, Session, get, wait_for_threads, worker_with_ops};
use serde_json::{Value, json};

/// The task ids of the terminal's lines in the snapshot a page opened on `server` gets, sorted.
async fn terminal(session: &Session, server: &impl Base) -> Vec<u64> {
    let mut events = session.events(server).await;
    let mut ids: Vec<u64> = events
        .lines()
        .await
        .iter()
        .filter_map(|line| line["task"].as_u64())
        .collect();
    ids.sort_unstable();
    ids
}

/// Every other request to `a`, the rest to `b`, as a balancer with no stickiness does.
fn alternate<'s>(a: &'s Server, b: &'s Server, i: usize) -> &'s Server {
    if i.is_multiple_of(2) { a } else { b }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_alternating_between_two_servers_sees_everything_once_live_on_both() {
    let url = testing::database().await;
    let nats = Nats::start().await;
    let (_worker, _) = worker_with_ops(&nats, 2, &[]);
    let serve = ["--cluster", &nats.url(), "--database", &url];
    let a = Server::start(&serve).await;
    let b = Server::start(&[&serve[..], &["--standby"]].concat()).await;
    wait_for_threads(&a, 2).await;
    let (status, health) = get(b.url("/health")).await;
    assert_eq!(status, 200, "{health}");
    assert!(
        health.contains(&format!("forwarding to http://127.0.0.1:{}", a.port)),
        "{health}"
    );

    // A page held by B, while the session's submissions alternate between A and B.
    let session = Session::new();
    let mut on_b = session.events(&b).await;
    on_b.lines().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(session.submit_ok(alternate(&a, &b, i), 10 + i as i64).await);
    }
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    while ids.iter().any(|id| !seen.contains_key(id)) {
        for line in on_b.lines().await {
            *seen
                .entry(line["task"].as_u64().expect("a task id"))
                .or_default() += 1;
        }
    }
    assert!(
        seen.values().all(|&count| count == 1),
        "each task's line came once: {seen:?}"
    );
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(terminal(&session, &a).await, sorted);
    assert_eq!(terminal(&session, &b).await, sorted);

    // The history, a task's detail and the API agree on both servers.
    for server in [&a, &b] {
        let history = session.get_text(server, "/history").await;
        for id in &ids {
            assert_eq!(
                history.matches(&format!("/tasks/{id}\"")).count(),
                1,
                "task {id} in the history once: {history}"
            );
        }
        let detail = session
            .get_text(server, &format!("/tasks/{}", ids[0]))
            .await;
        assert!(detail.contains("fibonacci(10)=55"), "{detail}");
    }
    for id in &ids {
        let path = format!("/api/v1/tasks/{id}");
        assert_eq!(
            session.get_json(&a, &path).await,
            session.get_json(&b, &path).await
        );
    }

    // A task submitted through A's API shows live on the page B holds.
    let response = session
        .request(reqwest::Method::POST, a.url("/api/v1/tasks"))
        .header("content-type", "application/json")
        .body(json!({"type": "fibonacci", "input": {"n": 25}}).to_string())
        .send()
        .await
        .expect("A answers");
    assert_eq!(response.status(), 202);
    let task: Value =
        serde_json::from_str(&response.text().await.expect("a body")).expect("the task as JSON");
    let id = task["id"].as_u64().expect("a task id");
    let line = on_b.line(|l| l["task"] == id).await;
    assert!(line.contains("fibonacci(25)=75025"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_cap_holds_when_submissions_alternate_between_servers() {
    let url = testing::database().await;
    let serve = [
        "--database",
        &url,
        "--workers",
        "1",
        "--max-queued-per-session",
        "7",
    ];
    let a = Server::start(&serve).await;
    let b = Server::start(&[&serve[..], &["--standby"]].concat()).await;
    // Another session's task keeps the only worker busy: whatever is accepted next waits.
    let other = Session::new();
    let mut events = other.events(&b).await;
    other.submit_ok(&b, 60).await;
    while events.next().await.expect("open")["status"] != "running" {}
    let session = Session::new();
    let mut statuses = Vec::new();
    for i in 0..20 {
        let (status, body) = session.submit(alternate(&a, &b, i), 30).await;
        assert!(matches!(status, 200 | 429), "{status}: {body}");
        statuses.push(status);
    }
    assert_eq!(statuses[..7], [200; 7], "{statuses:?}");
    assert_eq!(statuses[7..], [429; 13], "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_checks_host_origin_and_size_itself_and_never_forwards_to_itself() {
    let url = testing::database().await;
    let a = Server::start(&["--database", &url]).await;
    let b = Server::start(&["--database", &url, "--standby"]).await;
    let session = Session::new();
    let forged = session
        .request(reqwest::Method::POST, b.url("/api/submit"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("n=3")
        .send()
        .await
        .expect("B answers");
    assert_eq!(forged.status(), 403);
    let wrong_host = session
        .request(reqwest::Method::GET, b.url("/"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("B answers");
    assert_eq!(wrong_host.status(), 403);
    // A body past the largest the app takes is refused by B itself, before it is forwarded.
    let huge = session
        .request(reqwest::Method::POST, b.url("/api/v1/batches"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .expect("B answers");
    assert_eq!(huge.status(), 413);
    // The page's own origin is B's: the submission goes through to A.
    let (status, body) = session.post(&b, "/api/submit", "n=3").await;
    assert_eq!(status, 200, "{body}");
    // A request that was forwarded already is not forwarded again (a standby the database
    // still names as the writer would send it to itself): nothing runs, and the sender
    // tries again later.
    let looped = session
        .request(reqwest::Method::POST, b.url("/api/submit"))
        .header("x-offload-forwarded", "1")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("n=4")
        .send()
        .await
        .expect("B answers");
    assert_eq!(looped.status(), 503);
    assert!(looped.headers().contains_key("x-offload-not-the-writer"));
    assert!(looped.headers().contains_key("retry-after"));
    drop(a);
}

#[test]
fn an_advertised_url_the_other_servers_cannot_use_is_refused() {
    for (url, why) in [
        ("https://10.0.0.1:3000", "plain HTTP"),
        ("http://10.0.0.1", "no port"),
        ("http://10.0.0.1:3000/app", "a path"),
        ("not a url", "not a URL"),
    ] {
        let out = std::process::Command::new(common::binary())
            .args(["--database", "postgres://nobody@127.0.0.1:1/none"])
            .args(["--advertise-url", url])
            .output()
            .expect("offload runs");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}: {text}");
        assert!(
            text.contains("--advertise-url must be http://host:port") && text.contains(why),
            "{url}: {text}"
        );
    }
}
