//! The record in an embedded SQLite file, `offload.sqlite3` under the data directory (the
//! default: nothing to install or run). One writer thread owns the connection that writes
//! ([`writer`]); the WAL journal lets readers read beside it; `synchronous = NORMAL`: a commit
//! survives the process being killed (the case this store exists for), though not a power cut
//! before the next checkpoint. The search index lives in a file of its own, kept by a thread
//! of its own ([`search`]).

mod batches;
#[cfg(test)]
mod migration_tests;
mod reads;
mod schema;
mod search;
#[cfg(test)]
mod tests;
pub(super) mod tokens;
mod writer;

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::mpsc;

pub use schema::open_shared;

use super::commits::CHANNEL;
use super::records::{BatchRecord, MemberRecord, Retention, SavedBatch, TaskFilter, TaskRecord};
use super::{Figures, Opened, StoreError, WriterThread};
use reads::{load, read_task, read_tasks};
use writer::Writer;

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

/// Opens (or creates) `dir/offload.sqlite3`, reads what it holds and starts the writer. The
/// directory is locked until the writer ends: two servers on one directory would hand out
/// the same task ids and run each other's unfinished tasks.
pub(super) fn open(
    dir: &Path,
    legacy_type: &str,
    retention: Retention,
    figures: Arc<Figures>,
) -> Result<Opened<Reader>, StoreError> {
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
    let (index, indexer) = search::Index::start(dir)?;
    let (reader, tokens) = (read_only()?, read_only()?);
    search::attach(&reader, dir)?;
    let saved = load(&conn, retention.terminal_lines)?;
    let next_task: u64 = conn.query_row(
        "SELECT max(coalesce((SELECT max(id) FROM tasks), 0),
                    coalesce((SELECT value FROM meta WHERE key = 'last_task_id'), 0))",
        [],
        |row| row.get::<_, i64>(0),
    )? as u64
        + 1;
    let (ops, rx) = mpsc::channel(CHANNEL);
    let mut writer = Writer::new(conn, retention, figures, index.indexed())?;
    let thread = std::thread::Builder::new()
        .name("offload-store".into())
        .spawn(move || {
            // Held, and so the directory locked, while the writer runs.
            let _lock = lock;
            writer.run(rx);
        })
        .map_err(StoreError::Thread)?;
    Ok(Opened {
        reader: Reader {
            reader: Arc::new(std::sync::Mutex::new(reader)),
            tokens: Arc::new(parking_lot::Mutex::new(tokens)),
            index,
        },
        ops,
        writer: WriterThread {
            writer: thread,
            indexer: Some(indexer),
        },
        saved,
        next_task,
        // Nobody else can take the file: its directory is locked.
        lost: tokio::sync::watch::channel(false).1,
    })
}

/// Reads the SQLite record; cheap to clone.
#[derive(Clone)]
pub(super) struct Reader {
    /// Its own connection (WAL: reads never wait for the writer), used on a blocking thread.
    reader: Arc<std::sync::Mutex<Connection>>,
    /// Checks API tokens: one indexed read of a few microseconds, done in place on every API
    /// request, so it has its own connection and never waits behind a task read.
    tokens: Arc<parking_lot::Mutex<Connection>>,
    /// The search index's keeper: a search has it catch up first.
    index: search::Index,
}

impl Reader {
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

    pub(super) async fn task(
        &self,
        session: &str,
        id: u64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let session = session.to_owned();
        self.read(move |conn| read_task(conn, &session, id)).await
    }

    /// Read in place: a blocking-pool hand-off costs more than the read, and under a crowd
    /// of API owners it was most of their p99.
    pub(super) fn token_owner(&self, presented: &str) -> Result<Option<String>, StoreError> {
        tokens::verify(&self.tokens.lock(), presented).map_err(StoreError::Sql)
    }

    pub(super) async fn by_idempotency_key(
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

    pub(super) async fn tasks(
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

    pub(super) async fn newest_task(&self, session: &str) -> Result<Option<u64>, StoreError> {
        let session = session.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT max(id) FROM tasks WHERE session = ?1")?
                .query_row([session], |row| row.get::<_, Option<i64>>(0))
                .map(|id| id.map(|id| id as u64))
        })
        .await
    }

    pub(super) async fn output(
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

    pub(super) async fn batch(
        &self,
        session: &str,
        id: u64,
    ) -> Result<Option<BatchRecord>, StoreError> {
        let session = session.to_owned();
        self.read(move |conn| batches::read_batch(conn, &session, id))
            .await
    }

    pub(super) async fn batches(
        &self,
        session: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<BatchRecord>, bool), StoreError> {
        let session = session.to_owned();
        self.read(move |conn| batches::read_batches(conn, &session, before, limit))
            .await
    }

    pub(super) async fn members(
        &self,
        batch: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<MemberRecord>, bool), StoreError> {
        self.read(move |conn| batches::read_members(conn, batch, after, limit))
            .await
    }

    pub(super) async fn batch_by_idempotency_key(
        &self,
        session: &str,
        key: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let (session, key) = (session.to_owned(), key.to_owned());
        self.read(move |conn| batches::by_idempotency_key(conn, &session, &key))
            .await
    }

    pub(super) async fn reusable(
        &self,
        session: &str,
        key: i64,
    ) -> Result<Option<u64>, StoreError> {
        let session = session.to_owned();
        self.read(move |conn| batches::reusable(conn, &session, key))
            .await
    }

    pub(super) async fn open_batches(&self) -> Result<(Vec<SavedBatch>, u64), StoreError> {
        self.read(|conn| Ok((batches::read_open(conn)?, batches::last_id(conn)?)))
            .await
    }
}
