//! Reading the record: the sessions at start, one task, and an owner's tasks filtered and paged
//! newest first (the history and the API), each a range of one index.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use cluster::Ran;
use model::page::{Outcome, QueuedTask, TaskStatus, TerminalLine};

use crate::ssr::store::records::{
    SavedSession, SavedTask, TASK_COLUMNS as RECORD, TaskFilter, TaskRecord, like_pattern,
};

/// The sessions on record: their unfinished tasks, and the last `lines` lines of each one's
/// terminal (the rest stays on record, for the history, without being held in memory).
/// Members of batches are their batch's ([`super::batches::read_open`]).
pub(super) fn load(conn: &Connection, lines: usize) -> Result<Vec<SavedSession>, rusqlite::Error> {
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
               FROM tasks WHERE session IN (SELECT id FROM sessions) AND batch IS NULL)
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
                        batch: None,
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
                batch: false,
            }),
        }
    }
    Ok(sessions)
}

pub(super) fn task_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
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
        reused_from: row.get::<_, Option<i64>>(14)?.map(|id| id as u64),
        batch: row.get::<_, Option<i64>>(15)?.map(|id| id as u64),
    })
}

pub(super) fn read_task(
    conn: &Connection,
    session: &str,
    id: u64,
) -> rusqlite::Result<Option<TaskRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {RECORD} FROM tasks WHERE id = ?1 AND session = ?2"
    ))?
    .query_row(params![id as i64, session], task_record)
    .optional()
}

/// Searches this short find no trigram: they scan the owner's tasks instead.
const TRIGRAM: usize = 3;

pub(super) fn read_tasks(
    conn: &Connection,
    session: &str,
    filter: &TaskFilter,
) -> rusqlite::Result<(Vec<TaskRecord>, bool)> {
    use rusqlite::ToSql;
    // Only the filters asked for are in the query, so that SQLite picks the index made for
    // them: (owner, id), (owner, type, id), (owner, outcome, id) or the owner's tasks and
    // batches listed as one each (`tasks_listed`), newest first.
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
    let batch = filter.batch.map(|id| id as i64);
    if let Some(batch) = &batch {
        conditions.push("batch = :batch");
        params.push((":batch", batch));
    }
    if filter.fold_batches && batch.is_none() {
        // As the partial index `tasks_listed` says it, so that SQLite reads that index.
        conditions.push("(batch IS NULL OR member = 0)");
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
                "search.tasks_text JOIN tasks ON tasks.id = tasks_text.rowid",
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
