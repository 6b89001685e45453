use std::collections::BTreeMap;

use super::*;
use cluster::{Binary, Ran};
use model::page::{Outcome, QueuedTask, TaskStatus, TerminalLine};
use rusqlite::Connection;
use serde_json::json;

fn task(id: u64) -> QueuedTask {
    QueuedTask {
        id,
        task: if id.is_multiple_of(2) { "even" } else { "odd" }.into(),
        args: id.to_string(),
        status: TaskStatus::Queued,
        progress: 0.0,
        submitted_at_ms: 1000 + id,
        batch: None,
    }
}

fn line(task: u64) -> TerminalLine {
    TerminalLine {
        task,
        outcome: Outcome::Finished,
        text: format!("line {task}"),
        image: false,
        batch: false,
    }
}

fn accepted(session: &str, id: u64) -> Write {
    Write::Accepted {
        session: session.into(),
        task: task(id),
        input: json!({ "n": id }),
        next_input: Some(json!({ "n": id + 1 })),
        retry_of: None,
        idempotency: None,
        member: None,
        reuse_key: None,
    }
}

/// Every ended task kept, whatever its age: the tests' tasks ended in 1970.
pub(super) fn keep_all() -> Retention {
    Retention {
        max_age: None,
        ..Retention::default()
    }
}

fn done(session: &str, id: u64) -> Write {
    Write::Done {
        session: session.into(),
        line: line(id),
        output: Some(json!(id * 10)),
        binary: None,
        ran: Some(Ran {
            worker: "h-1/0".into(),
            started_at_ms: 1500 + id,
            attempt: 2,
        }),
        finished_at_ms: 2000 + id,
    }
}

#[tokio::test]
async fn what_was_written_comes_back_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, writer, saved, next_id) = Store::open(dir.path(), "odd", keep_all()).unwrap();
        assert!(saved.is_empty());
        assert_eq!(next_id, 1);
        for id in 1..=5 {
            store.write(accepted("a", id)).await.unwrap();
        }
        store.write(accepted("b", 6)).await.unwrap();
        // Completion order, not submission order; a second result for 3 is ignored.
        for id in [4, 2, 3] {
            store.write(done("a", id)).await.unwrap();
        }
        let again = Write::Done {
            session: "a".into(),
            line: TerminalLine {
                text: "again".into(),
                ..line(3)
            },
            output: None,
            binary: None,
            ran: None,
            finished_at_ms: 3000,
        };
        store.write(again).await.unwrap();
        drop(store);
        writer.join();
    }
    let (_store, _writer, saved, next_id) = Store::open(dir.path(), "odd", keep_all()).unwrap();
    assert_eq!(next_id, 7);
    let a = &saved[0];
    assert_eq!(a.id, "a");
    assert_eq!(
        a.next_inputs,
        BTreeMap::from([
            ("even".to_owned(), json!({"n": 5})),
            ("odd".to_owned(), json!({"n": 6}))
        ])
    );
    let unfinished: Vec<u64> = a.unfinished.iter().map(|t| t.task.id).collect();
    assert_eq!(unfinished, [1, 5]);
    let lines: Vec<&str> = a.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(lines, ["line 4", "line 2", "line 3"]);
    assert_eq!(
        saved[1].unfinished,
        vec![SavedTask {
            task: task(6),
            input: json!({"n": 6})
        }]
    );
}

