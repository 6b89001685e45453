//! The durable record of sessions: each session's next `n`, its accepted tasks that have not
//! finished, and its terminal lines, in an embedded SQLite file under the data directory.
//!
//! One writer thread owns the connection. Writes arrive on a bounded channel and are committed
//! in batches (group commit): whatever queued up while the previous transaction ran goes into
//! the next one, so a burst of submissions costs one commit, not one each. A caller that must
//! not go on before its write is durable awaits the write's acknowledgement. The journal is
//! WAL with `synchronous = NORMAL`: a commit survives the process being killed (the case this
//! store exists for), though not a power cut before the next checkpoint.
//!
//! Reads happen once, at start-up ([`Store::open`]); afterwards the in-memory sessions are the
//! truth and this file follows them.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

use model::page::{Outcome, QueuedTask, TaskStatus, TerminalLine};

/// Writes that may wait for the writer before submitters are slowed down.
const CHANNEL: usize = 4_096;
/// Most writes in one transaction.
const BATCH: usize = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another Offload server is using the data directory {path}: stop it, or give this one a directory of its own with --data-dir (or OFFLOAD_DATA_DIR)"
    )]
    InUse { path: PathBuf },
    #[error("locking the data directory {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening the session database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the session database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("starting the session database's writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the session database has stopped")]
    Stopped,
}

/// What one session looked like when the server last stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSession {
    pub id: String,
    pub next_n: i64,
    /// Accepted, not finished: to be run again.
    pub unfinished: Vec<QueuedTask>,
    /// Oldest first.
    pub lines: Vec<TerminalLine>,
}

/// One change to the record.
#[derive(Debug, Clone)]
pub enum Write {
    /// A task was accepted for `session`; the session's next n is now `next_n`.
    Accepted {
        session: String,
        task: QueuedTask,
        next_n: i64,
    },
    /// A task ended with this line; keep at most `keep_lines` lines for the session.
    Done {
        session: String,
        line: TerminalLine,
        keep_lines: usize,
    },
    /// The session expired or was evicted.
    Forget { session: String },
}

struct Op {
    write: Option<Write>,
    ack: Option<oneshot::Sender<Result<(), String>>>,
}

/// A handle on the writer; cheap to clone. The writer stops when every handle is gone.
#[derive(Clone)]
pub struct Store {
    ops: mpsc::Sender<Op>,
}

/// Joins the writer thread once every [`Store`] handle is dropped, so that nothing queued is lost
/// on a clean exit.
pub struct WriterThread(Option<JoinHandle<()>>);

impl WriterThread {
    pub fn join(mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// An exclusive lock on `dir`, released when the returned file is closed (by the process's
/// exit too, so a crash never leaves it locked).
fn lock(dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = dir.join("offload.lock");
    let file = std::fs::File::create(&path).map_err(|source| StoreError::Lock {
        path: path.clone(),
        source,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Lock { path, source }),
    }
}

impl Store {
    /// Opens (or creates) `dir/offload.sqlite3`, returns what it holds and starts the writer.
    /// The directory is locked until the writer ends: two servers on one directory would
    /// hand out the same task ids and run each other's unfinished tasks.
    pub fn open(dir: &Path) -> Result<(Self, WriterThread, Vec<SavedSession>, u64), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let lock = lock(dir)?;
        let path = dir.join("offload.sqlite3");
        let conn = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000;
             -- Writes touch few pages; 512 KB of page cache bounds the store's memory.
             PRAGMA cache_size = -512;
             CREATE TABLE IF NOT EXISTS sessions (
                 id TEXT PRIMARY KEY,
                 next_n INTEGER NOT NULL
             );
             -- A task is one row from acceptance on; `done_seq` orders the terminal lines.
             CREATE TABLE IF NOT EXISTS tasks (
                 id INTEGER PRIMARY KEY,
                 session TEXT NOT NULL,
                 n INTEGER NOT NULL,
                 submitted_at_ms INTEGER NOT NULL,
                 done_seq INTEGER,
                 outcome TEXT,
                 text TEXT
             );
             CREATE INDEX IF NOT EXISTS tasks_by_session ON tasks (session, done_seq);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )?;
        let saved = load(&conn)?;
        let next_id: u64 = conn.query_row(
            "SELECT max(coalesce((SELECT max(id) FROM tasks), 0),
                        coalesce((SELECT value FROM meta WHERE key = 'last_task_id'), 0))",
            [],
            |row| row.get::<_, i64>(0),
        )? as u64
            + 1;
        let (ops, rx) = mpsc::channel(CHANNEL);
        let thread = std::thread::Builder::new()
            .name("offload-store".into())
            .spawn(move || {
                // Held, and so the directory locked, while the writer runs.
                let _lock = lock;
                writer(conn, rx);
            })
            .map_err(StoreError::Thread)?;
        Ok((Self { ops }, WriterThread(Some(thread)), saved, next_id))
    }

    /// Queues `write` and returns once it is committed.
    pub async fn write(&self, write: Write) -> Result<(), StoreError> {
        self.send(Some(write)).await
    }

    /// Queues `write` without waiting for it (for records whose loss only means a rerun).
    pub fn write_later(&self, write: Write) {
        let ops = self.ops.clone();
        tokio::spawn(async move {
            let _ = ops
                .send(Op {
                    write: Some(write),
                    ack: None,
                })
                .await;
        });
    }

    /// Returns once everything queued before it is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.send(None).await
    }

    async fn send(&self, write: Option<Write>) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.ops
            .send(Op {
                write,
                ack: Some(ack),
            })
            .await
            .map_err(|_| StoreError::Stopped)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => {
                tracing::error!(%message, "a session database write failed");
                Err(StoreError::Stopped)
            }
            Err(_) => Err(StoreError::Stopped),
        }
    }
}

