//! The store's conformance suite: every test runs against both implementations, the SQLite
//! file and a PostgreSQL database (a throwaway server the tests start, see [`super::testing`]).
//! What only one of them has (the SQLite search file, its first release's files, PostgreSQL's
//! concurrent migration) is tested beside it.

use std::collections::BTreeMap;

use super::tokens::{TokenError, Tokens};
use super::*;
use cluster::{Binary, Ran};
use model::page::{Outcome, QueuedTask, TaskStatus, TerminalLine};
use serde_json::json;

/// Where a test's record lives.
pub(super) enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Self {
        Self::Postgres(testing::database().await)
    }

    /// Opens a store on the record, which may hold what an earlier store wrote.
    pub(super) async fn try_open(&self, retention: Retention) -> Result<OpenedStore, StoreError> {
        match self {
            Self::Sqlite(dir) => Store::open(dir.path(), "odd", retention),
            Self::Postgres(url) => Store::connect(url, retention).await,
        }
    }

    pub(super) async fn open(&self, retention: Retention) -> OpenedStore {
        self.try_open(retention).await.unwrap()
    }

    async fn tokens(&self) -> Tokens {
        match self {
            Self::Sqlite(dir) => Tokens::open(dir.path(), "odd").unwrap(),
            Self::Postgres(url) => Tokens::connect(url).await.unwrap(),
        }
    }
}

/// Each named test, once on each implementation: `name::sqlite` and `name::postgres`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name(super::Backend::sqlite()).await
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name(super::Backend::postgres().await).await
                }
            }
        )*
    };
}

conformance!(
    what_was_written_comes_back_after_a_reopen,
    a_search_finds_text_in_the_input_or_the_line_and_takes_wildcards_literally,
    a_task_is_read_back_whole_and_only_by_its_session,
    a_binary_output_is_stored_once_for_its_session_and_leaves_with_its_task,
    the_per_owner_cap_drops_the_oldest_a_forgotten_sessions_history_stays_and_one_that_came_back_keeps_its_task,
    retention_prunes_ended_tasks_by_age_on_the_writers_clock_and_never_unfinished_ones,
    the_newest_id_the_cap_deleted_is_never_given_again,
    a_second_store_on_the_same_record_is_refused_until_the_first_is_gone,
    batches_come_back_open_with_their_unfinished_members_and_counts,
    a_batch_leaves_with_its_last_member_and_its_id_is_never_given_again,
    a_token_works_until_it_is_revoked_and_only_its_hash_is_kept,
);

