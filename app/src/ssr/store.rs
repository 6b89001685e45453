//! The durable record of sessions: what each session's forms offer next, its accepted tasks
//! that have not finished, and its finished tasks (terminal line, input and output as JSON), in
//! an embedded SQLite file under the data directory. Its schema changes through numbered
//! migrations ([`migrations`]), so a data directory written by an older build opens in a newer
//! one with everything it held.
//!
//! One writer thread owns the connection. Writes arrive on a bounded channel and are committed
//! in batches (group commit): whatever queued up while the previous transaction ran goes into
//! the next one, so a burst of submissions costs one commit, not one each. A caller that must
//! not go on before its write is durable awaits the write's acknowledgement. The journal is
//! WAL with `synchronous = NORMAL`: a commit survives the process being killed (the case this
//! store exists for), though not a power cut before the next checkpoint.
//!
//! The sessions' state is read once, at start-up ([`Store::open`]); afterwards the in-memory
//! sessions are the truth and this file follows them. Task records are read on demand (a
//! task's detail, the API, the history).
//!
//! Ended tasks are kept as [`Retention`] says, and pruned by the writer thread itself: by age in
//! chunks between batches of writes (at start, then whenever [`Store::prune`] asks), and per
//! owner as each task ends past the cap. No request ever waits for a whole pruning pass.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use std::collections::BTreeMap;

use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use rusqlite_migration::{HookError, M, Migrations};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use cluster::{Binary, Ran};
use model::page::{Outcome, QueuedTask, TaskStatus, TerminalLine};

/// Writes that may wait for the writer before submitters are slowed down.
const CHANNEL: usize = 4_096;
/// Most writes in one transaction.
const BATCH: usize = 1_024;
/// Most rows one pruning transaction deletes: writes that arrive meanwhile wait at most that
/// long.
const PRUNE_CHUNK: usize = 1_000;

/// What the store keeps of ended tasks, and what it loads at start.
#[derive(Clone)]
pub struct Retention {
    /// Ended tasks leave this long after they ended (None: kept for ever).
    pub max_age: Option<std::time::Duration>,
    /// Most ended tasks kept per owner (a session or a token); the oldest leave first.
    pub per_owner: usize,
    /// Lines of each session's terminal loaded at start.
    pub terminal_lines: usize,
    /// Now, in ms since the Unix epoch: the system's clock, or a test's.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Some(std::time::Duration::from_secs(30 * 86_400)),
            per_owner: 100_000,
            terminal_lines: 1_000,
            clock: Arc::new(cluster::now_ms),
        }
    }
}

/// The database's size and contents, kept by the writer as it goes: read at any time for free.
#[derive(Debug, Default)]
pub struct Figures {
    /// Bytes of the file in use (pages that hold data; freed pages are reused).
    pub bytes: std::sync::atomic::AtomicU64,
    /// Task rows: unfinished and ended.
    pub tasks: std::sync::atomic::AtomicU64,
    /// Owners with ended tasks on record.
    pub owners: std::sync::atomic::AtomicU64,
    /// Ended tasks pruned since start (by age or the per-owner cap).
    pub pruned: std::sync::atomic::AtomicU64,
}

impl Figures {
    fn get(field: &std::sync::atomic::AtomicU64) -> u64 {
        field.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// (bytes, tasks, owners, pruned).
    pub fn read(&self) -> (u64, u64, u64, u64) {
        (
            Self::get(&self.bytes),
            Self::get(&self.tasks),
            Self::get(&self.owners),
            Self::get(&self.pruned),
        )
    }
}

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
    #[error(
        "updating the session database {path} to this version: {source} (the file is unchanged: the update runs in one transaction)"
    )]
    Migrate {
        path: PathBuf,
        source: rusqlite_migration::Error,
    },
    #[error("starting the session database's writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the session database has stopped")]
    Stopped,
}

/// What one session looked like when the server last stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSession {
    pub id: String,
    /// What each task type's form offers next, by type name.
    pub next_inputs: BTreeMap<String, Value>,
    /// Accepted, not finished: to be run again.
    pub unfinished: Vec<SavedTask>,
    /// Oldest first.
    pub lines: Vec<TerminalLine>,
}

/// An accepted task and its input.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedTask {
    pub task: QueuedTask,
    pub input: Value,
}

/// One task as the record holds it, for its detail page.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: u64,
    pub task_type: String,
    pub input: Value,
    pub args: String,
    pub submitted_at_ms: u64,
    /// Once it ended.
    pub outcome: Option<Outcome>,
    pub line: Option<String>,
    pub output: Option<Value>,
    /// The media type of its binary output, if it has one ([`Store::output`]).
    pub output_media: Option<String>,
    pub finished_at_ms: Option<u64>,
    /// The task it runs again ("Run again", or the API's retry).
    pub retry_of: Option<u64>,
    /// Which worker ran it, when it started, and at which attempt (recorded when it ended).
    pub ran: Option<Ran>,
}