fn load(conn: &Connection) -> Result<Vec<SavedSession>, rusqlite::Error> {
    let mut sessions: Vec<SavedSession> = conn
        .prepare("SELECT id, next_n FROM sessions ORDER BY id")?
        .query_map([], |row| {
            Ok(SavedSession {
                id: row.get(0)?,
                next_n: row.get(1)?,
                unfinished: Vec::new(),
                lines: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let index: std::collections::HashMap<String, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    let mut rows = conn.prepare(
        "SELECT session, id, n, submitted_at_ms, outcome, text FROM tasks
         ORDER BY done_seq IS NOT NULL, done_seq, id",
    )?;
    let mut rows = rows.query([])?;
    while let Some(row) = rows.next()? {
        let session: String = row.get(0)?;
        let Some(&i) = index.get(&session) else {
            continue;
        };
        let id = row.get::<_, i64>(1)? as u64;
        let outcome: Option<String> = row.get(4)?;
        match outcome.as_deref().and_then(outcome_from) {
            None => sessions[i].unfinished.push(QueuedTask {
                id,
                n: row.get(2)?,
                status: TaskStatus::Queued,
                progress: 0.0,
                submitted_at_ms: row.get::<_, i64>(3)? as u64,
            }),
            Some(outcome) => sessions[i].lines.push(TerminalLine {
                task: id,
                outcome,
                text: row.get(5)?,
            }),
        }
    }
    Ok(sessions)
}

fn writer(mut conn: Connection, mut rx: mpsc::Receiver<Op>) {
    let mut done_seq: i64 = conn
        .query_row("SELECT coalesce(max(done_seq), 0) FROM tasks", [], |r| {
            r.get(0)
        })
        .unwrap_or(0);
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = apply(&mut conn, &batch, &mut done_seq).map_err(|e| e.to_string());
        if let Err(error) = &result {
            tracing::error!(%error, writes = batch.len(), "could not commit session records");
        }
        for op in batch {
            if let Some(ack) = op.ack {
                let _ = ack.send(result.clone());
            }
        }
    }
}

fn apply(conn: &mut Connection, batch: &[Op], done_seq: &mut i64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let mut last_id = 0u64;
    for write in batch.iter().filter_map(|op| op.write.as_ref()) {
        match write {
            Write::Accepted {
                session,
                task,
                next_n,
            } => {
                tx.prepare_cached(
                    "INSERT INTO sessions (id, next_n) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET next_n = excluded.next_n",
                )?
                .execute(params![session, next_n])?;
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO tasks (id, session, n, submitted_at_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    task.id as i64,
                    session,
                    task.n,
                    task.submitted_at_ms as i64
                ])?;
                last_id = last_id.max(task.id);
            }
            Write::Done {
                session,
                line,
                keep_lines,
            } => {
                *done_seq += 1;
                // `done_seq IS NULL`: a result is recorded once, however often the task ran.
                tx.prepare_cached(
                    "UPDATE tasks SET done_seq = ?1, outcome = ?2, text = ?3
                     WHERE id = ?4 AND done_seq IS NULL",
                )?
                .execute(params![
                    *done_seq,
                    outcome_name(line.outcome),
                    line.text,
                    line.task as i64
                ])?;
                tx.prepare_cached(
                    "DELETE FROM tasks WHERE session = ?1 AND done_seq IS NOT NULL AND done_seq <=
                       (SELECT done_seq FROM tasks WHERE session = ?1 AND done_seq IS NOT NULL
                        ORDER BY done_seq DESC LIMIT 1 OFFSET ?2)",
                )?
                .execute(params![session, *keep_lines as i64])?;
            }
            Write::Forget { session } => {
                tx.prepare_cached("DELETE FROM tasks WHERE session = ?1")?
                    .execute(params![session])?;
                tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                    .execute(params![session])?;
            }
        }
    }
    if last_id > 0 {
        // Task ids are never reused, even after the rows that held them are gone.
        tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('last_task_id', ?1)
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        )?
        .execute(params![last_id as i64])?;
    }
    tx.commit()
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Finished => "finished",
        Outcome::Failed => "failed",
        Outcome::Cancelled => "cancelled",
        Outcome::Lost => "lost",
    }
}

