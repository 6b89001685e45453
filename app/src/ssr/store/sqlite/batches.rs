//! Batches on record: written by the writer thread with the rest ([`write`]), read by the
//! reader connection (one batch with its counts, an owner's batches, a batch's members in
//! order), and at start the batches that were open, for the server to go on with.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use model::page::{Outcome, QueuedTask, TaskStatus};

use super::reads::task_record;
use crate::ssr::store::records::{
    BATCH_COLUMNS as BATCH, BatchRecord, MemberRecord, SavedBatch, SavedTask,
    TASK_COLUMNS as RECORD, Write,
};

/// Applies a batch's write within the writer's transaction; false when `write` is not one.
pub(super) fn write(tx: &Transaction, write: &Write) -> rusqlite::Result<bool> {
    match write {
        Write::Batch(batch) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO batches (id, session, task_type, spec, members,
                                                created_at_ms, idempotency_key, request_sha256,
                                                retry_of, reuse)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                batch.id as i64,
                batch.session,
                batch.task_type,
                batch.spec.to_string(),
                batch.members as i64,
                batch.created_at_ms as i64,
                batch.idempotency.as_ref().map(|(key, _)| key),
                batch.idempotency.as_ref().map(|(_, hash)| hash),
                batch.retry_of.map(|id| id as i64),
                batch.reuse,
            ])?;
        }
        Write::BatchCancelled { batch, at_ms } => {
            tx.prepare_cached(
                "UPDATE batches SET cancelled_at_ms = ?2
                 WHERE id = ?1 AND cancelled_at_ms IS NULL AND finished_at_ms IS NULL",
            )?
            .execute(params![*batch as i64, *at_ms as i64])?;
        }
        Write::BatchFinished { batch, at_ms } => {
            tx.prepare_cached(
                "UPDATE batches SET finished_at_ms = ?2 WHERE id = ?1 AND finished_at_ms IS NULL",
            )?
            .execute(params![*batch as i64, *at_ms as i64])?;
        }
        Write::Accepted {
            member: Some(member),
            ..
        } => {
            if member.last {
                tx.prepare_cached("UPDATE batches SET fed = max(fed, ?2) WHERE id = ?1")?
                    .execute(params![member.batch as i64, member.index as i64 + 1])?;
            }
            // The task row itself is the caller's.
            return Ok(false);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn batch_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<BatchRecord> {
    let ms = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(row.get::<_, Option<i64>>(i)?.map(|ms| ms as u64))
    };
    let spec: String = row.get(3)?;
    let mut ended = [0u64; 4];
    for (i, count) in ended.iter_mut().enumerate() {
        *count = row.get::<_, i64>(11 + i)? as u64;
    }
    debug_assert_eq!(Outcome::ALL[0], Outcome::Finished);
    Ok(BatchRecord {
        id: row.get::<_, i64>(0)? as u64,
        session: row.get(1)?,
        task_type: row.get(2)?,
        // Written by this store: anything else is a damaged row, whose members then fail.
        spec: serde_json::from_str(&spec).unwrap_or(Value::Null),
        members: row.get::<_, i64>(4)? as u64,
        fed: row.get::<_, i64>(5)? as u64,
        created_at_ms: row.get::<_, i64>(6)? as u64,
        cancelled_at_ms: ms(7)?,
        finished_at_ms: ms(8)?,
        retry_of: row.get::<_, Option<i64>>(9)?.map(|id| id as u64),
        reuse: row.get(10)?,
        ended,
    })
}

/// Batch `id`, if it is `session`'s.
pub(super) fn read_batch(
    conn: &Connection,
    session: &str,
    id: u64,
) -> rusqlite::Result<Option<BatchRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {BATCH} FROM batches WHERE id = ?1 AND session = ?2"
    ))?
    .query_row(params![id as i64, session], batch_record)
    .optional()
}