/// Which of an owner's tasks a list wants, newest first.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Of this type only.
    pub kind: Option<String>,
    /// `Some(Some(o))`: ended as `o`; `Some(None)`: not ended yet.
    pub ended: Option<Option<Outcome>>,
    /// Older than this task id (a cursor).
    pub before: Option<u64>,
    /// Whose input or terminal line contains this text (ASCII letters in any case).
    pub search: Option<String>,
    pub limit: usize,
}

/// One change to the record.
#[derive(Debug, Clone)]
pub enum Write {
    /// A task was accepted for `session`; its type's form now offers `next_input`.
    Accepted {
        session: String,
        task: QueuedTask,
        input: Value,
        next_input: Value,
        /// The task it runs again.
        retry_of: Option<u64>,
        /// The API's `Idempotency-Key` and the SHA-256 of the request it came with.
        idempotency: Option<(String, Vec<u8>)>,
    },
    /// A task ended with this line (and this output, when it produced one, with its bytes
    /// apart).
    Done {
        session: String,
        line: TerminalLine,
        output: Option<Value>,
        binary: Option<Binary>,
        /// Where it ran: its attempt counts the restarts it went through too.
        ran: Option<Ran>,
        /// Server clock, ms since the Unix epoch.
        finished_at_ms: u64,
    },
    /// The session expired or was evicted: its forms' suggestions go; its tasks stay on
    /// record (its history) until retention removes them.
    Forget { session: String },
    /// Prune what retention no longer keeps, a chunk at a time between other writes.
    Prune,
}

struct Op {
    write: Option<Write>,
    ack: Option<oneshot::Sender<Result<(), String>>>,
}