fn outcome_from(name: &str) -> Option<Outcome> {
    Some(match name {
        "finished" => Outcome::Finished,
        "failed" => Outcome::Failed,
        "cancelled" => Outcome::Cancelled,
        "lost" => Outcome::Lost,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64, n: i64) -> QueuedTask {
        QueuedTask {
            id,
            n,
            status: TaskStatus::Queued,
            progress: 0.0,
            submitted_at_ms: 1000 + id,
        }
    }

    fn line(task: u64) -> TerminalLine {
        TerminalLine {
            task,
            outcome: Outcome::Finished,
            text: format!("line {task}"),
        }
    }

    fn accepted(session: &str, id: u64) -> Write {
        Write::Accepted {
            session: session.into(),
            task: task(id, id as i64),
            next_n: id as i64 + 1,
        }
    }

    fn done(session: &str, id: u64, keep_lines: usize) -> Write {
        Write::Done {
            session: session.into(),
            line: line(id),
            keep_lines,
        }
    }

    #[tokio::test]
    async fn what_was_written_comes_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, writer, saved, next_id) = Store::open(dir.path()).unwrap();
            assert!(saved.is_empty());
            assert_eq!(next_id, 1);
            for id in 1..=5 {
                store.write(accepted("a", id)).await.unwrap();
            }
            store.write(accepted("b", 6)).await.unwrap();
            // Completion order, not submission order; a second result for 3 is ignored.
            for id in [4, 2, 3] {
                store.write(done("a", id, 10)).await.unwrap();
            }
            let again = Write::Done {
                session: "a".into(),
                line: TerminalLine {
                    text: "again".into(),
                    ..line(3)
                },
                keep_lines: 10,
            };
            store.write(again).await.unwrap();
            drop(store);
            writer.join();
        }
        let (_store, _writer, saved, next_id) = Store::open(dir.path()).unwrap();
        assert_eq!(next_id, 7);
        let a = &saved[0];
        assert_eq!((a.id.as_str(), a.next_n), ("a", 6));
        let unfinished: Vec<u64> = a.unfinished.iter().map(|t| t.id).collect();
        assert_eq!(unfinished, [1, 5]);
        let lines: Vec<&str> = a.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(lines, ["line 4", "line 2", "line 3"]);
        assert_eq!(saved[1].unfinished, vec![task(6, 6)]);
    }

    #[tokio::test]
    async fn lines_are_trimmed_and_forgotten_sessions_leave_nothing_but_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer, _, _) = Store::open(dir.path()).unwrap();
        for id in 1..=5 {
            store.write(accepted("a", id)).await.unwrap();
            store.write(done("a", id, 2)).await.unwrap();
        }
        store.write(accepted("gone", 9)).await.unwrap();
        store
            .write(Write::Forget {
                session: "gone".into(),
            })
            .await
            .unwrap();
        store.flush().await.unwrap();
        drop(store);
        writer.join();
        let (_store, _writer, saved, next_id) = Store::open(dir.path()).unwrap();
        assert_eq!(saved.len(), 1);
        let kept: Vec<u64> = saved[0].lines.iter().map(|l| l.task).collect();
        assert_eq!(kept, [4, 5]);
        assert_eq!(next_id, 10, "the forgotten task's id is not reused");
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_directory_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer, _, _) = Store::open(dir.path()).unwrap();
        store.write(accepted("a", 1)).await.unwrap();
        let refused = Store::open(dir.path())
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
        let (_store, _writer, saved, _) = Store::open(dir.path()).unwrap();
        assert_eq!(saved[0].unfinished.len(), 2);
    }
}
