//! The durable record of sessions: what each session's forms offer next, its accepted tasks
//! that have not finished, and its finished tasks (terminal line, input and output as JSON), in
//! an embedded SQLite file under the data directory. Its schema changes through numbered
//! migrations ([`schema`]), so a data directory written by an older build opens in a newer
//! one with everything it held.
//!
//! One writer thread owns the connection. Writes arrive on a bounded channel and are committed
//! in batches (group commit): whatever queued up while the previous transaction ran goes into
//! the next one, so a burst of submissions costs one commit, not one each; under load commits
//! are at least 2 ms apart, so that each gathers more writes. A caller that must
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
//! owner as each task ends past the cap. No request ever waits for a whole pruning pass. The
//! search index lives in a file of its own, kept by a thread of its own ([`search`]): 0.2 s
//! of changed tasks at a time, and whole before a search reads it.

mod batches;
mod error;
mod figures;
#[cfg(test)]
mod migration_tests;
mod reads;
mod records;
mod schema;
mod search;
#[cfg(test)]
mod tests;
pub mod tokens;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

pub use error::StoreError;
pub use figures::Figures;
pub use records::{
    BatchRecord, Member, MemberRecord, NewBatch, Retention, SavedBatch, SavedSession, SavedTask,
    TaskFilter, TaskRecord, Write,
};
pub use schema::open_shared;

use reads::{load, read_task, read_tasks};
use records::Op;
use writer::Writer;

/// Writes that may wait for the writer before submitters are slowed down.
const CHANNEL: usize = 4_096;

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
    /// The search index's keeper: a search has it catch up first.
    index: search::Index,
    /// Kept by the writer.
    figures: Arc<Figures>,
    /// What the writer keeps.
    retention: Retention,
}

/// Joins the writer thread once every [`Store`] handle is dropped, so that nothing queued is lost
/// on a clean exit; then the indexer's.
pub struct WriterThread {
    writer: JoinHandle<()>,
    indexer: JoinHandle<()>,
}

impl WriterThread {
    pub fn join(self) {
        let _ = self.writer.join();
        // It ends at its next wake-up once nothing holds its mark.
        self.indexer.thread().unpark();
        let _ = self.indexer.join();
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
    /// task crate's `FIRST_RELEASE`, never the registry's first: that is only the default).
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
        let figures = Arc::new(Figures::default());
        let (index, indexer) = search::Index::start(dir)?;
        let (reader, tokens) = (read_only()?, read_only()?);
        search::attach(&reader, dir)?;
        let saved = load(&conn, retention.terminal_lines)?;
        let next_id: u64 = conn.query_row(
            "SELECT max(coalesce((SELECT max(id) FROM tasks), 0),
                        coalesce((SELECT value FROM meta WHERE key = 'last_task_id'), 0))",
            [],
            |row| row.get::<_, i64>(0),
        )? as u64
            + 1;
        let (ops, rx) = mpsc::channel(CHANNEL);
        let mut writer = Writer::new(conn, retention.clone(), figures.clone(), index.indexed())?;
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
            index,
            figures,
            retention,
        };
        let threads = WriterThread {
            writer: thread,
            indexer,
        };
        Ok((store, threads, saved, next_id))
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
        if filter.search.is_some() {
            // The index follows the tasks in bulk (see `search`): catch up before reading it.
            let latest = self.read(search::latest).await?;
            self.index.caught_up(latest).await;
        }
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

    /// Batch `id`, with its ended members counted by outcome, if it is `session`'s.
    pub async fn batch(&self, session: &str, id: u64) -> Result<Option<BatchRecord>, StoreError> {
        let session = session.to_owned();
        self.read(move |conn| batches::read_batch(conn, &session, id))
            .await
    }

    /// `session`'s batches older than batch `before`, newest first, and whether there are more.
    pub async fn batches(
        &self,
        session: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<BatchRecord>, bool), StoreError> {
        let session = session.to_owned();
        self.read(move |conn| batches::read_batches(conn, &session, before, limit))
            .await
    }

    /// Batch `batch`'s members after index `after`, in order, and whether there are more
    /// (the caller has checked whose batch it is).
    pub async fn members(
        &self,
        batch: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<MemberRecord>, bool), StoreError> {
        self.read(move |conn| batches::read_members(conn, batch, after, limit))
            .await
    }

    /// The batch `session` submitted under `Idempotency-Key` `key`, with its request's hash.
    pub async fn batch_by_idempotency_key(
        &self,
        session: &str,
        key: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let (session, key) = (session.to_owned(), key.to_owned());
        self.read(move |conn| batches::by_idempotency_key(conn, &session, &key))
            .await
    }

    /// The newest task of `session` that finished computing what `key` says (see
    /// `TaskType::reuse_key`), if one is on record.
    pub async fn reusable(&self, session: &str, key: i64) -> Result<Option<u64>, StoreError> {
        let session = session.to_owned();
        self.read(move |conn| batches::reusable(conn, &session, key))
            .await
    }

    /// The batches that were open when the server last stopped (committed writes only), and
    /// the greatest batch id ever given.
    pub async fn open_batches(&self) -> Result<(Vec<SavedBatch>, u64), StoreError> {
        self.read(|conn| Ok((batches::read_open(conn)?, batches::last_id(conn)?)))
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
    /// once the first chunk (1,000 tasks) is gone; the rest go a chunk at a time
    /// between other writes.
    pub async fn prune(&self) -> Result<(), StoreError> {
        self.write(Write::Prune).await
    }

    /// Queues `write` and returns once it is committed.
    pub async fn write(&self, write: Write) -> Result<(), StoreError> {
        self.send(Some(write)).await
    }

    /// Queues `writes` in order and returns once every one is committed (they go into as few
    /// commits as the writer makes of them, in order).
    pub async fn write_many(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut acks = Vec::with_capacity(writes.len());
        for write in writes {
            let (ack, done) = oneshot::channel();
            self.ops
                .send(Op {
                    write: Some(write),
                    ack: Some(ack),
                })
                .await
                .map_err(|_| StoreError::Stopped)?;
            acks.push(done);
        }
        for done in acks {
            match done.await {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    tracing::error!(%message, "a session database write failed");
                    return Err(StoreError::Stopped);
                }
                Err(_) => return Err(StoreError::Stopped),
            }
        }
        Ok(())
    }

    /// Queues `write` without waiting for it (for records whose loss only means a rerun).
    pub fn write_later(&self, write: Write) {
        self.write_all_later(vec![write]);
    }

    /// Queues `writes`, in order, without waiting for them.
    pub fn write_all_later(&self, writes: Vec<Write>) {
        let ops = self.ops.clone();
        tokio::spawn(async move {
            for write in writes {
                let op = Op {
                    write: Some(write),
                    ack: None,
                };
                if ops.send(op).await.is_err() {
                    return;
                }
            }
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
