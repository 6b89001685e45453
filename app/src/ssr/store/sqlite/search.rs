//! The search index: an FTS5 trigram index of the tasks' input and line, in a file of its own
//! (`offload-search.sqlite3`) kept by a thread of its own. Its merges can take hundreds of
//! milliseconds; in the store's file they held the writer, and so every submission and result,
//! for that long (issue 31). Here they hold nobody but a search.
//!
//! The store's file logs every change to a task's text (migration 9's `text_changes`, written
//! by triggers, numbered in order); the indexer reads the log and the tasks' text in one
//! snapshot, indexes a chunk and records in the same transaction the last change it took. So a
//! kill at any moment loses nothing: the next start goes on from the recorded change. The store's
//! writer deletes the log up to that change. A search file that is missing, or that belongs to
//! another store file, is built again from the tasks themselves.

use std::path::Path;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::watch;

use crate::ssr::store::error::StoreError;

/// The file, beside the store's.
pub(super) const FILE: &str = "offload-search.sqlite3";
/// Most changes (or tasks, when building anew) one indexing transaction takes: the index's
/// merges grow with the segment a transaction adds (in a simulation, 2,500 tasks a transaction
/// stalled for up to 1.9 s, 500 for up to 65 ms).
const CHUNK: i64 = 1_000;
/// Longest a task's text waits to be searchable by anything but a search (which brings the
/// index up to date first).
const EVERY: Duration = Duration::from_millis(200);
/// Longest a search waits for the index to catch up (building it anew for a million tasks
/// takes longer): then it searches what is indexed.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(10);
/// An indexing step that takes longer than this is logged.
const SLOW: Duration = Duration::from_millis(50);
/// The number of the last change to the tasks' text in the store's file.
const LATEST: &str =
    "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'text_changes'), 0)";

/// Opens (creating) the search file for its indexer: its schema is made here, not migrated:
/// the file can always be built again from the store's.
fn open(dir: &Path) -> Result<Connection, StoreError> {
    let path = dir.join(FILE);
    let conn = Connection::open(&path).map_err(|source| StoreError::Open { path, source })?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -512;
         -- 'seq': the last change indexed; 'rebuild_from': while the index is built anew
         -- from the tasks, the last task id it took.
         CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, value INTEGER NOT NULL)
             WITHOUT ROWID;
         CREATE VIRTUAL TABLE IF NOT EXISTS tasks_text USING fts5(
             input, text, content='', contentless_delete=1, tokenize='trigram');",
    )?;
    Ok(conn)
}

/// Lets `reader` (a connection on the store's file) read the index as `search.tasks_text`,
/// with the same 512 KB of page cache as the store's own schema (an attached one gets 2 MB).
pub(super) fn attach(reader: &Connection, dir: &Path) -> rusqlite::Result<()> {
    reader.execute(
        "ATTACH DATABASE ?1 AS search",
        [dir.join(FILE).to_string_lossy()],
    )?;
    reader.execute_batch("PRAGMA search.cache_size = -512;")
}

/// A handle on the indexer, for searches; cheap to clone.
#[derive(Clone)]
pub(super) struct Index {
    thread: Thread,
    /// The last change indexed; None while the index is built anew.
    indexed: watch::Receiver<Option<i64>>,
}

impl Index {
    /// Starts the indexer on `dir`'s files (the store's is migrated already). The thread ends
    /// once every handle on it, and the writer's mark, are gone.
    pub(super) fn start(dir: &Path) -> Result<(Self, JoinHandle<()>), StoreError> {
        let index = open(dir)?;
        let path = dir.join("offload.sqlite3");
        let tasks = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open { path, source })?;
        tasks.execute_batch("PRAGMA cache_size = -512;")?;
        let (indexed, receiver) = watch::channel(None);
        let indexer = Indexer {
            tasks,
            index,
            indexed,
        };
        indexer.publish()?;
        let thread = std::thread::Builder::new()
            .name("offload-search".into())
            .spawn(move || indexer.run())
            .map_err(StoreError::Thread)?;
        let handle = Self {
            thread: thread.thread().clone(),
            indexed: receiver,
        };
        Ok((handle, thread))
    }

    /// The mark the store's writer deletes the log up to.
    pub(super) fn indexed(&self) -> watch::Receiver<Option<i64>> {
        self.indexed.clone()
    }

    /// Returns once the index holds every change up to `latest` (read from the store's file
    /// just before), or after [`CATCH_UP_WITHIN`].
    pub(super) async fn caught_up(&self, latest: i64) {
        self.thread.unpark();
        let mut indexed = self.indexed.clone();
        let waited = tokio::time::timeout(
            CATCH_UP_WITHIN,
            indexed.wait_for(|i| i.is_some_and(|i| i >= latest)),
        );
        if waited.await.is_err() {
            tracing::warn!(
                latest,
                "the search index is still catching up: searching what it holds"
            );
        }
    }
}

/// The number of the last change to the tasks' text, read on `conn` (the store's file).
pub(super) fn latest(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached(LATEST)?.query_row([], |r| r.get(0))
}

struct Indexer {
    /// The store's file, read only: the change log and the tasks' text.
    tasks: Connection,
    /// The search file.
    index: Connection,
    /// How far the index is, for searches and for the writer's deleting of the log.
    indexed: watch::Sender<Option<i64>>,
}