pub(super) fn task(id: u64) -> QueuedTask {
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

pub(super) fn line(task: u64) -> TerminalLine {
    TerminalLine {
        task,
        outcome: Outcome::Finished,
        text: format!("line {task}"),
        image: false,
        batch: false,
    }
}

pub(super) fn accepted(session: &str, id: u64) -> Write {
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

pub(super) fn done(session: &str, id: u64) -> Write {
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

async fn what_was_written_comes_back_after_a_reopen(backend: Backend) {
    {
        let (store, writer, saved, next_id) = backend.open(keep_all()).await;
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
    let (_store, _writer, saved, next_id) = backend.open(keep_all()).await;
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

async fn a_search_finds_text_in_the_input_or_the_line_and_takes_wildcards_literally(
    backend: Backend,
) {
    let (store, _writer, _, _) = backend.open(keep_all()).await;
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

async fn a_task_is_read_back_whole_and_only_by_its_session(backend: Backend) {
    let (store, _writer, _, _) = backend.open(keep_all()).await;
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

async fn a_binary_output_is_stored_once_for_its_session_and_leaves_with_its_task(backend: Backend) {
    let two = || Retention {
        per_owner: 2,
        ..keep_all()
    };
    {
        let (store, writer, _, _) = backend.open(two()).await;
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
    let (store, _writer, saved, _) = backend.open(two()).await;
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

async fn the_per_owner_cap_drops_the_oldest_a_forgotten_sessions_history_stays_and_one_that_came_back_keeps_its_task(
    backend: Backend,
) {
    let retention = || Retention {
        per_owner: 3,
        terminal_lines: 2,
        ..keep_all()
    };
    let (store, writer, _, _) = backend.open(retention()).await;
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
    let (store, _writer, saved, next_id) = backend.open(retention()).await;
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

async fn retention_prunes_ended_tasks_by_age_on_the_writers_clock_and_never_unfinished_ones(
    backend: Backend,
) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
    let (store, _writer, _, _) = backend.open(retention).await;
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

async fn the_newest_id_the_cap_deleted_is_never_given_again(backend: Backend) {
    let one = || Retention {
        per_owner: 1,
        ..keep_all()
    };
    let (store, writer, _, _) = backend.open(one()).await;
    store.write(accepted("a", 1)).await.unwrap();
    store.write(accepted("a", 2)).await.unwrap();
    store.write(done("a", 2)).await.unwrap();
    // 1 ends last: the owner keeps one ended task, so 2, the newest id, goes.
    store.write(done("a", 1)).await.unwrap();
    assert_eq!(ids(&store, "a").await, [1]);
    drop(store);
    writer.join();
    let (_store, _writer, _, next_id) = backend.open(one()).await;
    assert_eq!(next_id, 3);
}

async fn a_second_store_on_the_same_record_is_refused_until_the_first_is_gone(backend: Backend) {
    let (store, writer, _, _) = backend.open(keep_all()).await;
    store.write(accepted("a", 1)).await.unwrap();
    let refused = backend
        .try_open(keep_all())
        .await
        .err()
        .expect("the record is in use");
    let message = refused.to_string();
    match &backend {
        Backend::Sqlite(dir) => assert!(
            message.contains(&dir.path().display().to_string()) && message.contains("--data-dir"),
            "{message}"
        ),
        Backend::Postgres(url) => assert!(
            message.contains("another Offload server is using the database")
                && message.contains(url.rsplit('/').next().unwrap()),
            "{message}"
        ),
    }
    // The first store is untouched and still writes.
    store.write(accepted("a", 2)).await.unwrap();
    drop(store);
    writer.join();
    let (_store, _writer, saved, _) = backend.open(keep_all()).await;
    assert_eq!(saved[0].unfinished.len(), 2);
}

async fn a_token_works_until_it_is_revoked_and_only_its_hash_is_kept(backend: Backend) {
    let (store, _writer, _, _) = backend.open(keep_all()).await;
    let mut tokens = backend.tokens().await;
    let token = tokens.create("ci-bot", 1000).await.unwrap();
    assert!(
        token.starts_with("offload_") && token.len() == 8 + 16 + 1 + 64,
        "{token}"
    );
    let owner = |presented: String| {
        let store = store.clone();
        async move { store.token_owner(&presented).await.unwrap() }
    };
    assert_eq!(owner(token.clone()).await.as_deref(), Some("ci-bot"));
    // A wrong secret, a forged id, junk: nobody.
    let (head, secret) = token.rsplit_once('_').unwrap();
    let wrong = format!("{head}_{}", "0".repeat(secret.len()));
    for bad in [
        wrong.as_str(),
        "offload_0000000000000000_00",
        "Bearer",
        "",
        "offload_",
    ] {
        assert_eq!(owner(bad.to_owned()).await, None, "{bad}");
    }
    assert!(matches!(
        tokens.create("ci-bot", 2000).await,
        Err(TokenError::Exists(_))
    ));
    tokens.revoke("ci-bot", 3000).await.unwrap();
    assert_eq!(owner(token.clone()).await, None);
    assert!(matches!(
        tokens.revoke("ci-bot", 4000).await,
        Err(TokenError::Unknown(_))
    ));
    let listed = tokens.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at_ms, Some(3000));
    // The name may be given again, to a new secret.
    let again = tokens.create("ci-bot", 5000).await.unwrap();
    assert_ne!(again, token);
    assert_eq!(owner(again).await.as_deref(), Some("ci-bot"));
}

fn new_batch(id: u64, members: u64) -> Write {
    Write::Batch(NewBatch {
        id,
        session: "a".into(),
        task_type: "odd".into(),
        spec: json!({"kind": "inputs", "inputs": []}),
        members,
        created_at_ms: 1000,
        idempotency: Some((format!("key-{id}"), vec![id as u8])),
        retry_of: None,
        reuse: false,
    })
}

fn member_of(batch: u64, index: u64, id: u64) -> Write {
    Write::Accepted {
        session: "a".into(),
        task: QueuedTask {
            id,
            task: "odd".into(),
            args: index.to_string(),
            status: TaskStatus::Queued,
            progress: 0.0,
            submitted_at_ms: 1000 + id,
            batch: None,
        },
        input: json!({ "n": index }),
        next_input: None,
        retry_of: None,
        idempotency: None,
        member: Some(Member {
            batch,
            index,
            last: true,
        }),
        reuse_key: Some(index as i64),
    }
}

fn ended_as(id: u64, outcome: Outcome, at_ms: u64) -> Write {
    Write::Done {
        session: "a".into(),
        line: TerminalLine {
            task: id,
            outcome,
            text: format!("line {id}"),
            image: false,
            batch: false,
        },
        output: Some(json!(id)),
        binary: None,
        ran: None,
        finished_at_ms: at_ms,
    }
}

async fn batches_come_back_open_with_their_unfinished_members_and_counts(backend: Backend) {
    {
        let (store, writer, _, _) = backend.open(keep_all()).await;
        assert_eq!(store.open_batches().await.unwrap(), (vec![], 0));
        store.write(new_batch(1, 5)).await.unwrap();
        store.write(new_batch(2, 1)).await.unwrap();
        for (index, id) in [(0, 10), (1, 11), (2, 12)] {
            store.write(member_of(1, index, id)).await.unwrap();
        }
        store.write(member_of(2, 0, 13)).await.unwrap();
        store
            .write(ended_as(10, Outcome::Finished, 2000))
            .await
            .unwrap();
        store
            .write(ended_as(12, Outcome::Failed, 2000))
            .await
            .unwrap();
        store
            .write(ended_as(13, Outcome::Finished, 2000))
            .await
            .unwrap();
        let finished = Write::BatchFinished {
            batch: 2,
            at_ms: 2001,
        };
        store.write(finished).await.unwrap();
        let record = store.batch("a", 1).await.unwrap().unwrap();
        assert_eq!((record.members, record.fed), (5, 3));
        assert_eq!(record.ended, [1, 1, 0, 0]);
        assert!(
            store.batch("b", 1).await.unwrap().is_none(),
            "another owner's"
        );
        let (members, more) = store.members(1, Some(0), 1).await.unwrap();
        assert!(more);
        assert_eq!(members[0].index, 1);
        assert_eq!(members[0].task.id, 11);
        let only = TaskFilter {
            batch: Some(1),
            limit: 10,
            ..TaskFilter::default()
        };
        let (listed, _) = store.tasks("a", only).await.unwrap();
        let ids: Vec<u64> = listed.iter().map(|t| t.id).collect();
        assert_eq!(ids, [12, 11, 10], "batch 1's members, newest first");
        let folded = TaskFilter {
            fold_batches: true,
            limit: 10,
            ..TaskFilter::default()
        };
        let (listed, _) = store.tasks("a", folded).await.unwrap();
        let rows: Vec<(u64, Option<u64>)> = listed.iter().map(|t| (t.id, t.batch)).collect();
        assert_eq!(rows, [(13, Some(2)), (10, Some(1))], "a row per batch");
        let (newest, _) = store.batches("a", None, 10).await.unwrap();
        assert_eq!(newest.iter().map(|b| b.id).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(
            store.batch_by_idempotency_key("a", "key-2").await.unwrap(),
            Some((2, vec![2]))
        );
        // Another open batch, its one member handed over.
        store.write(new_batch(3, 2)).await.unwrap();
        store.write(member_of(3, 0, 14)).await.unwrap();
        drop(store);
        writer.join();
    }
    let (store, _writer, saved, _) = backend.open(keep_all()).await;
    // Members are their batch's, not their session's to run again.
    assert!(saved.iter().all(|s| s.unfinished.is_empty()), "{saved:?}");
    let (open, last) = store.open_batches().await.unwrap();
    assert_eq!(last, 3);
    // (batch, members handed over, [(index, task) of those unfinished]).
    type Open = (u64, u64, Vec<(u64, u64)>);
    let open: Vec<Open> = open
        .iter()
        .map(|saved| {
            let unfinished = saved
                .unfinished
                .iter()
                .map(|(index, t)| (*index, t.task.id))
                .collect();
            (saved.batch.id, saved.batch.fed, unfinished)
        })
        .collect();
    assert_eq!(open, [(1, 3, vec![(1, 11)]), (3, 1, vec![(0, 14)])]);
}

async fn a_batch_leaves_with_its_last_member_and_its_id_is_never_given_again(backend: Backend) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let now = std::sync::Arc::new(AtomicU64::new(1_000_000));
    let clock = now.clone();
    let retention = Retention {
        max_age: Some(std::time::Duration::from_secs(60)),
        clock: std::sync::Arc::new(move || clock.load(Ordering::Relaxed)),
        ..Retention::default()
    };
    let (store, _writer, _, _) = backend.open(retention).await;
    store.write(new_batch(1, 2)).await.unwrap();
    store.write(member_of(1, 0, 10)).await.unwrap();
    store.write(member_of(1, 1, 11)).await.unwrap();
    // One member long past the retention, one recent: the batch stays with the latter.
    store
        .write(ended_as(10, Outcome::Finished, 1))
        .await
        .unwrap();
    store
        .write(ended_as(11, Outcome::Finished, 999_000))
        .await
        .unwrap();
    store.prune().await.unwrap();
    assert!(store.batch("a", 1).await.unwrap().is_some());
    now.store(2_000_000, Ordering::Relaxed);
    store.prune().await.unwrap();
    assert!(
        store.batch("a", 1).await.unwrap().is_none(),
        "gone with its last member"
    );
    // A cancelled batch none of whose members was handed over goes by its own age.
    store.write(new_batch(2, 3)).await.unwrap();
    let cancelled = Write::BatchCancelled { batch: 2, at_ms: 1 };
    store.write(cancelled).await.unwrap();
    let finished = Write::BatchFinished { batch: 2, at_ms: 1 };
    store.write(finished).await.unwrap();
    store.prune().await.unwrap();
    assert!(store.batch("a", 2).await.unwrap().is_none());
    assert_eq!(store.open_batches().await.unwrap().1, 2);
}
