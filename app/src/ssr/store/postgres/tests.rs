//! What only the PostgreSQL side has: servers that start together on one database.

use crate::ssr::store::conformance::{accepted, keep_all};
use std::time::Duration;

use crate::ssr::store::{Store, StoreError, testing};

/// Long enough that a store these tests never make beat is not cut off as silent.
const NEVER_SILENT: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn servers_that_start_together_migrate_once_and_one_of_them_writes() {
    let url = testing::empty_database().await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::connect(&url, keep_all()).await })
        })
        .collect();
    let mut opened = Vec::new();
    let mut refused = 0;
    for start in starts {
        match start.await.unwrap() {
            Ok(store) => opened.push(store),
            Err(StoreError::DatabaseInUse { .. }) => refused += 1,
            Err(other) => panic!("a start failed otherwise: {other}"),
        }
    }
    assert_eq!((opened.len(), refused), (1, 3));
    let (store, writer, saved, next_task) = opened.pop().unwrap();
    assert_eq!((saved, next_task), (vec![], 1));
    store.write(accepted("a", 1)).await.unwrap();
    assert!(store.task("a", 1).await.unwrap().is_some());
    drop(store);
    writer.join();
    let (_store, _writer, saved, next_task) = Store::connect(&url, keep_all()).await.unwrap();
    assert_eq!(
        (saved.len(), next_task),
        (1, 2),
        "taken at once after a clean stop"
    );
}

