//! The writer thread: the one connection that writes. Writes arrive on a bounded channel and
//! are committed in batches (group commit); between batches it prunes what retention no longer
//! keeps, a chunk at a time, and keeps the figures.

use std::sync::Arc;

use rusqlite::{Connection, Transaction, params};
use serde_json::Value;
use tokio::sync::mpsc;

use cluster::Binary;

use super::figures::Figures;
use super::records::{Op, Retention, Write};

/// Most writes in one transaction.
const BATCH: usize = 1_024;
/// Most rows one pruning transaction deletes: writes that arrive meanwhile wait at most that
/// long.
const PRUNE_CHUNK: usize = 1_000;

/// The writer thread's state: the connection, where the terminal's order is, and what it
/// knows of the rows, so that pruning and the figures never scan the table.
pub(super) struct Writer {
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
    pub(super) fn new(
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

    pub(super) fn run(&mut self, mut rx: mpsc::Receiver<Op>) {
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
                Write::Accepted { task, .. } => {
                    added += insert_accepted(&tx, write)?;
                    last_id = last_id.max(task.id);
                }
                Write::Done { session, .. } => {
                    *done_seq += 1;
                    let changed = update_done(&tx, *done_seq, write)?;
                    if changed == 0 {
                        continue;
                    }
                    let now = ended
                        .entry(session)
                        .or_insert_with(|| self.ended.get(session.as_str()).copied().unwrap_or(0));
                    *now += 1;
                    if *now > self.retention.per_owner {
                        // The owner's oldest ended tasks make room: one per task past the cap.
                        let gone = trim_oldest(&tx, session, *now - self.retention.per_owner)?;
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
    } = write
    else {
        return Ok(0);
    };
    // Type names are [a-z-]; quoted in the path all the same.
    tx.prepare_cached(
        "INSERT INTO sessions (id, next_inputs)
         VALUES (?1, json_object(?2, json(?3)))
         ON CONFLICT (id) DO UPDATE
         SET next_inputs = json_set(next_inputs, '$.\"' || ?2 || '\"', json(?3))",
    )?
    .execute(params![session, task.task, next_input.to_string()])?;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO tasks (id, session, task_type, input, args, submitted_at_ms,
                                      retry_of, idempotency_key, request_sha256)
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
