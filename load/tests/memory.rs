//! A server's memory depends on what is live, never on how many owners it has on record.

use std::path::{Path, PathBuf};
use std::time::Duration;

use load::{LoadConfig, Target, owners, round};

fn server() -> PathBuf {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/offload");
    assert!(
        server.exists(),
        "{} is missing: run `make build` first",
        server.display()
    );
    server
}

/// The server's resident memory (kB) when started on a record of `count` owners' history,
/// after a small round of new visitors (so that each run has paged in the same code).
async fn memory_on(count: u64) -> u64 {
    let config = LoadConfig {
        server: server(),
        sessions: 50,
        tasks_per_session: 2,
        ramp: Duration::from_millis(200),
        ..LoadConfig::default()
    };
    let data = tempfile::tempdir().unwrap();
    // A first start makes the database and its schema.
    Target::start_in(&config, data.path())
        .await
        .unwrap()
        .stop()
        .await;
    owners::fill(&data.path().join("offload.sqlite3"), count).unwrap();
    let target = Target::start_in(&config, data.path()).await.unwrap();
    let r = round(&target, &config, &[]).await;
    assert_eq!((r.results, r.errors), (100, 0));
    let rss = target.rss_kb().unwrap();
    target.stop().await;
    rss
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_a_hundred_thousand_owners_history_holds_no_more_than_on_a_hundreds() {
    let few = memory_on(100).await;
    let many = memory_on(100_000).await;
    eprintln!("resident memory: 100 owners {few} kB, 100,000 owners {many} kB");
    assert!(
        many <= few + 3 * 1024,
        "100,000 owners on record cost {} kB more than 100",
        many as i64 - few as i64
    );
}
