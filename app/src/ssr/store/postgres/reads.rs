//! Reading the PostgreSQL record: the sessions at start, one task, an owner's tasks filtered and
//! paged newest first (each a range of one index, or the trigram indexes for a search), and
//! batches, as the SQLite side reads them.

use std::collections::HashMap;

use deadpool_postgres::ClientWrapper;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use cluster::Ran;
use model::page::{Outcome, QueuedTask, TaskStatus, TerminalLine};

use crate::ssr::store::records::{
    BATCH_COLUMNS as BATCH, BatchRecord, MemberRecord, SavedBatch, SavedSession, SavedTask,
    TASK_COLUMNS as RECORD, TaskFilter, TaskRecord, like_pattern,
};

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

async fn query(
    client: &ClientWrapper,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    let statement = client.prepare_cached(sql).await?;
    client.query(&statement, params).await
}

async fn query_opt(
    client: &ClientWrapper,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>> {
    let statement = client.prepare_cached(sql).await?;
    client.query_opt(&statement, params).await
}

fn json(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn queued(row: &Row, at: usize) -> SavedTask {
    SavedTask {
        task: QueuedTask {
            id: row.get::<_, i64>(at) as u64,
            task: row.get(at + 1),
            args: row.get(at + 3),
            status: TaskStatus::Queued,
            progress: 0.0,
            submitted_at_ms: row.get::<_, i64>(at + 4) as u64,
            batch: None,
        },
        // Undecodable: the rerun refuses it and says so on the task's line.
        input: json(row.get(at + 2)).unwrap_or(Value::Null),
    }
}

/// The sessions on record: their unfinished tasks, and the last `lines` lines of each one's
/// terminal. Members of batches are their batch's ([`open_batches`]).
pub(super) async fn load(client: &ClientWrapper, lines: usize) -> Result<Vec<SavedSession>> {
    let mut sessions: Vec<SavedSession> = query(
        client,
        "SELECT id, next_inputs::text FROM sessions ORDER BY id COLLATE \"C\"",
        &[],
    )
    .await?
    .iter()
    .map(|row| SavedSession {
        id: row.get(0),
        // Written by this store from a map: anything else is a damaged row, whose only loss
        // is the forms' suggestions.
        next_inputs: serde_json::from_str(row.get(1)).unwrap_or_default(),
        unfinished: Vec::new(),
        lines: Vec::new(),
    })
    .collect();
    let index: std::collections::HashMap<String, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    let rows = query(
        client,
        "SELECT session, id, task_type, input, args, submitted_at_ms, outcome, text, image
         FROM (SELECT session, id, task_type, input, args, submitted_at_ms, outcome, text,
                      done_seq, coalesce(output_media LIKE 'image/%', false) AS image,
                      row_number() OVER (PARTITION BY session, done_seq IS NULL
                                         ORDER BY done_seq DESC) AS newest
               FROM tasks WHERE session IN (SELECT id FROM sessions) AND batch IS NULL) AS t
         WHERE done_seq IS NULL OR newest <= $1
         ORDER BY done_seq IS NOT NULL, done_seq, id",
        &[&(lines as i64)],
    )
    .await?;
    for row in rows {
        let Some(&i) = index.get(row.get::<_, &str>(0)) else {
            continue;
        };
        let outcome: Option<&str> = row.get(6);
        match outcome.and_then(Outcome::from_name) {
            None => sessions[i].unfinished.push(queued(&row, 1)),
            Some(outcome) => sessions[i].lines.push(TerminalLine {
                task: row.get::<_, i64>(1) as u64,
                outcome,
                text: row.get(7),
                image: row.get(8),
                batch: false,
            }),
        }
    }
    Ok(sessions)
}

/// The greatest task id ever given (ids are never reused, even once a task is gone).
pub(super) async fn last_task_id(client: &ClientWrapper) -> Result<u64> {
    last_id(client, "tasks", "last_task_id").await
}

/// The greatest batch id ever given.
pub(super) async fn last_batch_id(client: &ClientWrapper) -> Result<u64> {
    last_id(client, "batches", "last_batch_id").await
}

async fn last_id(client: &ClientWrapper, table: &str, key: &str) -> Result<u64> {
    let row = client
        .query_one(
            &format!(
                "SELECT greatest(coalesce((SELECT max(id) FROM {table}), 0),
                                 coalesce((SELECT value FROM meta WHERE key = $1), 0))"
            ),
            &[&key],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

fn task_record(row: &Row) -> TaskRecord {
    let id = |i: usize| row.get::<_, Option<i64>>(i).map(|id| id as u64);
    TaskRecord {
        id: row.get::<_, i64>(0) as u64,
        task_type: row.get(1),
        input: json(row.get(2)).unwrap_or(Value::Null),
        args: row.get(3),
        submitted_at_ms: row.get::<_, i64>(4) as u64,
        outcome: row.get::<_, Option<&str>>(5).and_then(Outcome::from_name),
        line: row.get(6),
        output: json(row.get(7)),
        finished_at_ms: id(8),
        output_media: row.get(9),
        retry_of: id(10),
        ran: match (id(11), row.get(12), id(13)) {
            (Some(started_at_ms), Some(worker), Some(attempt)) => Some(Ran {
                worker,
                started_at_ms,
                attempt: attempt as u32,
            }),
            _ => None,
        },
        reused_from: id(14),
        batch: id(15),
    }
}

pub(super) async fn task(
    client: &ClientWrapper,
    session: &str,
    id: u64,
) -> Result<Option<TaskRecord>> {
    let sql = format!("SELECT {RECORD} FROM tasks WHERE id = $1 AND session = $2");
    Ok(query_opt(client, &sql, &[&(id as i64), &session])
        .await?
        .as_ref()
        .map(task_record))
}

/// The task or batch (`table`) `session` submitted under `Idempotency-Key` `key`, with its
/// request's hash.
pub(super) async fn by_idempotency_key(
    client: &ClientWrapper,
    table: &str,
    session: &str,
    key: &str,
) -> Result<Option<(u64, Vec<u8>)>> {
    let sql = format!(
        "SELECT id, request_sha256 FROM {table} WHERE session = $1 AND idempotency_key = $2"
    );
    Ok(query_opt(client, &sql, &[&session, &key])
        .await?
        .map(|row| (row.get::<_, i64>(0) as u64, row.get(1))))
}

pub(super) async fn tasks(
    client: &ClientWrapper,
    session: &str,
    filter: &TaskFilter,
) -> Result<(Vec<TaskRecord>, bool)> {
    // Only the filters asked for are in the query, so that the planner picks the index made
    // for them, as on the SQLite side.
    let before = filter.before.map_or(i64::MAX, |id| id as i64);
    // One more than asked: whether there is a next page.
    let limit = filter.limit as i64 + 1;
    let kind = filter.kind.as_deref();
    let batch = filter.batch.map(|id| id as i64);
    let outcome = filter.ended.map(|ended| ended.map(Outcome::name));
    let pattern = filter.search.as_deref().map(like_pattern);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&session, &before, &limit];
    let mut conditions = vec!["session = $1".to_owned(), "id < $2".to_owned()];
    if let Some(kind) = &kind {
        params.push(kind);
        conditions.push(format!("task_type = ${}", params.len()));
    }
    if let Some(batch) = &batch {
        params.push(batch);
        conditions.push(format!("batch = ${}", params.len()));
    } else if filter.fold_batches {
        // As the partial index `tasks_listed` says it, so that the planner reads that index.
        conditions.push("(batch IS NULL OR member = 0)".to_owned());
    }
    match &outcome {
        None => {}
        Some(None) => conditions.push("outcome IS NULL".to_owned()),
        Some(Some(name)) => {
            params.push(name);
            conditions.push(format!("outcome = ${}", params.len()));
        }
    }
    if let Some(pattern) = &pattern {
        // The trigram indexes serve ILIKE: the text anywhere in the input or the line, in any
        // case (searches shorter than a trigram scan the owner's tasks).
        params.push(pattern);
        let n = params.len();
        conditions.push(format!(
            "(input ILIKE ${n} ESCAPE '\\' OR text ILIKE ${n} ESCAPE '\\')"
        ));
    }
    let sql = format!(
        "SELECT {RECORD} FROM tasks WHERE {} ORDER BY id DESC LIMIT $3",
        conditions.join(" AND ")
    );
    let mut records: Vec<TaskRecord> = query(client, &sql, &params)
        .await?
        .iter()
        .map(task_record)
        .collect();
    let more = records.len() > filter.limit;
    records.truncate(filter.limit);
    Ok((records, more))
}

pub(super) async fn newest_task(client: &ClientWrapper, session: &str) -> Result<Option<u64>> {
    let row = query_opt(
        client,
        "SELECT max(id) FROM tasks WHERE session = $1",
        &[&session],
    )
    .await?;
    Ok(row
        .and_then(|row| row.get::<_, Option<i64>>(0))
        .map(|id| id as u64))
}

pub(super) async fn output(
    client: &ClientWrapper,
    session: &str,
    id: u64,
) -> Result<Option<(String, Vec<u8>)>> {
    let row = query_opt(
        client,
        "SELECT output_media, output_data FROM tasks
         WHERE id = $1 AND session = $2 AND output_data IS NOT NULL",
        &[&(id as i64), &session],
    )
    .await?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

fn batch_record(row: &Row) -> BatchRecord {
    let ms = |i: usize| row.get::<_, Option<i64>>(i).map(|ms| ms as u64);
    let mut ended = [0u64; 4];
    for (i, count) in ended.iter_mut().enumerate() {
        *count = row.get::<_, i64>(11 + i) as u64;
    }
    debug_assert_eq!(Outcome::ALL[0], Outcome::Finished);
    BatchRecord {
        id: row.get::<_, i64>(0) as u64,
        session: row.get(1),
        task_type: row.get(2),
        // Written by this store: anything else is a damaged row, whose members then fail.
        spec: json(row.get(3)).unwrap_or(Value::Null),
        members: row.get::<_, i64>(4) as u64,
        fed: row.get::<_, i64>(5) as u64,
        created_at_ms: row.get::<_, i64>(6) as u64,
        cancelled_at_ms: ms(7),
        finished_at_ms: ms(8),
        retry_of: ms(9),
        reuse: row.get(10),
        ended,
    }
}

pub(super) async fn batch(
    client: &ClientWrapper,
    session: &str,
    id: u64,
) -> Result<Option<BatchRecord>> {
    let sql = format!("SELECT {BATCH} FROM batches WHERE id = $1 AND session = $2");
    Ok(query_opt(client, &sql, &[&(id as i64), &session])
        .await?
        .as_ref()
        .map(batch_record))
}

pub(super) async fn batches(
    client: &ClientWrapper,
    session: &str,
    before: Option<u64>,
    limit: usize,
) -> Result<(Vec<BatchRecord>, bool)> {
    let sql = format!(
        "SELECT {BATCH} FROM batches WHERE session = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
    );
    let before = before.map_or(i64::MAX, |id| id as i64);
    let mut batches: Vec<BatchRecord> =
        query(client, &sql, &[&session, &before, &(limit as i64 + 1)])
            .await?
            .iter()
            .map(batch_record)
            .collect();
    let more = batches.len() > limit;
    batches.truncate(limit);
    Ok((batches, more))
}

pub(super) async fn members(
    client: &ClientWrapper,
    batch: u64,
    after: Option<u64>,
    limit: usize,
) -> Result<(Vec<MemberRecord>, bool)> {
    let sql = format!(
        "SELECT {RECORD}, member FROM tasks WHERE batch = $1 AND member > $2
         ORDER BY member LIMIT $3"
    );
    let after = after.map_or(-1, |index| index as i64);
    let mut members: Vec<MemberRecord> = query(
        client,
        &sql,
        &[&(batch as i64), &after, &(limit as i64 + 1)],
    )
    .await?
    .iter()
    .map(|row| MemberRecord {
        task: task_record(row),
        index: row.get::<_, i64>("member") as u64,
    })
    .collect();
    let more = members.len() > limit;
    members.truncate(limit);
    Ok((members, more))
}

pub(super) async fn reusable(
    client: &ClientWrapper,
    session: &str,
    key: i64,
) -> Result<Option<u64>> {
    let row = query_opt(
        client,
        "SELECT id FROM tasks WHERE reuse_key = $1 AND session = $2 AND outcome = 'finished'
         ORDER BY id DESC LIMIT 1",
        &[&key, &session],
    )
    .await?;
    Ok(row.map(|row| row.get::<_, i64>(0) as u64))
}

/// The batches that had not finished, oldest first, each with its members that were handed
/// to the queue and had not ended.
pub(super) async fn open_batches(client: &ClientWrapper) -> Result<Vec<SavedBatch>> {
    let sql = format!("SELECT {BATCH} FROM batches WHERE finished_at_ms IS NULL ORDER BY id");
    let batches: Vec<BatchRecord> = query(client, &sql, &[])
        .await?
        .iter()
        .map(batch_record)
        .collect();
    // Two queries for all of them, not two a batch.
    let mut unfinished: HashMap<u64, Vec<(u64, SavedTask)>> = HashMap::new();
    for row in query(
        client,
        "SELECT member, id, task_type, input, args, submitted_at_ms, batch FROM tasks
          WHERE batch IN (SELECT id FROM batches WHERE finished_at_ms IS NULL)
            AND done_seq IS NULL
          ORDER BY batch, member",
        &[],
    )
    .await?
    {
        let batch = row.get::<_, i64>(6) as u64;
        let member = (row.get::<_, i64>(0) as u64, queued(&row, 1));
        unfinished.entry(batch).or_default().push(member);
    }
    // Members handed over together are recorded in order, the count with the last: a stop
    // between two commits of one hand-over leaves members on record past the count.
    let past: HashMap<u64, u64> = query(
        client,
        "SELECT batch, max(member) FROM tasks
          WHERE batch IN (SELECT id FROM batches WHERE finished_at_ms IS NULL)
          GROUP BY batch",
        &[],
    )
    .await?
    .iter()
    .map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64 + 1))
    .collect();
    Ok(batches
        .into_iter()
        .map(|batch| SavedBatch {
            unfinished: unfinished.remove(&batch.id).unwrap_or_default(),
            batch: BatchRecord {
                fed: batch.fed.max(past.get(&batch.id).copied().unwrap_or(0)),
                ..batch
            },
        })
        .collect())
}
