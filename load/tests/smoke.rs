//! `make load` cannot rot: a small round against the release build runs in `make test`.

use std::path::Path;
use std::time::Duration;

use load::{LoadConfig, Target, round};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sessions_get_every_result() {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/offload");
    assert!(
        server.exists(),
        "{} is missing: run `make build` first",
        server.display()
    );
    let config = LoadConfig {
        server,
        sessions: 100,
        ramp: Duration::from_millis(500),
        ..LoadConfig::default()
    };
    let target = Target::start(&config).await.expect("the server starts");
    let r = round(&target, &config, &[]).await;
    target.stop().await;
    assert_eq!((r.results, r.errors), (500, 0));
    assert!(r.percentile(0.99) > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_api_owners_get_every_result() {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/offload");
    let config = LoadConfig {
        server,
        sessions: 50,
        ramp: Duration::from_millis(500),
        api: true,
        ..LoadConfig::default()
    };
    let target = Target::start(&config).await.expect("the server starts");
    let tokens = target.tokens(50).await.expect("50 tokens");
    let r = round(&target, &config, &tokens).await;
    target.stop().await;
    assert_eq!((r.results, r.errors), (250, 0));
}
