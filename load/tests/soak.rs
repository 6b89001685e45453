//! `make load LOAD_ARGS="--soak 30"` in small: two minutes of rounds of new visitors, within
//! the soak's own bounds (memory levels off, no round stalls, every result arrives).

use std::path::Path;

use load::soak::{Bounds, soak};
use load::{LoadConfig, Target, round, rss_after_expiry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_minutes_of_new_visitors_keep_memory_level_and_never_stall() {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/offload");
    let config = LoadConfig {
        server,
        sessions: 300,
        ..LoadConfig::default()
    };
    let target = Target::start(&config).await.expect("the server starts");
    // The warm-up, as the tool does it: the first crowd grows the allocator's arenas.
    let warm = round(&target, &config, &[]).await;
    assert_eq!(warm.errors, 0);
    rss_after_expiry(&target, &config).await.unwrap();
    let bounds = Bounds::default();
    let s = soak(&target, &config, &[], 2, &bounds).await.unwrap();
    target.stop().await;
    assert!(s.minutes_kb.len() >= 2, "{s:?}");
    assert_eq!(s.breaches(&bounds), Vec::<String>::new(), "{s:?}");
}
