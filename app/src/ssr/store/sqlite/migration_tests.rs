use std::collections::BTreeMap;

use rusqlite::Connection;
use serde_json::Value;

use super::schema::migrations;
use crate::ssr::store::conformance::keep_all;
use crate::ssr::store::*;
use model::page::{Outcome, TerminalLine};

/// A data directory written by the first release's `offload` binary: n = 10 and 20
/// finished, then the server was killed with SIGKILL while n = 45 ran and n = 46 waited;
/// the session's form offered 47.
const FIRST_RELEASE: &[u8] =
    include_bytes!("../../../../tests/fixtures/first-release/offload.sqlite3");

#[tokio::test]
async fn a_first_release_data_directory_opens_migrated_with_everything_it_held() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("offload.sqlite3"), FIRST_RELEASE).unwrap();
    let (store, writer, saved, next_id) = Store::open(dir.path(), "seed", keep_all()).unwrap();
    assert_eq!(next_id, 5, "ids are not reused");
    assert_eq!(saved.len(), 1);
    let session = &saved[0];
    assert_eq!(
        session.next_inputs,
        BTreeMap::from([("seed".to_owned(), serde_json::json!({"n": 47}))])
    );
    let lines: Vec<(u64, &str)> = session
        .lines
        .iter()
        .map(|l| (l.task, l.text.as_str()))
        .collect();
    assert!(
        matches!(lines.as_slice(), [(1, a), (2, b)]
            if a.ends_with("(10)=55 in 0.000sec") && b.ends_with("(20)=6765 in 0.000sec")),
        "{lines:?}"
    );
    let unfinished: Vec<(u64, &str, &str, &Value)> = session
        .unfinished
        .iter()
        .map(|t| {
            (
                t.task.id,
                t.task.task.as_str(),
                t.task.args.as_str(),
                &t.input,
            )
        })
        .collect();
    assert_eq!(
        unfinished,
        [
            (3, "seed", "45", &serde_json::json!({"n": 45})),
            (4, "seed", "46", &serde_json::json!({"n": 46}))
        ]
    );
    // The migrated file takes new rows and opens again without migrating twice.
    store
        .write(Write::Done {
            session: session.id.clone(),
            line: TerminalLine {
                task: 3,
                outcome: Outcome::Finished,
                text: "45: 1134903170".into(),
                image: false,
                batch: false,
            },
            output: Some(serde_json::json!(1134903170u64)),
            binary: None,
            ran: None,
            finished_at_ms: 4000,
        })
        .await
        .unwrap();
    drop(store);
    writer.join();
    let (store, _writer, saved, _) = Store::open(dir.path(), "seed", keep_all()).unwrap();
    assert_eq!(saved[0].lines.len(), 3);
    assert_eq!(saved[0].unfinished.len(), 1);
    // The search index, built from the tasks in its own file, finds the first release's lines.
    let filter = |text: &str| TaskFilter {
        search: Some(text.into()),
        limit: 10,
        ..TaskFilter::default()
    };
    let found = |records: Vec<TaskRecord>| records.iter().map(|r| r.id).collect::<Vec<_>>();
    let (records, _) = store.tasks(&saved[0].id, filter("=6765")).await.unwrap();
    assert_eq!(found(records), [2]);
    let (records, _) = store
        .tasks(&saved[0].id, filter("1134903170"))
        .await
        .unwrap();
    assert_eq!(found(records), [3]);
    let conn = Connection::open(dir.path().join("offload.sqlite3")).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 11, "every migration ran, once");
    let output: String = conn
        .query_row("SELECT output FROM tasks WHERE id = 3", [], |r| r.get(0))
        .unwrap();
    assert_eq!(output, "1134903170");
}

#[test]
fn migration_7_counts_each_owners_ended_tasks_and_the_triggers_keep_counting() {
    let mut conn = Connection::open_in_memory().unwrap();
    let migrations = migrations("seed");
    migrations.to_version(&mut conn, 6).unwrap();
    conn.execute_batch(
        "INSERT INTO tasks (id, session, task_type, input, args, submitted_at_ms, done_seq)
         VALUES (1, 'a', 'seed', '{}', '', 0, 1), (2, 'a', 'seed', '{}', '', 0, 2),
                (3, 'b', 'seed', '{}', '', 0, 3), (4, 'b', 'seed', '{}', '', 0, NULL),
                (5, 'c', 'seed', '{}', '', 0, NULL);",
    )
    .unwrap();
    migrations.to_latest(&mut conn).unwrap();
    let counts = |conn: &Connection| -> (Vec<(String, i64)>, i64) {
        let owners = conn
            .prepare("SELECT session, ended FROM owners ORDER BY session")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let total = conn
            .query_row("SELECT value FROM meta WHERE key = 'owners'", [], |r| {
                r.get(0)
            })
            .unwrap();
        (owners, total)
    };
    assert_eq!(counts(&conn), (vec![("a".into(), 2), ("b".into(), 1)], 2));
    // c's first task ends, b's ended one goes, a's unfinished one arrives and goes.
    conn.execute_batch(
        "UPDATE tasks SET done_seq = 4 WHERE id = 5;
         DELETE FROM tasks WHERE id = 3;
         INSERT INTO tasks (id, session, task_type, input, args, submitted_at_ms)
             VALUES (6, 'a', 'seed', '{}', '', 0);
         DELETE FROM tasks WHERE id = 6;
         UPDATE tasks SET done_seq = 9 WHERE id = 1;",
    )
    .unwrap();
    assert_eq!(counts(&conn), (vec![("a".into(), 2), ("c".into(), 1)], 2));
}

#[test]
fn the_migrations_are_valid() {
    migrations("seed").validate().unwrap();
}
