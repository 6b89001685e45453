//! A record of many owners, written straight into a server's database: a service that has met
//! visitors all year starts on a file where most owners are long gone. Their history is on
//! record; the server must not hold anything per owner in memory for it.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

/// Writes `owners` ended tasks, one per owner (ids `owner-…`), into the database at `db`, whose
/// schema a server made when it started on it once; returns how long it took. The rows end
/// over the last hour, so no retention prunes them.
pub fn fill(db: &Path, owners: u64) -> rusqlite::Result<Duration> {
    let started = Instant::now();
    let mut conn = Connection::open(db)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let first: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT max(id) FROM tasks), 0),
                    coalesce((SELECT value FROM meta WHERE key = 'last_task_id'), 0))",
        [],
        |r| r.get(0),
    )?;
    let mut id = first;
    for chunk in (0..owners).collect::<Vec<_>>().chunks(50_000) {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO tasks (id, session, task_type, input, args, submitted_at_ms,
                                    done_seq, outcome, text, output, finished_at_ms)
                 VALUES (?1, ?2, 'fibonacci', ?3, ?4, ?5, ?1, 'finished', ?6, '55', ?5)",
            )?;
            for &owner in chunk {
                id += 1;
                let n = owner % 40;
                let ended = now - 3_600_000 + (owner as i64 * 3_600_000) / owners.max(1) as i64;
                insert.execute(params![
                    id,
                    format!("owner-{owner:026x}"),
                    format!("{{\"n\":{n}}}"),
                    n.to_string(),
                    ended,
                    format!("fibonacci({n})=… in 0.000sec"),
                ])?;
            }
        }
        tx.commit()?;
    }
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('last_task_id', ?1)
         ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        [id],
    )?;
    index_new_rows(db.parent().unwrap_or(Path::new(".")))?;
    Ok(started.elapsed())
}

/// Indexes for the search the rows written into the database in `dir` since its server last
/// ran, as the server's indexer would in the first seconds after a start (its schema logs each
/// new row in `text_changes`, and the index keeps the last change it took), in one go. Only for
/// rows new to the index: a changed row would be indexed twice.
pub fn index_new_rows(dir: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(dir.join("offload-search.sqlite3"))?;
    conn.execute(
        "ATTACH DATABASE ?1 AS store",
        [dir.join("offload.sqlite3").to_string_lossy()],
    )?;
    conn.execute_batch(
        "BEGIN;
         INSERT INTO tasks_text (rowid, input, text)
             SELECT id, input, text FROM store.tasks WHERE id IN
               (SELECT id FROM store.text_changes
                WHERE seq > (SELECT value FROM marks WHERE key = 'seq'));
         UPDATE marks SET value =
             (SELECT seq FROM store.sqlite_sequence WHERE name = 'text_changes')
             WHERE key = 'seq';
         DELETE FROM store.text_changes;
         COMMIT;",
    )
}
