//! Issue 29, availability: a standby app server (`offload serve --database … --standby`) behind
//! HAProxy, which serves by forwarding until then, takes over the record when the server that
//! writes it dies, so the pages and API clients of the dead one go on through the balancer; a server that lost the record to its
//! standby stops rather than serve what it can no longer record. Against the release binary,
//! a real PostgreSQL, nats-server and workers, and Debian's HAProxy.

mod common;

use std::time::Duration;

use app::ssr::store::testing::{self, OwnServer};
use common::{
    Balancer, Nats, PageStream, Server, Session, eventually, submit_until_it_progresses,
    wait_for_threads, worker_with_ops,
};

/// The task ids of the terminal's lines in a page's first update (its snapshot), sorted.
async fn terminal(session: &Session, balancer: &Balancer) -> Vec<u64> {
    let mut events = session.events(balancer).await;
    let snapshot = events.next().await.expect("a snapshot first");
    let mut ids: Vec<u64> = snapshot["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|line| line["task"].as_u64())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_behind_haproxy_takes_over_when_the_server_is_killed_and_pages_catch_up() {
    let url = testing::database().await;
    let nats = Nats::start().await;
    let (_worker, _) = worker_with_ops(&nats, 2, &[]);
    let serve = ["--cluster", &nats.url(), "--database", &url];
    let mut active = Server::start(&serve).await;
    let standby = Server::start_unready(&[&serve[..], &["--standby"]].concat());
    wait_for_threads(&active, 2).await;
    // With NATS workers, /health is on the app's own listener.
    let balancer =
        Balancer::start(&[(active.port, active.port), (standby.port, standby.port)]).await;

    let session = Session::new();
    let mut events = session.events(&balancer).await;
    events.next().await.expect("a snapshot first");
    let quick = session.submit_ok(&balancer, 20).await;
    events.line(|l| l["task"] == quick).await;
    // Some seconds of work, running on a worker when its server dies.
    let long = submit_until_it_progresses(&balancer, &session, 44).await;
    let (status, health) = common::get(standby.url("/health")).await;
    assert_eq!(
        status, 200,
        "a standby serves (forwarding) while it stands by"
    );
    assert!(health.contains("forwarding to"), "{health}");

    active.kill();
    // The page's stream ends with its server; it opens again through the balancer, as a
    // browser's EventSource does, and reaches the standby once it has taken over.
    let what = "the page's stream opens again through HAProxy";
    let mut events = eventually(what, Duration::from_secs(30), || {
        session.try_events(&balancer)
    })
    .await;
    // The task the dead server was following runs again, and its result comes live (or is
    // in the snapshot already, should it have ended before the page was back).
    let line = events.line(|l| l["task"] == long).await;
    assert!(line.contains("=701408733"), "{line}");
    assert!(
        line.contains("rerun"),
        "it ran again on the standby: {line}"
    );
    let again = session.submit_ok(&balancer, 21).await;
    events.line(|l| l["task"] == again).await;
    assert_eq!(
        terminal(&session, &balancer).await,
        [quick, long, again],
        "every task ended exactly once"
    );
    let history = session.get_text(&balancer, "/history").await;
    for id in [quick, long, again] {
        assert_eq!(
            history.matches(&format!("/tasks/{id}\"")).count(),
            1,
            "task {id} in the history once: {history}"
        );
    }
}

/// `server` (a standby that took over) shows `session`'s terminal with task `first` in it, and
/// runs its next task, whose id comes after.
async fn serves_on(server: &Server, session: &Session, first: u64) {
    let mut events = session.events(server).await;
    let snapshot = events.next().await.expect("a snapshot first");
    assert!(
        snapshot.to_string().contains(&format!("\"task\":{first}")),
        "{snapshot}"
    );
    let second = session.submit_ok(server, 11).await;
    assert!(second > first, "ids go on from the record");
    events.line(|l| l["task"] == second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lost_the_database_to_its_standby_stops_and_the_standby_serves() {
    let url = testing::database().await;
    let mut active = Server::start(&["--database", &url]).await;
    let session = Session::new();
    let first = session.submit_ok(&active, 10).await;
    let standby = Server::start_unready(&["--database", &url, "--standby"]);
    testing::until_one_stands_by(&url).await;
    // The active server's connection to the database is cut (as when the database restarts,
    // or a network partition outlasts the keepalives): its standby takes the record over.
    testing::cut_the_writer(&url).await;
    let status = active.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(
        status.code(),
        Some(1),
        "the server that lost the record stops, and says so"
    );
    standby.ready().await;
    serves_on(&standby, &session, first).await;

    // A standby asked to stop before it took over stops at once, cleanly.
    let mut waiting = Server::start_unready(&["--database", &url, "--standby"]);
    testing::until_one_stands_by(&url).await;
    waiting.terminate();
    let status = waiting.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restarted_under_a_server_and_its_standby_leaves_one_serving_and_loses_nothing()
{
    let database = OwnServer::start().await;
    let url = database.database().await;
    let mut active = Server::start(&["--database", &url]).await;
    let standby = Server::start_unready(&["--database", &url, "--standby"]);
    testing::until_one_stands_by(&url).await;
    // Both up in the balancer: the standby forwards to the active server.
    let balancer =
        Balancer::start(&[(active.port, active.port), (standby.port, standby.port)]).await;
    let session = Session::new();
    let mut events = session.events(&balancer).await;
    events.next().await.expect("a snapshot first");
    let first = session.submit_ok(&balancer, 20).await;
    events.line(|l| l["task"] == first).await;

    let stopping = tokio::task::spawn_blocking(move || {
        database.stop();
        database
    });
    let database = stopping.await.unwrap();
    let (status, body) = session.submit(&balancer, 21).await;
    assert_eq!(
        status, 503,
        "refused while the record is out of reach: {body}"
    );

    database.start_again().await;
    // Whichever takes the database first serves: the active server again (the standby stands
    // by again), or the standby (the active server, finding the database taken, stops).
    let what = "submissions are taken again through HAProxy";
    let second = eventually(what, Duration::from_secs(60), || async {
        let (status, body) = session.submit(&balancer, 22).await;
        (status == 200).then_some(body)
    })
    .await;
    let second: serde_json::Value = serde_json::from_str(&second).unwrap();
    let second = second["task"]["id"].as_u64().unwrap();
    assert!(second > first);
    let what = "the terminal has each task once, wherever the page lands";
    eventually(what, Duration::from_secs(60), || async {
        (terminal(&session, &balancer).await == [first, second]).then_some(())
    })
    .await;
    if !active.running() {
        let status = active.wait_exit(Duration::from_secs(1)).await;
        assert_eq!(status.code(), Some(1), "it lost the database: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_closed_behind_haproxy_gives_its_stream_back_at_once() {
    // HAProxy passes a client's close on to the server only with `option abortonclose`;
    // without it the server learns of it at a keep-alive 15 to 30 s later, and closed pages
    // fill the cap of live streams meanwhile.
    let server = Server::start(&["--max-streams", "2"]).await;
    let balancer = Balancer::start(&[(server.port, server.dashboard_port)]).await;
    let pages: Vec<Session> = (0..3).map(|_| Session::new()).collect();
    let open = [
        pages[0].events(&balancer).await,
        pages[1].events(&balancer).await,
    ];
    assert!(
        pages[2].try_events(&balancer).await.is_none(),
        "the cap holds through the balancer"
    );
    drop(open);
    let what = "a stream slot is free again";
    eventually(what, Duration::from_secs(5), || {
        pages[2].try_events(&balancer)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_server_that_hangs_and_the_hung_one_stops_when_it_wakes() {
    let url = testing::database().await;
    let mut active = Server::start(&["--database", &url]).await;
    let session = Session::new();
    let first = session.submit_ok(&active, 10).await;
    let standby =
        Server::start_unready(&["--database", &url, "--standby", "--takeover-after", "3"]);
    testing::until_one_stands_by(&url).await;
    // Hung: its process stopped, its connections open (the kernel still answers for them).
    common::signal(active.pid(), "STOP");
    standby.ready().await;
    serves_on(&standby, &session, first).await;
    // Woken, it finds the database taken, and stops rather than serve what it cannot record.
    common::signal(active.pid(), "CONT");
    let status = active.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(1));
}

#[test]
fn a_takeover_sooner_than_three_beats_is_refused() {
    let out = std::process::Command::new(common::binary())
        .args([
            "--database",
            "postgres://nobody@127.0.0.1:1/none",
            "--standby",
        ])
        .args(["--takeover-after", "1"])
        .output()
        .expect("offload runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("--takeover-after must be at least 3 seconds"),
        "{text}"
    );
}
