//! The writer thread: the one connection that writes. Writes arrive on a bounded channel and
//! are committed in batches (group commit), paced under load; between batches it prunes what
//! retention no longer keeps, a chunk at a time, and keeps the figures. With each commit it
//! deletes the log of text changes the search index has taken (see [`super::search`]).

use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, Transaction, params};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use cluster::Binary;

use crate::ssr::store::commits::{self, PRUNE_CHUNK};
use crate::ssr::store::figures::Figures;
use crate::ssr::store::records::{Op, Retention, Write};

/// Most entries of the text changes' log one commit deletes.
const LOG_CHUNK: i64 = 4_096;

/// The writer thread's state: the connection, where the terminal's order is, whether pruning
/// is under way and how far the search index is. Nothing here grows with the owners or tasks
/// on record: each owner's count of ended tasks is in the file (migration 7's `owners`), read
/// when one of its tasks ends.
pub(super) struct Writer {
    conn: Connection,
    done_seq: i64,
    retention: Retention,
    figures: Arc<Figures>,
    /// Rows by age remain to be pruned.
    pruning: bool,
    /// The last change to the tasks' text the search index holds: the log up to it goes.
    indexed: watch::Receiver<Option<i64>>,
    /// The log is deleted up to here.
    forgotten: i64,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        retention: Retention,
        figures: Arc<Figures>,
        indexed: watch::Receiver<Option<i64>>,
    ) -> rusqlite::Result<Self> {
        let done_seq = conn.query_row("SELECT coalesce(max(done_seq), 0) FROM tasks", [], |r| {
            r.get(0)
        })?;
        let mut writer = Self {
            conn,
            done_seq,
            retention,
            figures,
            // Once at start: a server that was down for a while has ages to catch up on.
            pruning: true,
            indexed,
            forgotten: 0,
        };
        writer.recount()?;
        // The first chunk before the server answers: what it shows at start is already pruned.
        writer.prune_chunk();
        Ok(writer)
    }

    /// Counts the rows once (at start, and should a transaction fail).
    fn recount(&mut self) -> rusqlite::Result<()> {
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
        let owners = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = 'owners'")
            .and_then(|mut owners| owners.query_row([], |r| r.get::<_, i64>(0)))
            .unwrap_or(0);
        self.figures.owners.store(owners.max(0) as u64, Relaxed);
    }

    pub(super) fn run(&mut self, mut rx: mpsc::Receiver<Op>) {
        let mut last_commit = Instant::now();
        let mut last_writes = 0;
        while let Some(batch) = self.next_batch(&mut rx, last_commit, last_writes) {
            last_writes = batch.len();
            let started = Instant::now();
            let result = self.apply(&batch).map_err(|e| e.to_string());
            last_commit = Instant::now();
            if result.is_err()
                && let Err(error) = self.recount()
            {
                tracing::error!(%error, "could not count the session records again");
            }
            let asked = |wanted: fn(&Write) -> bool| {
                batch.iter().any(|op| op.write.as_ref().is_some_and(wanted))
            };
            if asked(|w| matches!(w, Write::Prune)) {
                // Its caller hears back once the first chunk is gone.
                self.prune_chunk();
            }
            self.measure();
            commits::acknowledge(batch, result, last_commit - started);
        }
    }

    /// The writes of the next commit: whatever is queued once the first has arrived (pruning
    /// meanwhile, a chunk at a time, while some is due), or None once every handle is gone.
    /// `last_writes`: how many the last commit held.
    fn next_batch(
        &mut self,
        rx: &mut mpsc::Receiver<Op>,
        last_commit: Instant,
        last_writes: usize,
    ) -> Option<Vec<Op>> {
        let first = loop {
            if !self.pruning {
                break rx.blocking_recv()?;
            }
            match rx.try_recv() {
                Ok(op) => break op,
                Err(mpsc::error::TryRecvError::Empty) => self.prune_chunk(),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
            }
        };
        if let Some(wait) = commits::pause(last_commit, last_writes) {
            std::thread::sleep(wait);
        }
        Some(commits::gather(first, rx))
    }

    /// Deletes up to [`PRUNE_CHUNK`] tasks that ended longer ago than retention keeps; pruning
    /// goes on (between writes) while chunks come back full.
    fn prune_chunk(&mut self) {
        let Some(max_age) = self.retention.max_age else {
            self.pruning = false;
            return;
        };
        let cutoff = (self.retention.clock)().saturating_sub(max_age.as_millis() as u64);
        let pruned = (|| -> rusqlite::Result<usize> {
            let tx = self.conn.transaction()?;
            let gone = tx
                .prepare_cached(
                    "DELETE FROM tasks WHERE id IN
                       (SELECT id FROM tasks WHERE done_seq IS NOT NULL AND finished_at_ms < ?1
                        ORDER BY finished_at_ms LIMIT ?2)",
                )?
                .execute(params![cutoff as i64, PRUNE_CHUNK as i64])?;
            // A batch with no member on record (cancelled before any was handed over) goes
            // by its own age; the others go with their last member.
            tx.prepare_cached(
                "DELETE FROM batches WHERE finished_at_ms < ?1
                   AND NOT EXISTS (SELECT 1 FROM tasks WHERE batch = batches.id)",
            )?
            .execute(params![cutoff as i64])?;
            tx.commit()?;
            Ok(gone)
        })();
        let done = pruned.is_ok();
        self.pruning = commits::chunk_pruned(pruned, &self.figures);
        if done {
            self.measure();
        }
    }

    fn apply(&mut self, batch: &[Op]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let done_seq = &mut self.done_seq;
        let mut last_id = 0u64;
        // Applied to the count once the transaction commits.
        let mut added = 0usize;
        // Ended tasks the per-owner cap trimmed.
        let mut trimmed = 0usize;
        for write in batch.iter().filter_map(|op| op.write.as_ref()) {
            match write {
                Write::Accepted { task, .. } => {
                    added += insert_accepted(&tx, write)?;
                    super::batches::write(&tx, write)?;
                    last_id = last_id.max(task.id);
                }
                Write::Done { session, .. } => {
                    *done_seq += 1;
                    let changed = update_done(&tx, *done_seq, write)?;
                    if changed == 0 {
                        continue;
                    }
                    // The trigger has just counted it.
                    let ended: i64 = tx
                        .prepare_cached("SELECT ended FROM owners WHERE session = ?1")?
                        .query_row([session], |r| r.get(0))?;
                    let past = (ended.max(0) as usize).saturating_sub(self.retention.per_owner);
                    if past > 0 {
                        // The owner's oldest ended tasks make room: one per task past the cap.
                        trimmed += trim_oldest(&tx, session, past)?;
                    }
                }
                Write::Forget { session } => {
                    // Only while nothing of it is unfinished on record: the session may have
                    // come back (a submission) before this write arrived, and its row is
                    // what has its unfinished tasks run again after a restart.
                    tx.prepare_cached(
                        "DELETE FROM sessions WHERE id = ?1 AND NOT EXISTS
                           (SELECT 1 FROM tasks WHERE session = ?1 AND done_seq IS NULL)",
                    )?
                    .execute(params![session])?;
                }
                Write::Prune | Write::Beat | Write::Announce { .. } => {}
                Write::Reused { .. } => {
                    *done_seq += 1;
                    let now = (self.retention.clock)();
                    added += super::batches::insert_reused(&tx, *done_seq, write, now)?;
                }
                Write::Batch(_) | Write::BatchCancelled { .. } | Write::BatchFinished { .. } => {
                    super::batches::write(&tx, write)?;
                }
            }
        }
        let indexed = *self.indexed.borrow();
        let forgotten = match indexed {
            Some(indexed) if indexed > self.forgotten => {
                let gone = tx
                    .prepare_cached(
                        "DELETE FROM text_changes WHERE seq IN
                           (SELECT seq FROM text_changes WHERE seq <= ?1 ORDER BY seq LIMIT ?2)",
                    )?
                    .execute(params![indexed, LOG_CHUNK])?;
                // A full chunk: more may remain up to the mark, for the next commit.
                if gone < LOG_CHUNK as usize {
                    indexed
                } else {
                    self.forgotten
                }
            }
            _ => self.forgotten,
        };
        if last_id > 0 {
            // Task ids are never reused, even after the rows that held them are gone.
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('last_task_id', ?1)
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            )?
            .execute(params![last_id as i64])?;
        }
        tx.commit()?;
        self.forgotten = forgotten;
        let tasks = &self.figures.tasks;
        tasks.fetch_add(added as u64, std::sync::atomic::Ordering::Relaxed);
        self.figures.count_pruned(trimmed);
        Ok(())
    }
}

