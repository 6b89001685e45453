//! The database file's schema and its history: numbered migrations, run in one transaction at
//! start (a file written by an older release opens with everything it held), and how every
//! connection to it is opened.

use std::path::Path;

use rusqlite::{Connection, Transaction};
use rusqlite_migration::{HookError, M, Migrations};

use crate::ssr::store::error::StoreError;

/// The schema's history, oldest first: a migration is never edited once released, only
/// followed by another. SQLite's `user_version` says how many have run.
pub(super) fn migrations(legacy_type: &str) -> Migrations<'static> {
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
        // 7: each owner's count of ended tasks (the per-owner cap) and how many owners have
        // any, kept by triggers in the file rather than in the server's memory, which must
        // not grow with the owners on record. Every path that ends or deletes a task keeps
        // them, a benchmark writing rows directly too.
        M::up(
            "CREATE TABLE owners (
                 session TEXT PRIMARY KEY,
                 ended INTEGER NOT NULL
             ) WITHOUT ROWID;
             INSERT INTO owners (session, ended)
                 SELECT session, count(*) FROM tasks WHERE done_seq IS NOT NULL
                 GROUP BY session;
             INSERT INTO meta (key, value) VALUES ('owners', (SELECT count(*) FROM owners))
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value;
             CREATE TRIGGER owners_new AFTER INSERT ON owners BEGIN
                 UPDATE meta SET value = value + 1 WHERE key = 'owners';
             END;
             CREATE TRIGGER owners_gone AFTER DELETE ON owners BEGIN
                 UPDATE meta SET value = value - 1 WHERE key = 'owners';
             END;
             CREATE TRIGGER owners_task_ends AFTER UPDATE OF done_seq ON tasks
                 WHEN old.done_seq IS NULL AND new.done_seq IS NOT NULL BEGIN
                 INSERT INTO owners (session, ended) VALUES (new.session, 1)
                     ON CONFLICT (session) DO UPDATE SET ended = ended + 1;
             END;
             CREATE TRIGGER owners_task_ended AFTER INSERT ON tasks
                 WHEN new.done_seq IS NOT NULL BEGIN
                 INSERT INTO owners (session, ended) VALUES (new.session, 1)
                     ON CONFLICT (session) DO UPDATE SET ended = ended + 1;
             END;
             CREATE TRIGGER owners_task_gone AFTER DELETE ON tasks
                 WHEN old.done_seq IS NOT NULL BEGIN
                 UPDATE owners SET ended = ended - 1 WHERE session = old.session;
                 DELETE FROM owners WHERE session = old.session AND ended <= 0;
             END;",
        ),
        // 8: the search index is kept off the tasks' path. Migration 6's triggers indexed
        // each task when it was accepted and again when it ended, so every commit added a
        // segment to the index and its merges stalled commits for hundreds of milliseconds
        // under load. Now a task whose text changed is only noted; the writer indexed the
        // noted tasks in bulk, always before a search read the index (until migration 9).
        M::up(
            "DROP TRIGGER tasks_text_insert;
             DROP TRIGGER tasks_text_update;
             CREATE TABLE text_pending (id INTEGER PRIMARY KEY);
             CREATE TRIGGER text_pending_insert AFTER INSERT ON tasks BEGIN
                 INSERT OR IGNORE INTO text_pending (id) VALUES (new.id);
             END;
             CREATE TRIGGER text_pending_update AFTER UPDATE OF text ON tasks
                 WHEN new.text IS NOT old.text BEGIN
                 INSERT OR IGNORE INTO text_pending (id) VALUES (new.id);
             END;
             CREATE TRIGGER text_pending_delete AFTER DELETE ON tasks BEGIN
                 DELETE FROM text_pending WHERE id = old.id;
             END;",
        ),
        // 9: the search index moves to a file of its own, kept by a thread of its own
        // (`search`): indexing in bulk in this file still held the writer up to 236 ms when
        // a large merge came due. Every change to a task's text is logged here, numbered in
        // order (AUTOINCREMENT: a number is never used twice, even once the log is emptied);
        // the indexer takes the log from the number it recorded last, and the writer deletes
        // what it took. The new file is built from the tasks at the first start.
        M::up(
            "DROP TRIGGER text_pending_insert;
             DROP TRIGGER text_pending_update;
             DROP TRIGGER text_pending_delete;
             DROP TRIGGER tasks_text_delete;
             DROP TABLE text_pending;
             DROP TABLE tasks_text;
             CREATE TABLE text_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER NOT NULL);
             CREATE TRIGGER text_changes_insert AFTER INSERT ON tasks BEGIN
                 INSERT INTO text_changes (id) VALUES (new.id);
             END;
             CREATE TRIGGER text_changes_update AFTER UPDATE OF text ON tasks
                 WHEN new.text IS NOT old.text BEGIN
                 INSERT INTO text_changes (id) VALUES (new.id);
             END;
             CREATE TRIGGER text_changes_delete AFTER DELETE ON tasks BEGIN
                 INSERT INTO text_changes (id) VALUES (old.id);
             END;",
        ),
        // 10: batches: one type, many inputs, one owner. A batch keeps its specification
        // (members are computed from it by index) and how many members it has handed to the
        // queue; each member handed over is a task row that names its batch and index. A
        // batch goes with its last member (retention), once no other member is to come. A
        // task records what it computes, so that a batch may reuse an earlier result.
        M::up(
            "CREATE TABLE batches (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 session TEXT NOT NULL,
                 task_type TEXT NOT NULL,
                 -- JSON: the resolved specification
                 spec TEXT NOT NULL,
                 members INTEGER NOT NULL,
                 -- Members handed to the queue so far: the next one's index.
                 fed INTEGER NOT NULL DEFAULT 0,
                 created_at_ms INTEGER NOT NULL,
                 cancelled_at_ms INTEGER,
                 finished_at_ms INTEGER,
                 idempotency_key TEXT,
                 request_sha256 BLOB,
                 -- The batch whose failed and cancelled members this one runs again.
                 retry_of INTEGER,
                 -- Members whose computation finished on record before are not run again.
                 reuse INTEGER NOT NULL DEFAULT 0
             );
             CREATE INDEX batches_by_owner ON batches (session, id);
             CREATE INDEX batches_open ON batches (id) WHERE finished_at_ms IS NULL;
             CREATE UNIQUE INDEX batches_by_idempotency_key ON batches (session, idempotency_key)
                 WHERE idempotency_key IS NOT NULL;
             ALTER TABLE tasks ADD COLUMN batch INTEGER;
             ALTER TABLE tasks ADD COLUMN member INTEGER;
             -- What a task computes (its type, schema, version and input; see
             -- TaskType::reuse_key), and the task whose result it took instead of running.
             ALTER TABLE tasks ADD COLUMN reuse_key INTEGER;
             ALTER TABLE tasks ADD COLUMN reused_from INTEGER;
             CREATE INDEX tasks_by_reuse_key ON tasks (reuse_key) WHERE reuse_key IS NOT NULL;
             -- Covers a batch's counts by outcome as well as its members in order.
             CREATE INDEX tasks_by_batch ON tasks (batch, member, outcome) WHERE batch IS NOT NULL;
             CREATE TRIGGER batches_last_member_gone AFTER DELETE ON tasks
                 WHEN old.batch IS NOT NULL BEGIN
                 DELETE FROM batches WHERE id = old.batch
                     AND (fed >= members OR cancelled_at_ms IS NOT NULL) AND NOT EXISTS (SELECT 1 FROM tasks WHERE batch = old.batch);
             END;",
        ),
        // The history lists a batch as one row, its first member's: an owner's single tasks
        // and first members, newest first, without reading its batches' other members.
        M::up(
            "CREATE INDEX tasks_listed ON tasks (session, id) WHERE batch IS NULL OR member = 0;",
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