/// A handle on the writer, and on a reader for task details; cheap to clone. The writer stops
/// when every handle is gone.
#[derive(Clone)]
pub struct Store {
    ops: mpsc::Sender<Op>,
    /// Its own connection (WAL: reads never wait for the writer), used on a blocking thread.
    reader: Arc<std::sync::Mutex<Connection>>,
    /// Checks API tokens: one indexed read of a few microseconds, done in place on every API
    /// request, so it has its own connection and never waits behind a task read.
    tokens: Arc<parking_lot::Mutex<Connection>>,
    /// Kept by the writer.
    figures: Arc<Figures>,
    /// What the writer keeps.
    retention: Retention,
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
    ///
    /// `legacy_type` is the task type of the rows written before task types existed (the
    /// registry's first).
    pub fn open(
        dir: &Path,
        legacy_type: &str,
        retention: Retention,
    ) -> Result<(Self, WriterThread, Vec<SavedSession>, u64), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let lock = lock(dir)?;
        let conn = open_shared(dir, legacy_type)?;
        let path = dir.join("offload.sqlite3");
        let read_only = || -> Result<Connection, StoreError> {
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
            conn.execute_batch("PRAGMA cache_size = -512;")?;
            Ok(conn)
        };
        let (reader, tokens) = (read_only()?, read_only()?);
        let saved = load(&conn, retention.terminal_lines)?;
        let figures = Arc::new(Figures::default());
        let next_id: u64 = conn.query_row(
            "SELECT max(coalesce((SELECT max(id) FROM tasks), 0),
                        coalesce((SELECT value FROM meta WHERE key = 'last_task_id'), 0))",
            [],
            |row| row.get::<_, i64>(0),
        )? as u64
            + 1;
        let (ops, rx) = mpsc::channel(CHANNEL);
        let mut writer = Writer::new(conn, retention.clone(), figures.clone())?;
        let thread = std::thread::Builder::new()
            .name("offload-store".into())
            .spawn(move || {
                // Held, and so the directory locked, while the writer runs.
                let _lock = lock;
                writer.run(rx);
            })
            .map_err(StoreError::Thread)?;
        let store = Self {
            ops,
            reader: Arc::new(std::sync::Mutex::new(reader)),
            tokens: Arc::new(parking_lot::Mutex::new(tokens)),
            figures,
            retention,
        };
        Ok((store, WriterThread(Some(thread)), saved, next_id))
    }

    /// Task `id`, if it is `session`'s and still recorded (committed writes only).
    pub async fn task(&self, session: &str, id: u64) -> Result<Option<TaskRecord>, StoreError> {
        let session = session.to_owned();
        self.read(move |conn| read_task(conn, &session, id)).await
    }

    /// Runs `query` on the reader connection, on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            query(&conn)
        })
        .await
        .map_err(|_| StoreError::Stopped)?
        .map_err(StoreError::Sql)
    }

    /// The owner of the live token `presented` (see [`super::tokens`]), if it is one.
    /// Read in place: a blocking-pool hand-off costs more than the read, and under a crowd
    /// of API owners it was most of their p99.
    pub fn token_owner(&self, presented: &str) -> Result<Option<String>, StoreError> {
        super::tokens::verify(&self.tokens.lock(), presented).map_err(StoreError::Sql)
    }

    /// The task `session` submitted under `Idempotency-Key` `key`, with its request's hash.
    pub async fn by_idempotency_key(
        &self,
        session: &str,
        key: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let (session, key) = (session.to_owned(), key.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, request_sha256 FROM tasks WHERE session = ?1 AND idempotency_key = ?2",
            )?
            .query_row(params![session, key], |row| {
                Ok((row.get::<_, i64>(0)? as u64, row.get(1)?))
            })
            .optional()
        })
        .await
    }

    /// `session`'s tasks that `filter` wants, newest first, and whether there are more.
    pub async fn tasks(
        &self,
        session: &str,
        filter: TaskFilter,
    ) -> Result<(Vec<TaskRecord>, bool), StoreError> {
        let session = session.to_owned();
        self.read(move |conn| read_tasks(conn, &session, &filter))
            .await
    }

    /// The id of `session`'s newest task on record.
    pub async fn newest_task(&self, session: &str) -> Result<Option<u64>, StoreError> {
        let session = session.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT max(id) FROM tasks WHERE session = ?1")?
                .query_row([session], |row| row.get::<_, Option<i64>>(0))
                .map(|id| id.map(|id| id as u64))
        })
        .await
    }

    /// The binary output of task `id` (media type and bytes), if it is `session`'s.
    pub async fn output(
        &self,
        session: &str,
        id: u64,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let session = session.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT output_media, output_data FROM tasks
                 WHERE id = ?1 AND session = ?2 AND output_data IS NOT NULL",
            )?
            .query_row(params![id as i64, session], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
        })
        .await
    }

    /// The database's size and contents, as of the writer's last write.
    pub fn figures(&self) -> &Figures {
        &self.figures
    }

    /// What the store keeps of ended tasks.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Has the writer prune what retention no longer keeps (it also does at start): returns
    /// once the first chunk of [`PRUNE_CHUNK`] tasks is gone; the rest go a chunk at a time
    /// between other writes.
    pub async fn prune(&self) -> Result<(), StoreError> {
        self.write(Write::Prune).await
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

/// The schema's history, oldest first: a migration is never edited once released, only
/// followed by another. SQLite's `user_version` says how many have run.
fn migrations(legacy_type: &str) -> Migrations<'static> {
    let legacy_type = legacy_type.to_owned();
    Migrations::new(vec![
        // 1: the first release's schema, exactly (`IF NOT EXISTS`: its files predate
        // `user_version`, and already hold these tables).
        M::up(
            "CREATE TABLE IF NOT EXISTS sessions (
                 id TEXT PRIMARY KEY,
                 next_n INTEGER NOT NULL
             );
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
        ),
        // 2: task types. A task is its type, its input and its output as JSON; a session
        // keeps each type's next input. The first release's rows all ran `legacy_type` with
        // the input {"n": n}.
        M::up_with_hook(
            "CREATE TABLE tasks_v2 (
                 id INTEGER PRIMARY KEY,
                 session TEXT NOT NULL,
                 task_type TEXT NOT NULL,
                 -- JSON
                 input TEXT NOT NULL,
                 -- The input in brief, as the queue shows it.
                 args TEXT NOT NULL,
                 submitted_at_ms INTEGER NOT NULL,
                 -- Orders the terminal lines; set once, when the task ends.
                 done_seq INTEGER,
                 outcome TEXT,
                 text TEXT,
                 -- JSON, for finished tasks.
                 output TEXT,
                 finished_at_ms INTEGER
             );
             CREATE TABLE sessions_v2 (
                 id TEXT PRIMARY KEY,
                 -- JSON: {task type: its form's next input}
                 next_inputs TEXT NOT NULL
             );",
            move |tx: &Transaction| -> Result<(), HookError> {
                tx.execute(
                    "INSERT INTO tasks_v2 (id, session, task_type, input, args, submitted_at_ms,
                                           done_seq, outcome, text)
                     SELECT id, session, ?1, json_object('n', n), CAST(n AS TEXT),
                            submitted_at_ms, done_seq, outcome, text FROM tasks",
                    [&legacy_type],
                )?;
                tx.execute(
                    "INSERT INTO sessions_v2 (id, next_inputs)
                     SELECT id, json_object(?1, json_object('n', next_n)) FROM sessions",
                    [&legacy_type],
                )?;
                tx.execute_batch(
                    "DROP TABLE tasks;
                     ALTER TABLE tasks_v2 RENAME TO tasks;
                     CREATE INDEX tasks_by_session ON tasks (session, done_seq);
                     DROP TABLE sessions;
                     ALTER TABLE sessions_v2 RENAME TO sessions;",
                )?;
                Ok(())
            },
        ),
        // 3: binary outputs (a picture), stored once beside the JSON output, which keeps
        // their media type and size in their place.
        M::up(
            "ALTER TABLE tasks ADD COLUMN output_media TEXT;
             ALTER TABLE tasks ADD COLUMN output_data BLOB;",
        ),
        // 4: API tokens (the SHA-256 of each secret, never the secret), and which task a
        // task runs again.
        M::up(
            "CREATE TABLE tokens (
                 -- Public: the part of the token between offload_ and the secret.
                 id TEXT PRIMARY KEY,
                 name TEXT NOT NULL UNIQUE,
                 secret_sha256 BLOB NOT NULL,
                 created_at_ms INTEGER NOT NULL,
                 revoked_at_ms INTEGER
             );
             ALTER TABLE tasks ADD COLUMN retry_of INTEGER;
             -- An API submission's Idempotency-Key and the SHA-256 of its request: a retry
             -- with the same key and request gets the same task.
             ALTER TABLE tasks ADD COLUMN idempotency_key TEXT;
             ALTER TABLE tasks ADD COLUMN request_sha256 BLOB;
             CREATE UNIQUE INDEX tasks_by_idempotency_key ON tasks (session, idempotency_key)
                 WHERE idempotency_key IS NOT NULL;",
        ),
        // 5: where a task ran: the worker, when it started there (the worker's clock), and
        // at which attempt.
        M::up(
            "ALTER TABLE tasks ADD COLUMN started_at_ms INTEGER;
             ALTER TABLE tasks ADD COLUMN worker TEXT;
             ALTER TABLE tasks ADD COLUMN attempts INTEGER;",
        ),
        // 6: the history. Retention by age reads ended tasks by when they ended (the first
        // release's rows had no end time: their submission stands in for it); an owner's
        // tasks are listed newest first, whole or by type or outcome, each from its own
        // index; the search finds text in the input or the line through a trigram index
        // (contentless: it holds no copy of the text).
        M::up(
            "UPDATE tasks SET finished_at_ms = submitted_at_ms
                 WHERE done_seq IS NOT NULL AND finished_at_ms IS NULL;
             CREATE INDEX tasks_by_end ON tasks (finished_at_ms) WHERE done_seq IS NOT NULL;
             CREATE INDEX tasks_by_owner ON tasks (session, id);
             CREATE INDEX tasks_by_owner_type ON tasks (session, task_type, id);
             CREATE INDEX tasks_by_owner_outcome ON tasks (session, outcome, id);
             CREATE VIRTUAL TABLE tasks_text USING fts5(
                 input, text, content='', contentless_delete=1, tokenize='trigram');
             INSERT INTO tasks_text (rowid, input, text) SELECT id, input, text FROM tasks;
             CREATE TRIGGER tasks_text_insert AFTER INSERT ON tasks BEGIN
                 INSERT INTO tasks_text (rowid, input, text) VALUES (new.id, new.input, new.text);
             END;
             -- A task's line is written once, when it ends.
             CREATE TRIGGER tasks_text_update AFTER UPDATE OF text ON tasks
                 WHEN new.text IS NOT old.text BEGIN
                 DELETE FROM tasks_text WHERE rowid = old.id;
                 INSERT INTO tasks_text (rowid, input, text) VALUES (new.id, new.input, new.text);
             END;
             CREATE TRIGGER tasks_text_delete AFTER DELETE ON tasks BEGIN
                 DELETE FROM tasks_text WHERE rowid = old.id;
             END;",
        ),
    ])
}

