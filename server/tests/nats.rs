//! Issue 10's acceptance: the app server with its workers in other processes, through a real
//! nats-server on loopback. Every process is the release binary; every failure is real (a
//! worker, the app server and NATS itself are killed or stopped mid-run).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{
    Nats, PageStream, Proc, Server, Session, get, one_session_cannot_wedge_the_cluster, scrape,
    wait_for_threads,
};
use load::{Events, free_port};
use serde_json::Value;

/// One cluster at a time: on two cores a second one would slow the first past its bounds.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fib(n: u64) -> u64 {
    (0..n).fold((0, 1), |(a, b), _| (b, a + b)).0
}

fn worker(nats: &Nats, threads: usize) -> Proc {
    Proc::spawn(&[
        "worker",
        "--cluster",
        &nats.url(),
        "--threads",
        &threads.to_string(),
    ])
}

/// `offload cluster` with no workers of its own: its dashboard on a free port.
fn dashboard(nats: &Nats, data: &tempfile::TempDir) -> (Proc, u16) {
    let port = free_port();
    let proc = Proc::spawn(&[
        "cluster",
        "--nats",
        &nats.url(),
        "--workers",
        "0",
        "--dashboard-addr",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    (proc, port)
}

/// The dashboard's frames, as its pages receive them.
async fn frames(port: u16) -> Events {
    let url = format!("http://127.0.0.1:{port}/dashboard/stream");
    let what = format!("the cluster dashboard answers on port {port}");
    common::eventually(&what, Duration::from_secs(15), || async {
        let response = reqwest::get(&url).await.ok()?;
        response
            .status()
            .is_success()
            .then(|| Events::new(response))
    })
    .await
}

/// The worker processes (`host-pid`) the dashboard lists in a frame.
fn listed_processes(frame: &Value) -> HashSet<String> {
    frame["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["process"].as_str().map(str::to_owned))
        .collect()
}

fn lists_pid(processes: &HashSet<String>, pid: u32) -> bool {
    processes.iter().any(|p| p.ends_with(&format!("-{pid}")))
}

/// A session's whole terminal, from a fresh stream's snapshot (what a reload shows).
async fn terminal(server: &Server, session: &Session) -> Vec<Value> {
    let mut events = session.events(server).await;
    let snapshot = events.next().await.expect("a snapshot");
    assert_eq!(snapshot["type"], "snapshot");
    snapshot["lines"].as_array().cloned().unwrap_or_default()
}

/// Reads `events` until `ids` all have a line; returns the lines by task id.
async fn lines_for(events: &mut Events, ids: &HashSet<u64>) -> HashMap<u64, String> {
    let mut seen = HashMap::new();
    while !ids.iter().all(|id| seen.contains_key(id)) {
        for line in events.lines().await {
            let id = line["task"].as_u64().unwrap();
            seen.insert(id, line["text"].as_str().unwrap().to_owned());
        }
    }
    seen
}

fn assert_exactly_once(lines: &[Value], ids: &HashSet<u64>, what: &str) {
    let shown: Vec<u64> = lines.iter().map(|l| l["task"].as_u64().unwrap()).collect();
    let unique: HashSet<u64> = shown.iter().copied().collect();
    assert_eq!(shown.len(), unique.len(), "{what}: a task shown twice");
    assert_eq!(&unique, ids, "{what}: every task shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_nothing_and_leaves_the_dashboard() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    let data = tempfile::tempdir().unwrap();
    let (_dashboard, dashboard_port) = dashboard(&nats, &data);
    let mut doomed = worker(&nats, 2);
    // 8 tasks in flight per worker thread: quick tasks travel in batches, and the batches the
    // doomed worker held die with it.
    let server = Server::start(&["--cluster", &nats.url(), "--in-flight-per-thread", "8"]).await;
    // A task is refused (503) until the app server has heard of a worker that runs its type.
    wait_for_threads(&server, 2).await;

    // A long task that is certainly on the doomed worker: it is the only one yet.
    let long = Session::new();
    let mut long_events = long.events(&server).await;
    long_events.next().await.expect("a snapshot first");
    let long_id = long.submit_ok(&server, 46).await;
    loop {
        let update = long_events.next().await.expect("updates");
        if update["type"] == "task" && update["id"] == long_id && update["status"] == "running" {
            break;
        }
    }
    let survivor = worker(&nats, 2);

    let mut frames = frames(dashboard_port).await;
    loop {
        let listed = listed_processes(&frames.next().await.expect("frames"));
        if lists_pid(&listed, doomed.pid()) && lists_pid(&listed, survivor.pid()) {
            break;
        }
    }

    // 10 sessions × 100 tasks (the per-session cap), n from 15 to 22.
    let sessions: Vec<Session> = (0..10).map(|_| Session::new()).collect();
    let mut streams = Vec::new();
    for session in &sessions {
        let mut events = session.events(&server).await;
        events.next().await.expect("a snapshot first");
        streams.push(events);
    }
    let mut ids: Vec<HashMap<u64, i64>> = vec![HashMap::new(); sessions.len()];
    let mut killed = false;
    for i in 0..100 {
        for (s, session) in sessions.iter().enumerate() {
            let n = 15 + (i % 8);
            ids[s].insert(session.submit_ok(&server, n).await, n);
        }
        if i == 30 {
            // Mid-run: results are coming in, and most tasks are still to be submitted.
            streams[0].lines().await;
            doomed.kill();
            killed = true;
        }
    }
    assert!(killed);

    for (s, session) in sessions.iter().enumerate() {
        let wanted: HashSet<u64> = ids[s].keys().copied().collect();
        let seen = lines_for(&mut streams[s], &wanted).await;
        for (id, n) in &ids[s] {
            let text = &seen[id];
            let expected = format!("fibonacci({n})={} in ", fib(*n as u64));
            assert!(text.starts_with(&expected), "task {id}: {text}");
        }
        assert_exactly_once(&terminal(&server, session).await, &wanted, "a reload");
    }

    // Run again elsewhere once its ack wait ran out, and shown once.
    let text = long_events.line(|l| l["task"] == long_id).await;
    assert!(
        text.starts_with(&format!("fibonacci(46)={} in ", fib(46))),
        "{text}"
    );
    let wanted = HashSet::from([long_id]);
    assert_exactly_once(&terminal(&server, &long).await, &wanted, "a reload");
    // The API says so: the survivor ran it, at the second attempt.
    let record = long
        .get_json(&server, &format!("/api/v1/tasks/{long_id}"))
        .await;
    assert_eq!(record["attempts"], 2, "{record}");
    let worker = record["worker"].as_str().unwrap();
    assert!(
        worker.contains(&format!("-{}/", survivor.pid())),
        "{worker} is not a thread of the survivor {}",
        survivor.pid()
    );

    // Its heartbeat expires: the dashboard drops it while the survivor stays. (How soon is
    // the heartbeat's TTL, 5 s; a frame comes each second, so 60 frames only guard a hang.)
    for frame in 0.. {
        let listed = listed_processes(&frames.next().await.expect("frames"));
        if !lists_pid(&listed, doomed.pid()) {
            assert!(lists_pid(&listed, survivor.pid()), "{listed:?}");
            break;
        }
        assert!(frame < 60, "the dead worker is still listed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_remote_fibonacci_60_frees_its_worker() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    let _worker = worker(&nats, 1);
    let server = Server::start(&["--cluster", &nats.url()]).await;
    wait_for_threads(&server, 1).await;
    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");

    let id = session.submit_ok(&server, 60).await;
    // Running once it reports progress past 0: the worker has started the recursion.
    loop {
        let update = events.next().await.expect("updates");
        if update["type"] == "task"
            && update["id"] == id
            && update["status"] == "running"
            && update["progress"].as_f64() > Some(0.0)
        {
            break;
        }
    }
    // How soon the worker stops is a figure of `make bench`; here: it stops, and says so.
    let (status, body) = session
        .post(&server, "/api/cancel", &format!("id={id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let text = events.line(|l| l["task"] == id).await;
    assert!(text.starts_with("fibonacci(60) cancelled after"), "{text}");

    // The one worker thread is free again: fibonacci(60) would hold it for days.
    let next = session.submit_ok(&server, 20).await;
    let text = events.line(|l| l["task"] == next).await;
    assert!(text.starts_with("fibonacci(20)=6765 in "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_for_two_seconds_mid_run_loses_no_accepted_task() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut nats = Nats::start().await;
    let _worker = worker(&nats, 2);
    let server = Server::start(&["--cluster", &nats.url()]).await;
    wait_for_threads(&server, 2).await;
    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");

    let mut accepted: HashSet<u64> = HashSet::new();
    for _ in 0..60 {
        accepted.insert(session.submit_ok(&server, 30).await);
    }
    events.lines().await;
    nats.stop().await;
    // For about two seconds while NATS is away, a submission is either accepted (and runs
    // later) or refused with a clear 503.
    for _ in 0..20 {
        match session.submit(&server, 25).await {
            (200, body) => {
                let task: Value = serde_json::from_str(&body).unwrap();
                accepted.insert(task["task"]["id"].as_u64().unwrap());
            }
            (status, body) => assert_eq!(status, 503, "{body}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nats.restart().await;

    let seen = lines_for(&mut events, &accepted).await;
    for text in seen.values() {
        assert!(
            text.starts_with("fibonacci(30)=832040 in ")
                || text.starts_with("fibonacci(25)=75025 in "),
            "{text}"
        );
    }
    assert_exactly_once(&terminal(&server, &session).await, &accepted, "a reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_server_killed_mid_run_shows_every_result_once_after_its_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    let _worker = worker(&nats, 2);
    let server = Server::start(&["--cluster", &nats.url(), "--server-id", "web"]).await;
    wait_for_threads(&server, 2).await;
    let sessions = [Session::new(), Session::new()];
    let mut ids: Vec<HashSet<u64>> = vec![HashSet::new(), HashSet::new()];
    let mut events = sessions[0].events(&server).await;
    events.next().await.expect("a snapshot first");
    for _ in 0..20 {
        for (s, session) in sessions.iter().enumerate() {
            ids[s].insert(session.submit_ok(&server, 31).await);
        }
    }
    events.lines().await;
    let server = server.crash_and_restart().await;

    for (s, session) in sessions.iter().enumerate() {
        let mut events = session.events(&server).await;
        let seen = lines_for(&mut events, &ids[s]).await;
        for text in seen.values() {
            assert!(text.starts_with("fibonacci(31)=1346269 in "), "{text}");
        }
        assert_exactly_once(&terminal(&server, session).await, &ids[s], "a reload");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_cannot_wedge_a_nats_cluster_either() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    // Four threads in two processes, as in the seed's 4-worker LocalCluster.
    let _workers = [worker(&nats, 2), worker(&nats, 2)];
    let server = Server::start(&["--cluster", &nats.url(), "--task-time-limit", "2"]).await;
    wait_for_threads(&server, 4).await;
    one_session_cannot_wedge_the_cluster(&server).await;
}

#[test]
fn bad_nats_settings_stop_the_start_with_a_clear_message() {
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    let serve = ["--addr", "127.0.0.1:0", "--data-dir", data, "--cluster"];
    let cases: [(Vec<&str>, &str); 5] = [
        (
            [
                &serve[..],
                &["nats://127.0.0.1:4222", "--nats-prefix", "a.b"],
            ]
            .concat(),
            "not a valid NATS name prefix",
        ),
        (
            [
                &serve[..],
                &["nats://127.0.0.1:4222", "--server-id", "web 1"],
            ]
            .concat(),
            "not a valid server id",
        ),
        (
            [&serve[..], &["nats://[bad"]].concat(),
            "expected nats://[USER:PASSWORD@]HOST:PORT",
        ),
        (
            vec![
                "worker",
                "--cluster",
                "nats://127.0.0.1:4222",
                "--nats-prefix",
                "",
            ],
            "not a valid NATS name prefix",
        ),
        (
            vec![
                "cluster",
                "--data-dir",
                data,
                "--nats-server",
                "/nonexistent/nats-server",
            ],
            "install it with `make nats`",
        ),
    ];
    for (args, expected) in cases {
        let out = std::process::Command::new(common::binary())
            .args(&args)
            .output()
            .expect("offload runs");
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(text.contains(expected), "{args:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_app_server_died_stops_at_its_time_limit_on_the_worker() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    let data = tempfile::tempdir().unwrap();
    let (_dashboard, dashboard_port) = dashboard(&nats, &data);
    let worker = worker(&nats, 1);
    let server = Server::start(&["--cluster", &nats.url(), "--task-time-limit", "2"]).await;
    wait_for_threads(&server, 1).await;
    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");
    let id = session.submit_ok(&server, 93).await;
    loop {
        let update = events.next().await.expect("updates");
        if update["type"] == "task" && update["id"] == id && update["status"] == "running" {
            break;
        }
    }
    drop(events);
    // Killed, never restarted: nobody is left to stop the task but the worker itself.
    drop(server);
    let mut frames = frames(dashboard_port).await;
    let pid = format!("-{}", worker.pid());
    let mut seen_running = false;
    // fibonacci(93) runs for centuries: it ends only because the worker applies the time
    // limit (2 s, its margin 1 s). A frame comes each second; 60 only guard a hang.
    for count in 0.. {
        let frame = frames.next().await.expect("frames");
        let row = frame["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["process"].as_str().is_some_and(|p| p.ends_with(&pid)))
            .cloned();
        let current = row.as_ref().map(|w| w["current"].clone());
        match current {
            Some(Value::String(task)) if task.starts_with("fibonacci #") => seen_running = true,
            Some(Value::Null) if seen_running => break,
            _ => {}
        }
        assert!(
            count < 60,
            "the worker still runs the dead server's task: {row:?}"
        );
    }
}

/// Waits until `health` answers 200.
async fn until_healthy(health: &str) {
    let what = format!("{health} answers 200 once a worker joined");
    common::eventually(&what, Duration::from_secs(30), || async {
        (reqwest::get(health).await.unwrap().status() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_the_cluster_has_no_workers() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    let data = tempfile::tempdir().unwrap();
    let (_dashboard, port) = dashboard(&nats, &data);
    frames(port).await;
    let health = format!("http://127.0.0.1:{port}/health");
    assert_eq!(reqwest::get(&health).await.unwrap().status(), 503);
    let _worker = worker(&nats, 1);
    until_healthy(&health).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_worker_dies_three_times_ends_as_lost() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    let data = tempfile::tempdir().unwrap();
    let (_dashboard, port) = dashboard(&nats, &data);
    let server = Server::start(&["--cluster", &nats.url()]).await;
    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");
    let mut frames = frames(port).await;

    let mut doomed = worker(&nats, 1);
    // Submissions are refused (503) until the app server has heard of a worker that runs
    // the type.
    until_healthy(&server.url("/health")).await;
    let id = session.submit_ok(&server, 46).await;
    for _death in 0..3 {
        // Killed once the dashboard shows it running the task (a delivery has reached it).
        let pid = format!("-{}", doomed.pid());
        loop {
            let frame = frames.next().await.expect("frames");
            let running = frame["workers"].as_array().into_iter().flatten().any(|w| {
                w["process"].as_str().is_some_and(|p| p.ends_with(&pid))
                    && w["current"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("fibonacci #"))
            });
            if running {
                break;
            }
        }
        doomed.kill();
        // The next worker gets the task once the ack wait has run out.
        doomed = worker(&nats, 1);
    }
    let text = events.line(|l| l["task"] == id).await;
    assert_eq!(text, "fibonacci(46) lost: its worker died 3 times");
    // The fourth worker did not run it, and is free for the next task.
    let next = session.submit_ok(&server, 20).await;
    let text = events.line(|l| l["task"] == next).await;
    assert!(text.starts_with("fibonacci(20)=6765 in "), "{text}");
}

/// `offload serve --cluster` serves its own `/metrics`, `/health` and counts on the app's
/// listener, and `offload worker --metrics-addr` its own: both scrapes pass promtool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_server_and_a_worker_on_nats_serve_metrics_that_pass_promtool() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    let metrics_port = free_port();
    let worker_metrics = |path: &str| format!("http://127.0.0.1:{metrics_port}{path}");
    let _worker = Proc::spawn(&[
        "worker",
        "--cluster",
        &nats.url(),
        "--threads",
        "1",
        "--metrics-addr",
        &format!("127.0.0.1:{metrics_port}"),
    ]);
    let server = Server::start(&["--cluster", &nats.url()]).await;
    wait_for_threads(&server, 1).await;
    let session = Session::new();
    let mut events = session.events(&server).await;
    events.next().await.expect("a snapshot first");
    for n in 0..5 {
        let id = session.submit_ok(&server, n).await;
        events.line(|l| l["task"] == id).await;
    }

    scrape(
        server.url("/metrics"),
        &[
            "offload_tasks_total{",
            "offload_worker_threads 1",
            "offload_slots 64",
            "offload_sessions 1",
            "offload_open_streams 1",
            "offload_http_requests_total{",
            "offload_nats_stage_seconds_bucket{",
            "offload_nats_result_messages_total{path=\"request\"} 5",
            "offload_nats_work_tasks_total 5",
        ],
    )
    .await;
    assert_eq!(get(server.url("/health")).await, (200, "ok".to_owned()));
    let (status, counts) = get(server.url("/json/counts.json")).await;
    assert_eq!(status, 200);
    let counts: Value = serde_json::from_str(&counts).unwrap();
    assert_eq!(counts["finished"], 5, "{counts}");

    scrape(
        worker_metrics("/metrics"),
        &[
            "offload_task_duration_seconds_bucket{",
            "offload_worker_threads 1",
            "offload_worker_memory_bytes{",
            "offload_worker_result_requests_total 5",
            "offload_worker_result_fallbacks_total 0",
        ],
    )
    .await;
    assert_eq!(get(worker_metrics("/health")).await, (200, "ok".to_owned()));
    // Only the ops endpoints there.
    assert_eq!(get(worker_metrics("/status")).await.0, 404);
}

/// Issue 17: a result bigger than NATS's default 1 MB message — a 2048 × 2048 picture of the
/// seahorse valley, 1.4 MB of PNG and 1.8 MB as base64 — arrives whole from a worker in
/// another process, is stored once and served to the session that asked for it, and to no
/// one else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2048_square_picture_travels_over_nats_and_is_served_to_its_owner_only() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = Nats::start().await;
    let _worker = worker(&nats, 1);
    let server = Server::start(&["--cluster", &nats.url()]).await;
    wait_for_threads(&server, 1).await;
    let session = Session::new();
    let mut events = session.events(&server).await;
    let id = session
        .submit_form_ok(
            &server,
            "task=mandelbrot&x=-0.7453&y=0.1127&zoom=650&width=2048&height=2048&max_iterations=1000",
        )
        .await;
    let line = loop {
        if let Some(line) = events.lines().await.into_iter().find(|l| l["task"] == id) {
            break line;
        }
    };
    let text = line["text"].as_str().unwrap();
    assert!(
        text.starts_with("mandelbrot(-0.7453+0.1127i, zoom 650)=2048×2048 PNG, "),
        "{text}"
    );
    assert_eq!(line["image"], true, "the terminal shows it");

    let response = session
        .request(
            reqwest::Method::GET,
            server.url(&format!("/tasks/{id}/output")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "image/png");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert!(header("cache-control").starts_with("private"));
    let png = response.bytes().await.unwrap();
    assert!(
        png.len() * 4 / 3 > 1 << 20,
        "{} bytes: more than one default NATS message once base64-encoded",
        png.len()
    );
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let side = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((side(16), side(20)), (2048, 2048), "IHDR width and height");

    // The detail page shows it and keeps only its size in the JSON.
    let detail = session.get_text(&server, &format!("/tasks/{id}")).await;
    assert!(
        detail.contains(&format!("src=\"/tasks/{id}/output\"")),
        "{detail}"
    );
    let stub = format!("bytes\": {}", png.len());
    assert!(
        detail.contains(&stub) || detail.contains(&stub.replace('"', "&quot;")),
        "{detail}"
    );

    // Nobody else's, and nothing for made-up addresses.
    for (who, path) in [
        (Session::new(), format!("/tasks/{id}/output")),
        (Session::cookieless(), format!("/tasks/{id}/output")),
        (session.clone(), "/tasks/abc/output".to_owned()),
        (
            session.clone(),
            "/tasks/99999999999999999999999/output".to_owned(),
        ),
        (session.clone(), format!("/tasks/{}/output", id + 1000)),
    ] {
        let response = who
            .request(reqwest::Method::GET, server.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
}
