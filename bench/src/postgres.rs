//! The record in PostgreSQL at size (`offload-bench postgres`): a throwaway PostgreSQL (the
//! tests' own, `app::ssr::store::testing`), one owner with a million ended tasks written by
//! SQL as `history` writes them into SQLite, then the same pages timed over HTTP, and the
//! API's round trip with every write going through PostgreSQL.

use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use crate::BenchError;
use crate::history::OWNER;

/// Writes `rows` ended tasks of [`OWNER`] (the four types in turn, their outcomes, inputs and
/// lines as `history::fill` makes them) into the migrated database at `url`; returns how long
/// it took, with the search's indexes built afterwards, as a bulk load does.
pub async fn fill(url: &str, rows: u64) -> Result<Duration, BenchError> {
    let failed = |what: &str, e: tokio_postgres::Error| BenchError::Measure {
        what: format!("filling the history in PostgreSQL: {what}"),
        detail: e.to_string(),
    };
    let started = Instant::now();
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| failed("connecting", e))?;
    tokio::spawn(connection);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    client
        .batch_execute(
            "DROP INDEX tasks_input_trigrams;
             DROP INDEX tasks_line_trigrams;
             ALTER TABLE tasks DISABLE TRIGGER tasks_counted;",
        )
        .await
        .map_err(|e| failed("before the load", e))?;
    client
        .execute(
            r#"INSERT INTO tasks (id, session, task_type, input, args, submitted_at_ms, done_seq,
                                  outcome, text, output, finished_at_ms, started_at_ms, worker,
                                  attempts)
               SELECT i, $1, kind, input, args, ended - 5, i, outcome, line,
                      CASE WHEN outcome = 'finished' THEN '1' END, ended, ended - 5,
                      'bench-1/0', 1
               FROM (SELECT i,
                       (ARRAY['fibonacci', 'primes', 'hash-chain', 'mandelbrot'])[i % 4 + 1] AS kind,
                       CASE i % 4
                         WHEN 0 THEN '{"n":' || i % 90 || '}'
                         WHEN 1 THEN '{"n":' || 1000 + i % 100000 || '}'
                         WHEN 2 THEN '{"algorithm":"sha256","rounds":1,"text":"word' || i || '"}'
                         ELSE '{"height":48,"iterations":100,"smooth":false,"width":64,"x":-0.5,"y":0.0,"zoom":1.0}'
                       END AS input,
                       CASE i % 4
                         WHEN 0 THEN (i % 90)::text
                         WHEN 1 THEN (1000 + i % 100000)::text
                         WHEN 2 THEN 'text="word' || i || '", algorithm=sha256, rounds=1'
                         ELSE 'x=-0.5, y=0, zoom=1, width=64, height=48, …'
                       END AS args,
                       CASE i % 4
                         WHEN 0 THEN 'fibonacci(' || i % 90 || ')=… in 0.001sec'
                         WHEN 1 THEN 'primes(' || 1000 + i % 100000 || ')='
                                     || (1000 + i % 100000) / 7 || ' in 0.002sec'
                         WHEN 2 THEN 'sha256×1("word' || i || '")='
                                     || lpad(to_hex(i * 2654435761 % 4294967296), 16, '0')
                                     || ' in 0.000sec'
                         ELSE 'mandelbrot(x=-0.5, y=0, zoom=1, width=64, height=48, …)=64×48 in 0.004sec'
                       END AS line,
                       CASE WHEN i % 1000 = 0 THEN 'lost'
                            WHEN i % 1000 <= 10 THEN 'failed'
                            WHEN i % 1000 <= 15 THEN 'cancelled'
                            ELSE 'finished' END AS outcome,
                       $2::bigint - 86400000 + i * 86400000 / $3::bigint AS ended
                     FROM generate_series(1, $3::bigint) AS i) AS t"#,
            &[&OWNER, &now, &(rows as i64)],
        )
        .await
        .map_err(|e| failed("the rows", e))?;
    client
        .execute(
            "INSERT INTO sessions (id, next_inputs) VALUES ($1, '{}') ON CONFLICT DO NOTHING",
            &[&OWNER],
        )
        .await
        .map_err(|e| failed("the owner", e))?;
    client
        .execute(
            "INSERT INTO owners (session, ended) VALUES ($1, $2)",
            &[&OWNER, &(rows as i64)],
        )
        .await
        .map_err(|e| failed("the owner's count", e))?;
    client
        .batch_execute(&format!(
            "ALTER TABLE tasks ENABLE TRIGGER tasks_counted;
             SELECT setval('done_seq', {rows});
             INSERT INTO meta (key, value) VALUES ('last_task_id', {rows})
                 ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value, excluded.value);
             CREATE INDEX tasks_input_trigrams ON tasks USING gin (input gin_trgm_ops);
             CREATE INDEX tasks_line_trigrams ON tasks USING gin (text gin_trgm_ops);"
        ))
        .await
        .map_err(|e| failed("after the load", e))?;
    // On its own: VACUUM refuses to run in the implicit transaction of several statements.
    client
        .batch_execute("VACUUM ANALYZE tasks")
        .await
        .map_err(|e| failed("analyzing", e))?;
    Ok(started.elapsed())
}