#[tokio::test]
async fn a_database_a_newer_build_migrated_is_refused_untouched() {
    let url = testing::database().await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("INSERT INTO offload_migrations (version) VALUES (999)")
        .await
        .unwrap();
    let refused = Store::connect(&url, keep_all()).await.err().unwrap();
    assert!(
        matches!(refused, StoreError::NewerDatabase { version: 999, .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("newer Offload"), "{refused}");
}

#[tokio::test]
async fn a_bad_url_or_an_absent_server_is_said_plainly_without_the_password() {
    for url in [
        "postgres://offload:s3cret@127.0.0.1:1/offload",
        "not a url s3cret",
    ] {
        let refused = Store::connect(url, keep_all()).await.err().unwrap();
        let message = refused.to_string();
        assert!(
            message.starts_with("connecting to the database"),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
    }
}

#[tokio::test]
async fn connections_the_database_cut_are_made_again_and_the_database_is_taken_again() {
    let url = testing::database().await;
    let (store, _writer, _, _) = Store::connect(&url, keep_all()).await.unwrap();
    store.write(accepted("a", 1)).await.unwrap();
    assert!(store.task("a", 1).await.unwrap().is_some());
    // What a restart of the database, or an operator, does to every connection.
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
    let mut refused = 0;
    loop {
        match store.write(accepted("a", 2)).await {
            Ok(()) => break,
            // The write that finds the connection cut is refused, to be tried again.
            Err(StoreError::Unrecorded(_)) if refused < 50 => refused += 1,
            Err(other) => panic!("{other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut read = None;
    for _ in 0..50 {
        if let Ok(task) = store.task("a", 2).await {
            read = task;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(read.is_some(), "read back through a new pooled connection");
    assert!(
        matches!(
            Store::connect(&url, keep_all()).await,
            Err(StoreError::DatabaseInUse { .. })
        ),
        "the database is this store's again"
    );
}

#[tokio::test]
async fn a_standby_waits_while_another_server_writes_and_takes_over_when_it_stops() {
    let url = testing::database().await;
    let (active, writer, ..) = Store::connect(&url, keep_all()).await.unwrap();
    active.write(accepted("a", 1)).await.unwrap();
    let standby = tokio::spawn({
        let url = url.clone();
        async move { Store::stand_by(&url, keep_all(), NEVER_SILENT).await }
    });
    testing::until_one_stands_by(&url).await;
    assert!(!standby.is_finished(), "it waits while the other writes");
    active.write(accepted("a", 2)).await.unwrap();
    drop(active);
    writer.join();
    let (store, _writer, saved, next_task) = standby.await.unwrap().unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        saved[0].unfinished.len(),
        2,
        "it reads what the other wrote up to its stop"
    );
    assert_eq!(next_task, 3);
    store.write(accepted("a", 3)).await.unwrap();
}

#[tokio::test]
async fn a_server_that_lost_the_database_to_a_standby_says_so_and_writes_no_more() {
    let url = testing::database().await;
    let (active, _writer, ..) = Store::connect(&url, keep_all()).await.unwrap();
    let standby = tokio::spawn({
        let url = url.clone();
        async move { Store::stand_by(&url, keep_all(), NEVER_SILENT).await }
    });
    testing::until_one_stands_by(&url).await;
    // The active server's connection goes (as when the database restarts, or its machine is
    // cut off): the standby is granted the lock at once.
    testing::cut_the_writer(&url).await;
    let (store, _writer, ..) = standby.await.unwrap().unwrap();
    store.write(accepted("b", 1)).await.unwrap();
    // Bounded only so that a failure does not hang the suite.
    tokio::time::timeout(std::time::Duration::from_secs(60), active.lost())
        .await
        .expect("the server that lost the database hears of it");
    assert!(
        active.write(accepted("a", 2)).await.is_err(),
        "it writes no more"
    );
    assert!(
        matches!(active.reachable().await, Err(StoreError::Lost)),
        "its health says so"
    );
    assert!(store.task("a", 2).await.unwrap().is_none());
}

/// The writer's heartbeat as the database holds it, in ms on the database's clock.
async fn beat_ms(url: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query_one("SELECT value FROM meta WHERE key = 'writer_beat_ms'", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_writer_beats_when_it_takes_the_database_and_when_asked() {
    let url = testing::database().await;
    assert_eq!(beat_ms(&url).await, 0, "never beaten");
    let (store, ..) = Store::connect(&url, keep_all()).await.unwrap();
    let taken = beat_ms(&url).await;
    assert!(taken > 0, "it beats as it takes the database");
    loop {
        store.beat();
        store.flush().await.unwrap();
        if beat_ms(&url).await > taken {
            break;
        }
    }
}

#[tokio::test]
async fn a_standby_cuts_off_a_writer_that_stopped_beating_and_takes_over() {
    let url = testing::database().await;
    // It beats as it takes the database, and never again: as a hung server.
    let (silent, _writer, ..) = Store::connect(&url, keep_all()).await.unwrap();
    silent.write(accepted("a", 1)).await.unwrap();
    let (store, _writer, saved, _) = Store::stand_by(&url, keep_all(), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(saved.len(), 1, "it reads what the silent one wrote");
    store.write(accepted("a", 2)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), silent.lost())
        .await
        .expect("the silent server hears that it lost the database, should it wake");
}

#[tokio::test]
async fn standbys_learn_where_the_writing_server_serves_from_its_announcements() {
    let url = testing::database().await;
    let follower = crate::ssr::store::follow_writer(&url).unwrap();
    let (store, _writer, ..) = Store::connect(&url, keep_all()).await.unwrap();
    let announced = |expected: &'static str| {
        let mut follower = follower.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(10),
                follower.wait_for(|url| url.as_deref() == Some(expected)),
            )
            .await
            .expect("read within the timeout")
            .expect("the follower runs");
        }
    };
    assert_eq!(*follower.borrow(), None, "none announced yet");
    store.announce("http://10.0.0.1:3000");
    announced("http://10.0.0.1:3000").await;
    // The next writer's announcement replaces it.
    store.announce("http://10.0.0.2:3000");
    announced("http://10.0.0.2:3000").await;
    // Announcements are written in order with the other writes.
    store.write(accepted("a", 1)).await.unwrap();
    assert_eq!(follower.borrow().as_deref(), Some("http://10.0.0.2:3000"));
}