/// Opens (creating and migrating) `dir/offload.sqlite3` for a writer: the server's, or a
/// token command's beside it. WAL lets them share the file.
pub fn open_shared(dir: &Path, legacy_type: &str) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join("offload.sqlite3");
    let mut conn = Connection::open(&path).map_err(|source| StoreError::Open {
        path: path.clone(),
        source,
    })?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA busy_timeout = 5000;
         -- Writes touch few pages; 512 KB of page cache bounds the store's memory.
         PRAGMA cache_size = -512;",
    )?;
    migrations(legacy_type)
        .to_latest(&mut conn)
        .map_err(|source| StoreError::Migrate { path, source })?;
    Ok(conn)
}

/// The sessions on record: their unfinished tasks, and the last `lines` lines of each one's
/// terminal (the rest stays on record, for the history, without being held in memory).
fn load(conn: &Connection, lines: usize) -> Result<Vec<SavedSession>, rusqlite::Error> {
    let mut sessions: Vec<SavedSession> = conn
        .prepare("SELECT id, next_inputs FROM sessions ORDER BY id")?
        .query_map([], |row| {
            let next: String = row.get(1)?;
            Ok(SavedSession {
                id: row.get(0)?,
                // Written by this store from a map: anything else is a damaged row, whose
                // only loss is the forms' suggestions.
                next_inputs: serde_json::from_str(&next).unwrap_or_default(),
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
        "SELECT session, id, task_type, input, args, submitted_at_ms, outcome, text, image
         FROM (SELECT session, id, task_type, input, args, submitted_at_ms, outcome, text,
                      done_seq, coalesce(output_media LIKE 'image/%', 0) AS image,
                      row_number() OVER (PARTITION BY session, done_seq IS NULL
                                         ORDER BY done_seq DESC) AS newest
               FROM tasks WHERE session IN (SELECT id FROM sessions))
         WHERE done_seq IS NULL OR newest <= ?1
         ORDER BY done_seq IS NOT NULL, done_seq, id",
    )?;
    let mut rows = rows.query([lines as i64])?;
    while let Some(row) = rows.next()? {
        let session: String = row.get(0)?;
        let Some(&i) = index.get(&session) else {
            continue;
        };
        let id = row.get::<_, i64>(1)? as u64;
        let outcome: Option<String> = row.get(6)?;
        match outcome.as_deref().and_then(Outcome::from_name) {
            None => {
                let input: String = row.get(3)?;
                sessions[i].unfinished.push(SavedTask {
                    task: QueuedTask {
                        id,
                        task: row.get(2)?,
                        args: row.get(4)?,
                        status: TaskStatus::Queued,
                        progress: 0.0,
                        submitted_at_ms: row.get::<_, i64>(5)? as u64,
                    },
                    // Undecodable: the rerun refuses it and says so on the task's line.
                    input: serde_json::from_str(&input).unwrap_or(Value::Null),
                })
            }
            Some(outcome) => sessions[i].lines.push(TerminalLine {
                task: id,
                outcome,
                text: row.get(7)?,
                image: row.get(8)?,
            }),
        }
    }
    Ok(sessions)
}

/// The columns [`task_record`] reads, in its order.
const RECORD: &str = "tasks.id, task_type, tasks.input, args, submitted_at_ms, outcome,
                      tasks.text, output, finished_at_ms, output_media, retry_of, started_at_ms,
                      worker, attempts";

fn task_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
    Ok(TaskRecord {
        id: row.get::<_, i64>(0)? as u64,
        task_type: row.get(1)?,
        input: json(row.get(2)?).unwrap_or(Value::Null),
        args: row.get(3)?,
        submitted_at_ms: row.get::<_, i64>(4)? as u64,
        outcome: row
            .get::<_, Option<String>>(5)?
            .as_deref()
            .and_then(Outcome::from_name),
        line: row.get(6)?,
        output: json(row.get(7)?),
        finished_at_ms: row.get::<_, Option<i64>>(8)?.map(|ms| ms as u64),
        output_media: row.get(9)?,
        retry_of: row.get::<_, Option<i64>>(10)?.map(|id| id as u64),
        ran: match (row.get::<_, Option<i64>>(11)?, row.get(12)?, row.get(13)?) {
            (Some(started_at_ms), Some(worker), Some(attempt)) => Some(Ran {
                worker,
                started_at_ms: started_at_ms as u64,
                attempt,
            }),
            _ => None,
        },
    })
}

fn read_task(conn: &Connection, session: &str, id: u64) -> rusqlite::Result<Option<TaskRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {RECORD} FROM tasks WHERE id = ?1 AND session = ?2"
    ))?
    .query_row(params![id as i64, session], task_record)
    .optional()
}