#[tokio::test]
async fn a_search_finds_text_in_the_input_or_the_line_and_takes_wildcards_literally() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _writer, _, _) = Store::open(dir.path(), "odd", keep_all()).unwrap();
    for id in 1..=12 {
        store.write(accepted("a", id)).await.unwrap();
    }
    store.write(done("a", 3)).await.unwrap();
    let found = |search: &str| {
        let store = store.clone();
        let filter = TaskFilter {
            search: Some(search.to_owned()),
            limit: 100,
            ..TaskFilter::default()
        };
        async move {
            let (records, _) = store.tasks("a", filter).await.unwrap();
            records.iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    // Inputs are {"n": id}: "1" is in 1, 10, 11 and 12.
    assert_eq!(found("1").await, [12, 11, 10, 1]);
    assert_eq!(found("LINE 3").await, [3], "the line, in any case");
    assert_eq!(
        found("\"N\":1").await,
        [12, 11, 10, 1],
        "quotes are text, not the index's syntax"
    );
    assert_eq!(found("ine 1").await, Vec::<u64>::new(), "only 3 has a line");
    assert_eq!(
        found("%").await,
        Vec::<u64>::new(),
        "% is a character, not a wildcard"
    );
    assert_eq!(found("_").await, Vec::<u64>::new());
    assert_eq!(
        store
            .tasks(
                "b",
                TaskFilter {
                    search: Some("1".into()),
                    limit: 9,
                    ..TaskFilter::default()
                }
            )
            .await
            .unwrap()
            .0,
        vec![],
        "not b's"
    );
}

#[tokio::test]
async fn the_search_index_follows_the_tasks_in_its_own_file_and_is_built_anew_when_lost() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| Connection::open(dir.path().join(name)).unwrap();
    let log = || -> i64 {
        file("offload.sqlite3")
            .query_row("SELECT count(*) FROM text_changes", [], |r| r.get(0))
            .unwrap()
    };
    let indexed = |phrase: &str| -> i64 {
        file(search::FILE)
            .query_row(
                "SELECT count(*) FROM tasks_text WHERE tasks_text MATCH ?1",
                [format!("\"{phrase}\"")],
                |r| r.get(0),
            )
            .unwrap()
    };
    let search = |store: &Store, text: &str| {
        let (store, text) = (store.clone(), text.to_owned());
        async move {
            let filter = TaskFilter {
                search: Some(text),
                limit: 10,
                ..TaskFilter::default()
            };
            let (records, _) = store.tasks("a", filter).await.unwrap();
            records.iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    let open = || Store::open(dir.path(), "odd", keep_all()).unwrap();
    {
        let (store, threads, _, _) = open();
        for id in 1..=3 {
            store.write(accepted("a", id)).await.unwrap();
        }
        store.write(done("a", 2)).await.unwrap();
        assert_eq!(search(&store, "line 2").await, [2], "caught up first");
        // The log goes with the next commit once the index holds it.
        store.flush().await.unwrap();
        assert_eq!(log(), 0);
        drop(store);
        threads.join();
    }
    // A line written but not indexed when the last run ended (as a kill between the commit
    // and the indexing leaves it): logged by the schema's trigger.
    file("offload.sqlite3")
        .execute("UPDATE tasks SET text = 'line 3 again' WHERE id = 3", [])
        .unwrap();
    assert_eq!(log(), 1);
    {
        let (store, threads, _, _) = open();
        // Indexed with no search to ask for it.
        let mut waited = 0;
        while indexed("line 3 again") == 0 && waited < 200 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            waited += 1;
        }
        assert_eq!(indexed("line 3 again"), 1, "indexed once the store is open");
        assert_eq!(indexed("line 2"), 1, "once, whatever was logged twice");
        // A task deleted by any writer leaves the index.
        assert_eq!(indexed(":1}"), 1, "task 1's input");
        file("offload.sqlite3")
            .execute("DELETE FROM tasks WHERE id = 1", [])
            .unwrap();
        assert_eq!(search(&store, "line").await, [3, 2]);
        assert_eq!(indexed(":1}"), 0, "task 1 is gone from the index");
        drop(store);
        threads.join();
    }
    // The search file lost: built anew from the tasks, whole before a search reads it.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{}{suffix}", search::FILE)));
    }
    {
        let (store, threads, _, _) = open();
        assert_eq!(search(&store, "line").await, [3, 2]);
        assert_eq!(search(&store, "again").await, [3]);
        drop(store);
        threads.join();
    }
    // A search file that has seen changes the store's file has not (another store's): built
    // anew too, each task once.
    file(search::FILE)
        .execute("UPDATE marks SET value = 1000000 WHERE key = 'seq'", [])
        .unwrap();
    let (store, _threads, _, _) = open();
    assert_eq!(search(&store, "line").await, [3, 2]);
    assert_eq!(indexed("line 3 again"), 1);
}