/// `session`'s batches older than `before`, newest first, and whether there are more.
pub(super) fn read_batches(
    conn: &Connection,
    session: &str,
    before: Option<u64>,
    limit: usize,
) -> rusqlite::Result<(Vec<BatchRecord>, bool)> {
    let mut batches = conn
        .prepare_cached(&format!(
            "SELECT {BATCH} FROM batches WHERE session = ?1 AND id < ?2
             ORDER BY id DESC LIMIT ?3"
        ))?
        .query_map(
            params![
                session,
                before.map_or(i64::MAX, |id| id as i64),
                limit as i64 + 1
            ],
            batch_record,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = batches.len() > limit;
    batches.truncate(limit);
    Ok((batches, more))
}

/// Batch `batch`'s members after index `after`, in order, and whether there are more. The
/// caller has checked that the batch is its owner's.
pub(super) fn read_members(
    conn: &Connection,
    batch: u64,
    after: Option<u64>,
    limit: usize,
) -> rusqlite::Result<(Vec<MemberRecord>, bool)> {
    let mut members = conn
        .prepare_cached(&format!(
            "SELECT {RECORD}, member FROM tasks WHERE batch = ?1 AND member > ?2
             ORDER BY member LIMIT ?3"
        ))?
        .query_map(
            params![
                batch as i64,
                after.map_or(-1, |index| index as i64),
                limit as i64 + 1
            ],
            |row| {
                Ok(MemberRecord {
                    task: task_record(row)?,
                    index: row.get::<_, i64>("member")? as u64,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = members.len() > limit;
    members.truncate(limit);
    Ok((members, more))
}

/// The batch `session` submitted under `Idempotency-Key` `key`, with its request's hash.
pub(super) fn by_idempotency_key(
    conn: &Connection,
    session: &str,
    key: &str,
) -> rusqlite::Result<Option<(u64, Vec<u8>)>> {
    conn.prepare_cached(
        "SELECT id, request_sha256 FROM batches WHERE session = ?1 AND idempotency_key = ?2",
    )?
    .query_row(params![session, key], |row| {
        Ok((row.get::<_, i64>(0)? as u64, row.get(1)?))
    })
    .optional()
}

/// The batches that had not finished, oldest first, each with its members that were handed
/// to the queue and had not ended.
pub(super) fn read_open(conn: &Connection) -> rusqlite::Result<Vec<SavedBatch>> {
    let batches = conn
        .prepare(&format!(
            "SELECT {BATCH} FROM batches WHERE finished_at_ms IS NULL ORDER BY id"
        ))?
        .query_map([], batch_record)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // Members handed over together are recorded in order, the count with the last: a stop
    // between two commits of one hand-over leaves members on record past the count.
    let mut last_member = conn.prepare("SELECT max(member) FROM tasks WHERE batch = ?1")?;
    let mut members = conn.prepare(
        "SELECT member, id, task_type, input, args, submitted_at_ms FROM tasks
         WHERE batch = ?1 AND done_seq IS NULL ORDER BY member",
    )?;
    batches
        .into_iter()
        .map(|batch| {
            let unfinished = members
                .query_map([batch.id as i64], |row| {
                    let input: String = row.get(3)?;
                    Ok((
                        row.get::<_, i64>(0)? as u64,
                        SavedTask {
                            task: QueuedTask {
                                id: row.get::<_, i64>(1)? as u64,
                                task: row.get(2)?,
                                args: row.get(4)?,
                                status: TaskStatus::Queued,
                                progress: 0.0,
                                submitted_at_ms: row.get::<_, i64>(5)? as u64,
                                batch: None,
                            },
                            input: serde_json::from_str(&input).unwrap_or(Value::Null),
                        },
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let past: Option<i64> = last_member.query_row([batch.id as i64], |row| row.get(0))?;
            let fed = batch.fed.max(past.map_or(0, |m| m as u64 + 1));
            Ok(SavedBatch {
                batch: BatchRecord { fed, ..batch },
                unfinished,
            })
        })
        .collect()
}

/// The newest task of `session` that finished computing what `key` says, if one is on record.
pub(super) fn reusable(
    conn: &Connection,
    session: &str,
    key: i64,
) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached(
        "SELECT id FROM tasks WHERE reuse_key = ?1 AND session = ?2 AND outcome = 'finished'
         ORDER BY id DESC LIMIT 1",
    )?
    .query_row(params![key, session], |row| row.get::<_, i64>(0))
    .optional()
    .map(|id| id.map(|id| id as u64))
}

/// Records a member that takes task `from`'s result (`write` is a [`Write::Reused`]) as ended
/// at `done_seq`; 1 when recorded, 0 when `from` is gone meanwhile.
pub(super) fn insert_reused(
    tx: &Transaction,
    done_seq: i64,
    write: &Write,
    finished_at_ms: u64,
) -> rusqlite::Result<usize> {
    let Write::Reused {
        session,
        task,
        member,
        from,
    } = write
    else {
        return Ok(0);
    };
    let copied = tx
        .prepare_cached(
            "INSERT INTO tasks (id, session, task_type, input, args, submitted_at_ms, batch, member,
                                reuse_key, reused_from, done_seq, outcome, text, output,
                                finished_at_ms, output_media, output_data, started_at_ms, worker,
                                attempts)
             SELECT ?1, session, task_type, input, args, ?2, ?3, ?4, reuse_key, id, ?5, outcome,
                    text || ' (from #' || id || ')', output, ?6, output_media, output_data,
                    started_at_ms, worker, attempts
             FROM tasks WHERE id = ?7 AND session = ?8",
        )?
        .execute(params![
            task.id as i64,
            task.submitted_at_ms as i64,
            member.batch as i64,
            member.index as i64,
            done_seq,
            finished_at_ms as i64,
            *from as i64,
            session,
        ])?;
    if member.last {
        tx.prepare_cached("UPDATE batches SET fed = max(fed, ?2) WHERE id = ?1")?
            .execute(params![member.batch as i64, member.index as i64 + 1])?;
    }
    Ok(copied)
}

/// The greatest batch id ever given (ids are never reused, even once a batch is gone).
pub(super) fn last_id(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT max(coalesce((SELECT max(id) FROM batches), 0),
                    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'batches'), 0))",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|id| id as u64)
}