/// Searches this short find no trigram: they scan the owner's tasks instead.
const TRIGRAM: usize = 3;

fn read_tasks(
    conn: &Connection,
    session: &str,
    filter: &TaskFilter,
) -> rusqlite::Result<(Vec<TaskRecord>, bool)> {
    use rusqlite::ToSql;
    // Only the filters asked for are in the query, so that SQLite picks the index made for
    // them: (owner, id), (owner, type, id) or (owner, outcome, id), newest first.
    let mut conditions = vec!["session = :session", "tasks.id < :before"];
    let before = filter.before.map_or(i64::MAX, |id| id as i64);
    // One more than asked: whether there is a next page.
    let limit = filter.limit as i64 + 1;
    let mut params: Vec<(&str, &dyn ToSql)> = vec![
        (":session", &session),
        (":before", &before),
        (":limit", &limit),
    ];
    if let Some(kind) = &filter.kind {
        conditions.push("task_type = :kind");
        params.push((":kind", kind));
    }
    let outcome = filter.ended.map(|ended| ended.map(Outcome::name));
    match &outcome {
        None => {}
        Some(None) => conditions.push("outcome IS NULL"),
        Some(Some(name)) => {
            conditions.push("outcome = :outcome");
            params.push((":outcome", name));
        }
    }
    let phrase;
    let pattern;
    let (from, newest) = match filter.search.as_deref() {
        None => ("tasks", "tasks.id"),
        Some(text) if text.chars().count() >= TRIGRAM => {
            // A phrase of the trigram tokenizer: the text anywhere in the input or the line,
            // in any case. The index hands over its matches newest first, so a page stops
            // after 50 of them, however many there are.
            phrase = format!("\"{}\"", text.replace('"', "\"\""));
            conditions.push("tasks_text MATCH :phrase AND tasks_text.rowid < :before");
            params.push((":phrase", &phrase));
            (
                "tasks_text JOIN tasks ON tasks.id = tasks_text.rowid",
                "tasks_text.rowid",
            )
        }
        Some(text) => {
            pattern = like_pattern(text);
            conditions.push("(input LIKE :pattern ESCAPE '\\' OR text LIKE :pattern ESCAPE '\\')");
            params.push((":pattern", &pattern));
            ("tasks", "tasks.id")
        }
    };
    let mut records = conn
        .prepare_cached(&format!(
            "SELECT {RECORD} FROM {from} WHERE {} ORDER BY {newest} DESC LIMIT :limit",
            conditions.join(" AND ")
        ))?
        .query_map(params.as_slice(), task_record)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = records.len() > filter.limit;
    records.truncate(filter.limit);
    Ok((records, more))
}