impl Indexer {
    fn run(mut self) {
        loop {
            // Chunk after chunk while they come back full (after a restart, or building anew).
            loop {
                let started = Instant::now();
                let step = self.step();
                let took = started.elapsed();
                if took > SLOW {
                    let took_ms = took.as_secs_f64() * 1e3;
                    tracing::warn!(took_ms, "indexing the text of tasks was slow");
                }
                match step.and_then(|more| self.publish().map(|()| more)) {
                    Ok(true) if !self.indexed.is_closed() => {}
                    Ok(_) => break,
                    Err(error) => {
                        tracing::error!(%error, "could not index the text of tasks");
                        break;
                    }
                }
            }
            if self.indexed.is_closed() {
                return;
            }
            std::thread::park_timeout(EVERY);
        }
    }

    /// Tells searches and the writer how far the index is (nothing while it is built anew:
    /// a search then waits for it, and the log is kept).
    fn publish(&self) -> rusqlite::Result<()> {
        let mark = |key: &str| -> rusqlite::Result<Option<i64>> {
            self.index
                .prepare_cached("SELECT value FROM marks WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()
        };
        if mark("rebuild_from")?.is_none()
            && let Some(seq) = mark("seq")?
        {
            self.indexed.send_if_modified(|indexed| {
                let newer = *indexed != Some(seq);
                *indexed = Some(seq);
                newer
            });
        }
        Ok(())
    }

    /// Indexes one chunk: of the tasks while the index is built anew, else of the changes
    /// logged since the last chunk. Whether a full chunk was taken (more may wait).
    fn step(&mut self) -> rusqlite::Result<bool> {
        // One snapshot of the store's file for the log and the text; the search file locked
        // for writing from the start, so that a second indexer on it (a store opened again
        // while the last one's indexer ends) waits rather than indexing the same changes.
        let read = self.tasks.transaction()?;
        let latest: i64 = read.query_row(LATEST, [], |r| r.get(0))?;
        let write = self
            .index
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mark = |key: &str| -> rusqlite::Result<Option<i64>> {
            write
                .prepare_cached("SELECT value FROM marks WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()
        };
        let seq = match mark("seq")? {
            Some(seq) if seq <= latest => seq,
            // A new search file, or one that has seen changes the store's file has not (it
            // belongs to another): built anew from the tasks. The changes up to `latest` are
            // in the tasks' text already; later ones are indexed after the building.
            _ => {
                write.execute(
                    "INSERT INTO tasks_text (tasks_text) VALUES ('delete-all')",
                    [],
                )?;
                set_mark(&write, "rebuild_from", 0)?;
                set_mark(&write, "seq", latest)?;
                latest
            }
        };
        let full = match mark("rebuild_from")? {
            Some(from) => {
                let (last, taken) = rebuild_chunk(&read, &write, from)?;
                if taken == CHUNK {
                    set_mark(&write, "rebuild_from", last)?;
                } else {
                    write.execute("DELETE FROM marks WHERE key = 'rebuild_from'", [])?;
                }
                taken == CHUNK
            }
            None => {
                let (last, taken) = changes_chunk(&read, &write, seq)?;
                set_mark(&write, "seq", last)?;
                taken == CHUNK
            }
        };
        write.commit()?;
        read.commit()?;
        Ok(full)
    }
}

fn set_mark(write: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    write
        .prepare_cached("INSERT OR REPLACE INTO marks (key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

/// Indexes the next [`CHUNK`] tasks after id `from`: the last id taken, and how many.
fn rebuild_chunk(read: &Connection, write: &Connection, from: i64) -> rusqlite::Result<(i64, i64)> {
    let mut insert =
        write.prepare_cached("INSERT INTO tasks_text (rowid, input, text) VALUES (?1, ?2, ?3)")?;
    let mut tasks = read
        .prepare_cached("SELECT id, input, text FROM tasks WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let mut rows = tasks.query(params![from, CHUNK])?;
    let (mut last, mut taken) = (from, 0);
    while let Some(row) = rows.next()? {
        last = row.get(0)?;
        insert.execute(params![
            last,
            row.get::<_, String>(1)?,
            row.get::<_, Option<String>>(2)?
        ])?;
        taken += 1;
    }
    Ok((last, taken))
}

/// Indexes the next [`CHUNK`] changes after `seq`: each changed task's entry goes, and comes
/// back with its text as it is now, unless the task is gone. The last change taken, and how
/// many.
fn changes_chunk(read: &Connection, write: &Connection, seq: i64) -> rusqlite::Result<(i64, i64)> {
    let changes = read
        .prepare_cached("SELECT seq, id FROM text_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2")?
        .query_map(params![seq, CHUNK], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let last = changes.last().map_or(seq, |&(seq, _)| seq);
    let taken = changes.len() as i64;
    let ids: std::collections::BTreeSet<i64> = changes.into_iter().map(|(_, id)| id).collect();
    let mut text = read.prepare_cached("SELECT input, text FROM tasks WHERE id = ?1")?;
    let mut remove = write.prepare_cached("DELETE FROM tasks_text WHERE rowid = ?1")?;
    let mut insert =
        write.prepare_cached("INSERT INTO tasks_text (rowid, input, text) VALUES (?1, ?2, ?3)")?;
    for id in ids {
        remove.execute([id])?;
        let now = text
            .query_row([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .optional()?;
        if let Some((input, line)) = now {
            insert.execute(params![id, input, line])?;
        }
    }
    Ok((last, taken))
}