/// Records an accepted task (`write` is a [`Write::Accepted`]) and what its type's form offers
/// next; 1 when the task is new, 0 when it was recorded already.
fn insert_accepted(tx: &Transaction, write: &Write) -> rusqlite::Result<usize> {
    let Write::Accepted {
        session,
        task,
        input,
        next_input,
        retry_of,
        idempotency,
        member,
        reuse_key,
    } = write
    else {
        return Ok(0);
    };
    if let Some(next_input) = next_input {
        // Type names are [a-z-]; quoted in the path all the same.
        tx.prepare_cached(
            "INSERT INTO sessions (id, next_inputs)
             VALUES (?1, json_object(?2, json(?3)))
             ON CONFLICT (id) DO UPDATE
             SET next_inputs = json_set(next_inputs, '$.\"' || ?2 || '\"', json(?3))",
        )?
        .execute(params![session, task.task, next_input.to_string()])?;
    }
    tx.prepare_cached(
        "INSERT OR IGNORE INTO tasks (id, session, task_type, input, args, submitted_at_ms,
                                      retry_of, idempotency_key, request_sha256, batch, member,
                                      reuse_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
        idempotency.as_ref().map(|(_, hash)| hash),
        member.map(|m| m.batch as i64),
        member.map(|m| m.index as i64),
        reuse_key,
    ])
}

/// Records how a task ended (`write` is a [`Write::Done`]) as the terminal's line `done_seq`;
/// 0 when its result was recorded already (`done_seq IS NULL`: once, however often it ran).
fn update_done(tx: &Transaction, done_seq: i64, write: &Write) -> rusqlite::Result<usize> {
    let Write::Done {
        line,
        output,
        binary,
        ran,
        finished_at_ms,
        ..
    } = write
    else {
        return Ok(0);
    };
    tx.prepare_cached(
        "UPDATE tasks SET done_seq = ?1, outcome = ?2, text = ?3, output = ?4,
                          finished_at_ms = ?5, output_media = ?7, output_data = ?8,
                          started_at_ms = ?9, worker = ?10, attempts = ?11
         WHERE id = ?6 AND done_seq IS NULL",
    )?
    .execute(params![
        done_seq,
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
    ])
}

/// Deletes `session`'s `count` oldest ended tasks; how many went.
fn trim_oldest(tx: &Transaction, session: &str, count: usize) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM tasks WHERE id IN
           (SELECT id FROM tasks WHERE session = ?1 AND done_seq IS NOT NULL
            ORDER BY done_seq LIMIT ?2)",
    )?
    .execute(params![session, count as i64])
}