#[tokio::test]
async fn a_task_is_read_back_whole_and_only_by_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _writer, _, _) = Store::open(dir.path(), "odd", keep_all()).unwrap();
    store.write(accepted("a", 1)).await.unwrap();
    store.write(accepted("a", 2)).await.unwrap();
    store.write(done("a", 1)).await.unwrap();
    let finished = store.task("a", 1).await.unwrap().unwrap();
    assert_eq!(
        finished,
        TaskRecord {
            id: 1,
            task_type: "odd".into(),
            input: json!({"n": 1}),
            args: "1".into(),
            submitted_at_ms: 1001,
            outcome: Some(Outcome::Finished),
            line: Some("line 1".into()),
            output: Some(json!(10)),
            output_media: None,
            finished_at_ms: Some(2001),
            retry_of: None,
            ran: Some(Ran {
                worker: "h-1/0".into(),
                started_at_ms: 1501,
                attempt: 2,
            }),
            reused_from: None,
            batch: None,
        }
    );
    let running = store.task("a", 2).await.unwrap().unwrap();
    assert_eq!((running.outcome, running.output), (None, None));
    assert_eq!(store.task("b", 1).await.unwrap(), None, "not b's");
    assert_eq!(store.task("a", 99).await.unwrap(), None);
}

#[tokio::test]
async fn a_binary_output_is_stored_once_for_its_session_and_leaves_with_its_task() {
    let dir = tempfile::tempdir().unwrap();
    let two = || Retention {
        per_owner: 2,
        ..keep_all()
    };
    {
        let (store, writer, _, _) = Store::open(dir.path(), "odd", two()).unwrap();
        for id in 1..=3 {
            store.write(accepted("a", id)).await.unwrap();
        }
        let picture = Binary::new("image/png", vec![0x89, b'P', b'N', b'G']);
        let done_with_picture = Write::Done {
            session: "a".into(),
            line: TerminalLine {
                image: true,
                ..line(1)
            },
            output: Some(json!({ "png": picture.stub() })),
            binary: Some(picture),
            ran: None,
            finished_at_ms: 2001,
        };
        store.write(done_with_picture).await.unwrap();
        let png = Some(("image/png".to_owned(), b"\x89PNG".to_vec()));
        assert_eq!(store.output("a", 1).await.unwrap(), png);
        assert_eq!(
            store.output("b", 1).await.unwrap(),
            None,
            "another session's"
        );
        let record = store.task("a", 1).await.unwrap().unwrap();
        assert_eq!(record.output_media.as_deref(), Some("image/png"));
        assert_eq!(
            record.output,
            Some(json!({"png": {"media_type": "image/png", "bytes": 4}}))
        );
        store.write(done("a", 2)).await.unwrap();
        assert_eq!(
            store.output("a", 2).await.unwrap(),
            None,
            "no binary output"
        );
        drop(store);
        writer.join();
    }
    let (store, _writer, saved, _) = Store::open(dir.path(), "odd", two()).unwrap();
    let images: Vec<(u64, bool)> = saved[0].lines.iter().map(|l| (l.task, l.image)).collect();
    assert_eq!(images, [(1, true), (2, false)]);
    // Pruned with its task: two ended tasks kept per owner, and 3 ends last.
    store.write(done("a", 3)).await.unwrap();
    assert_eq!(store.output("a", 1).await.unwrap(), None);
}

/// `owner`'s task ids on record, newest first.
async fn ids(store: &Store, owner: &str) -> Vec<u64> {
    let filter = TaskFilter {
        limit: 100,
        ..TaskFilter::default()
    };
    let (records, _) = store.tasks(owner, filter).await.unwrap();
    records.iter().map(|r| r.id).collect()
}