/// `%text%`, its own `%`, `_` and `\` taken literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The writer thread's state: the connection, where the terminal's order is, and what it
/// knows of the rows, so that pruning and the figures never scan the table.
struct Writer {
    conn: Connection,
    done_seq: i64,
    retention: Retention,
    figures: Arc<Figures>,
    /// Ended tasks on record per owner.
    ended: std::collections::HashMap<String, usize>,
    /// Rows by age remain to be pruned.
    pruning: bool,
}

impl Writer {
    fn new(
        conn: Connection,
        retention: Retention,
        figures: Arc<Figures>,
    ) -> rusqlite::Result<Self> {
        let done_seq = conn.query_row("SELECT coalesce(max(done_seq), 0) FROM tasks", [], |r| {
            r.get(0)
        })?;
        let mut writer = Self {
            conn,
            done_seq,
            retention,
            figures,
            ended: Default::default(),
            // Once at start: a server that was down for a while has ages to catch up on.
            pruning: true,
        };
        writer.recount()?;
        // The first chunk before the server answers: what it shows at start is already pruned.
        writer.prune_chunk();
        Ok(writer)
    }

    /// Counts the rows once (at start, and should a transaction fail).
    fn recount(&mut self) -> rusqlite::Result<()> {
        self.ended = self
            .conn
            .prepare(
                "SELECT session, count(*) FROM tasks WHERE done_seq IS NOT NULL GROUP BY session",
            )?
            .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as usize)))?
            .collect::<rusqlite::Result<_>>()?;
        let tasks: i64 = self
            .conn
            .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))?;
        self.figures
            .tasks
            .store(tasks as u64, std::sync::atomic::Ordering::Relaxed);
        self.measure();
        Ok(())
    }

    /// The bytes in use and the owners, after a change.
    fn measure(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let pragma = |name: &str| -> u64 {
            self.conn
                .prepare_cached(&format!("PRAGMA {name}"))
                .and_then(|mut pragma| pragma.query_row([], |r| r.get::<_, i64>(0)))
                .unwrap_or(0) as u64
        };
        let used = pragma("page_count").saturating_sub(pragma("freelist_count"));
        self.figures
            .bytes
            .store(used * pragma("page_size"), Relaxed);
        self.figures.owners.store(self.ended.len() as u64, Relaxed);
    }

    fn run(&mut self, mut rx: mpsc::Receiver<Op>) {
        loop {
            let first = if self.pruning {
                match rx.try_recv() {
                    Ok(op) => op,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.prune_chunk();
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            } else {
                match rx.blocking_recv() {
                    Some(op) => op,
                    None => return,
                }
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let result = self.apply(&batch).map_err(|e| e.to_string());
            if let Err(error) = &result {
                tracing::error!(%error, writes = batch.len(), "could not commit session records");
                if let Err(error) = self.recount() {
                    tracing::error!(%error, "could not count the session records again");
                }
            }
            if batch
                .iter()
                .any(|op| matches!(op.write, Some(Write::Prune)))
            {
                // Its caller hears back once the first chunk is gone.
                self.prune_chunk();
            }
            self.measure();
            for op in batch {
                if let Some(ack) = op.ack {
                    let _ = ack.send(result.clone());
                }
            }
        }
    }

    /// Deletes up to [`PRUNE_CHUNK`] tasks that ended longer ago than retention keeps; pruning
    /// goes on (between writes) while chunks come back full.
    fn prune_chunk(&mut self) {
        let Some(max_age) = self.retention.max_age else {
            self.pruning = false;
            return;
        };
        let cutoff = (self.retention.clock)().saturating_sub(max_age.as_millis() as u64);
        let pruned = (|| -> rusqlite::Result<Vec<String>> {
            let tx = self.conn.transaction()?;
            let gone = tx
                .prepare_cached(
                    "DELETE FROM tasks WHERE id IN
                       (SELECT id FROM tasks WHERE done_seq IS NOT NULL AND finished_at_ms < ?1
                        ORDER BY finished_at_ms LIMIT ?2)
                     RETURNING session",
                )?
                .query_map(params![cutoff as i64, PRUNE_CHUNK as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            tx.commit()?;
            Ok(gone)
        })();
        match pruned {
            Ok(gone) => {
                self.pruning = gone.len() == PRUNE_CHUNK;
                for session in &gone {
                    self.forget_ended(session, 1);
                }
                self.count_pruned(gone.len());
                if !gone.is_empty() {
                    tracing::debug!(tasks = gone.len(), "pruned tasks past the retention");
                }
                self.measure();
            }
            Err(error) => {
                self.pruning = false;
                tracing::error!(%error, "could not prune old tasks");
            }
        }
    }

    fn forget_ended(&mut self, session: &str, n: usize) {
        if let Some(count) = self.ended.get_mut(session) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                self.ended.remove(session);
            }
        }
    }

    fn count_pruned(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.figures.tasks.fetch_sub(n as u64, Relaxed);
        self.figures.pruned.fetch_add(n as u64, Relaxed);
    }

    fn apply(&mut self, batch: &[Op]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let done_seq = &mut self.done_seq;
        let mut last_id = 0u64;
        // Applied to the counts once the transaction commits.
        let (mut added, mut removed) = (0usize, 0usize);
        // Each owner's ended tasks as this batch leaves them, and those trimmed by the cap.
        let mut ended: std::collections::HashMap<&str, usize> = Default::default();
        let mut trimmed = 0usize;
        for write in batch.iter().filter_map(|op| op.write.as_ref()) {
            match write {
                Write::Accepted {
                    session,
                    task,
                    input,
                    next_input,
                    retry_of,
                    idempotency,
                } => {
                    // Type names are [a-z-]; quoted in the path all the same.
                    tx.prepare_cached(
                        "INSERT INTO sessions (id, next_inputs)
                     VALUES (?1, json_object(?2, json(?3)))
                     ON CONFLICT (id) DO UPDATE
                     SET next_inputs = json_set(next_inputs, '$.\"' || ?2 || '\"', json(?3))",
                    )?
                    .execute(params![
                        session,
                        task.task,
                        next_input.to_string()
                    ])?;
                    added += tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO tasks (id, session, task_type, input, args,
                                                  submitted_at_ms, retry_of, idempotency_key,
                                                  request_sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        )?
                        .execute(params![
                            task.id as i64,
                            session,
                            task.task,
                            input.to_string(),
                            task.args,
                            task.submitted_at_ms as i64,
                            retry_of.map(|id| id as i64),
                            idempotency.as_ref().map(|(key, _)| key),
                            idempotency.as_ref().map(|(_, hash)| hash)
                        ])?;
                    last_id = last_id.max(task.id);
                }
                Write::Done {
                    session,
                    line,
                    output,
                    binary,
                    ran,
                    finished_at_ms,
                } => {
                    *done_seq += 1;
                    // `done_seq IS NULL`: a result is recorded once, however often the task ran.
                    let changed = tx
                        .prepare_cached(
                            "UPDATE tasks SET done_seq = ?1, outcome = ?2, text = ?3, output = ?4,
                                      finished_at_ms = ?5, output_media = ?7, output_data = ?8,
                                      started_at_ms = ?9, worker = ?10, attempts = ?11
                     WHERE id = ?6 AND done_seq IS NULL",
                        )?
                        .execute(params![
                            *done_seq,
                            line.outcome.name(),
                            line.text,
                            output.as_ref().map(Value::to_string),
                            *finished_at_ms as i64,
                            line.task as i64,
                            binary.as_ref().map(Binary::media_type),
                            binary.as_ref().map(Binary::bytes),
                            ran.as_ref().map(|ran| ran.started_at_ms as i64),
                            ran.as_ref().map(|ran| &ran.worker),
                            ran.as_ref().map(|ran| ran.attempt),
                        ])?;
                    if changed == 0 {
                        continue;
                    }
                    let now = ended
                        .entry(session)
                        .or_insert_with(|| self.ended.get(session.as_str()).copied().unwrap_or(0));
                    *now += 1;
                    if *now > self.retention.per_owner {
                        // The owner's oldest ended tasks make room: one per task past the cap.
                        let over = *now - self.retention.per_owner;
                        let gone = tx
                            .prepare_cached(
                                "DELETE FROM tasks WHERE id IN
                               (SELECT id FROM tasks WHERE session = ?1 AND done_seq IS NOT NULL
                                ORDER BY done_seq LIMIT ?2)",
                            )?
                            .execute(params![session, over as i64])?;
                        *now -= gone;
                        trimmed += gone;
                    }
                }
                Write::Forget { session } => {
                    // Forgotten only with nothing unfinished; should a task be left, it could
                    // never run again.
                    removed += tx
                        .prepare_cached(
                            "DELETE FROM tasks WHERE session = ?1 AND done_seq IS NULL",
                        )?
                        .execute(params![session])?;
                    tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                        .execute(params![session])?;
                }
                Write::Prune => {}
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
        tx.commit()?;
        let tasks = &self.figures.tasks;
        tasks.fetch_add(added as u64, std::sync::atomic::Ordering::Relaxed);
        tasks.fetch_sub(removed as u64, std::sync::atomic::Ordering::Relaxed);
        for (session, count) in ended {
            self.ended.insert(session.to_owned(), count);
        }
        self.count_pruned(trimmed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(id: u64) -> QueuedTask {
        QueuedTask {
            id,
            task: if id.is_multiple_of(2) { "even" } else { "odd" }.into(),
            args: id.to_string(),
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
            image: false,
        }
    }

    fn accepted(session: &str, id: u64) -> Write {
        Write::Accepted {
            session: session.into(),
            task: task(id),
            input: json!({ "n": id }),
            next_input: json!({ "n": id + 1 }),
            retry_of: None,
            idempotency: None,
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
            let (store, writer, saved, next_id) =
                Store::open(dir.path(), "odd", keep_all()).unwrap();
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

    #[tokio::test]
    async fn the_per_owner_cap_drops_the_oldest_and_a_forgotten_sessions_history_stays() {
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
        store.write(accepted("gone", 9)).await.unwrap();
        store
            .write(Write::Forget {
                session: "gone".into(),
            })
            .await
            .unwrap();
        let ids = |owner: &'static str| {
            let store = store.clone();
            async move {
                let filter = TaskFilter {
                    limit: 100,
                    ..TaskFilter::default()
                };
                let (records, _) = store.tasks(owner, filter).await.unwrap();
                records.iter().map(|r| r.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(ids("a").await, [5, 4, 3], "the three newest");
        assert_eq!(
            ids("gone").await,
            [8],
            "its history, without the unfinished task"
        );
        let (_, tasks, owners, pruned) = store.figures().read();
        assert_eq!((tasks, owners, pruned), (4, 2, 2));
        drop(store);
        writer.join();
        let (_store, _writer, saved, next_id) =
            Store::open(dir.path(), "odd", retention()).unwrap();
        assert_eq!(saved.len(), 1, "the forgotten session's forms are gone");
        let kept: Vec<u64> = saved[0].lines.iter().map(|l| l.task).collect();
        assert_eq!(kept, [4, 5], "the terminal's last two lines, oldest first");
        assert_eq!(next_id, 10, "the forgotten task's id is not reused");
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
}

#[cfg(test)]
mod migration_tests {
    use super::tests::keep_all;
    use super::*;

    /// A data directory written by the first release's `offload` binary: n = 10 and 20
    /// finished, then the server was killed with SIGKILL while n = 45 ran and n = 46 waited;
    /// the session's form offered 47.
    const FIRST_RELEASE: &[u8] =
        include_bytes!("../../tests/fixtures/first-release/offload.sqlite3");

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
        let (_store, _writer, saved, _) = Store::open(dir.path(), "seed", keep_all()).unwrap();
        assert_eq!(saved[0].lines.len(), 3);
        assert_eq!(saved[0].unfinished.len(), 1);
        let conn = Connection::open(dir.path().join("offload.sqlite3")).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 6, "every migration ran, once");
        let output: String = conn
            .query_row("SELECT output FROM tasks WHERE id = 3", [], |r| r.get(0))
            .unwrap();
        assert_eq!(output, "1134903170");
    }

    #[test]
    fn the_migrations_are_valid() {
        migrations("seed").validate().unwrap();
    }
}