#[tokio::test]
async fn the_per_owner_cap_drops_the_oldest_a_forgotten_sessions_history_stays_and_one_that_came_back_keeps_its_task()
 {
    let dir = tempfile::tempdir().unwrap();
    let retention = || Retention {
        per_owner: 3,
        terminal_lines: 2,
        ..keep_all()
    };
    let (store, writer, _, _) = Store::open(dir.path(), "odd", retention()).unwrap();
    for id in 1..=5 {
        store.write(accepted("a", id)).await.unwrap();
        store.write(done("a", id)).await.unwrap();
    }
    store.write(accepted("gone", 8)).await.unwrap();
    store.write(done("gone", 8)).await.unwrap();
    let forget = |session: &str| Write::Forget {
        session: session.into(),
    };
    store.write(forget("gone")).await.unwrap();
    // Idle when its forgetting was queued, then back with a task before it was written.
    store.write(accepted("back", 9)).await.unwrap();
    store.write(forget("back")).await.unwrap();
    assert_eq!(ids(&store, "a").await, [5, 4, 3], "the three newest");
    assert_eq!(ids(&store, "gone").await, [8], "its history");
    assert_eq!(ids(&store, "back").await, [9], "its unfinished task");
    let (_, tasks, owners, pruned) = store.figures().read();
    assert_eq!((tasks, owners, pruned), (5, 2, 2));
    drop(store);
    writer.join();
    let (store, _writer, saved, next_id) = Store::open(dir.path(), "odd", retention()).unwrap();
    let saved_ids: Vec<&str> = saved.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        saved_ids,
        ["a", "back"],
        "the forgotten session's forms are gone"
    );
    let rerun: Vec<u64> = saved[1].unfinished.iter().map(|t| t.task.id).collect();
    assert_eq!(rerun, [9], "the session that came back runs its task again");
    let kept: Vec<u64> = saved[0].lines.iter().map(|l| l.task).collect();
    assert_eq!(kept, [4, 5], "the terminal's last two lines, oldest first");
    assert_eq!(next_id, 10);
    // The counts are the file's, not the last run's memory: the cap holds after a restart.
    assert_eq!(store.figures().read().2, 2);
    store.write(accepted("a", 10)).await.unwrap();
    store.write(done("a", 10)).await.unwrap();
    assert_eq!(ids(&store, "a").await, [10, 5, 4]);
}

#[tokio::test]
async fn retention_prunes_ended_tasks_by_age_on_the_writers_clock_and_never_unfinished_ones() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(2_000));
    let clock = {
        let now = now.clone();
        Arc::new(move || now.load(Relaxed))
    };
    let retention = Retention {
        max_age: Some(std::time::Duration::from_millis(100)),
        clock,
        ..Retention::default()
    };
    let (store, _writer, _, _) = Store::open(dir.path(), "odd", retention).unwrap();
    // Tasks 1 to 3 end at 2001 to 2003; 4 never ends.
    for id in 1..=4 {
        store.write(accepted("a", id)).await.unwrap();
    }
    for id in 1..=3 {
        store.write(done("a", id)).await.unwrap();
    }
    let left = || async {
        let filter = TaskFilter {
            limit: 100,
            ..TaskFilter::default()
        };
        let (records, _) = store.tasks("a", filter).await.unwrap();
        records.iter().map(|r| r.id).collect::<Vec<_>>()
    };
    store.prune().await.unwrap();
    assert_eq!(left().await, [4, 3, 2, 1], "none is 100 ms old yet");
    now.store(2_103, Relaxed);
    store.prune().await.unwrap();
    assert_eq!(left().await, [4, 3], "1 and 2 ended over 100 ms ago");
    now.store(u64::MAX / 2, Relaxed);
    store.prune().await.unwrap();
    assert_eq!(left().await, [4], "the unfinished task stays, however old");
    let (_, tasks, owners, pruned) = store.figures().read();
    assert_eq!((tasks, owners, pruned), (1, 0, 3));
}

#[tokio::test]
async fn a_second_store_on_the_same_directory_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer, _, _) = Store::open(dir.path(), "odd", keep_all()).unwrap();
    store.write(accepted("a", 1)).await.unwrap();
    let refused = Store::open(dir.path(), "odd", keep_all())
        .err()
        .expect("the directory is in use");
    let message = refused.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()) && message.contains("--data-dir"),
        "{message}"
    );
    // The first store is untouched and still writes.
    store.write(accepted("a", 2)).await.unwrap();
    drop(store);
    writer.join();
    let (_store, _writer, saved, _) = Store::open(dir.path(), "odd", keep_all()).unwrap();
    assert_eq!(saved[0].unfinished.len(), 2);
}
