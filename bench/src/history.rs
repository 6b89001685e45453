//! The history at size (`offload-bench history`): one owner with a million ended tasks of the
//! four types, written straight into a server's database, then the history's pages measured
//! over HTTP with each filter, with a search and on a later page; and the task page of that
//! owner beside a new one's, to show that a long history does not slow it.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::BenchError;

/// The owner's session cookie value (a browser's: 32 hex digits).
pub const OWNER: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
/// A browser that has never submitted, for the task page's baseline.
pub const NEWCOMER: &str = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";

/// One measured page: its key in the report, what it is, and its path.
pub struct Query {
    pub key: &'static str,
    pub label: String,
    pub path: String,
}

/// The pages measured, for a history of `rows` tasks.
pub fn queries(rows: u64) -> Vec<Query> {
    // A hash chain's input (rows 2, 6, 10, …), half-way back.
    let rare = format!("word{}", rows / 2 - rows / 2 % 4 + 2);
    let query = |key, label: &str, path: &str| Query {
        key,
        label: label.to_owned(),
        path: path.to_owned(),
    };
    vec![
        query("all", "every task, newest first", "/history"),
        query(
            "type",
            "of one type (mandelbrot, a quarter)",
            "/history?type=mandelbrot",
        ),
        query(
            "outcome",
            "one outcome (lost, 1 in 1,000)",
            "/history?outcome=lost",
        ),
        query(
            "type_outcome",
            "a type and an outcome (primes, failed)",
            "/history?type=primes&outcome=failed",
        ),
        query(
            "search_rare",
            &format!("search for one task's input ({rare:?})"),
            &format!("/history?q={rare}"),
        ),
        query(
            "search_common",
            "search for a word in 1 task in 4 (\"sha256\")",
            "/history?q=sha256",
        ),
        query(
            "older",
            "a page half-way back (cursor)",
            &format!("/history?before={}", rows / 2),
        ),
    ]
}

/// The task's input, line and type for row `i`: the four types in turn.
fn task(i: u64) -> (&'static str, Value, String, String) {
    match i % 4 {
        0 => {
            let n = i % 90;
            (
                "fibonacci",
                json!({ "n": n }),
                n.to_string(),
                format!("fibonacci({n})=… in 0.001sec"),
            )
        }
        1 => {
            let n = 1_000 + i % 100_000;
            (
                "primes",
                json!({ "n": n }),
                n.to_string(),
                format!("primes({n})={} in 0.002sec", n / 7),
            )
        }
        2 => {
            let text = format!("word{i}");
            (
                "hash-chain",
                json!({ "text": text, "algorithm": "sha256", "rounds": 1 }),
                format!("text={text:?}, algorithm=sha256, rounds=1"),
                format!(
                    "sha256×1({text:?})={:016x} in 0.000sec",
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ),
            )
        }
        _ => (
            "mandelbrot",
            json!({ "x": -0.5, "y": 0.0, "zoom": 1.0, "width": 64, "height": 48, "iterations": 100, "smooth": false }),
            "x=-0.5, y=0, zoom=1, width=64, height=48, …".to_owned(),
            "mandelbrot(x=-0.5, y=0, zoom=1, width=64, height=48, …)=64×48 in 0.004sec".to_owned(),
        ),
    }
}

/// Writes `rows` ended tasks of [`OWNER`] into the database at `db` (its schema made by a
/// server that ran once on it), ending over the last day; returns how long it took.
pub fn fill(db: &Path, rows: u64) -> Result<Duration, BenchError> {
    let failed = |what: &str, e: rusqlite::Error| BenchError::Measure {
        what: format!("filling the history: {what}"),
        detail: e.to_string(),
    };
    let started = Instant::now();
    let mut conn = Connection::open(db).map_err(|e| failed("opening", e))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
        .map_err(|e| failed("pragmas", e))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let day_ms = 86_400_000i64;
    conn.execute(
        "INSERT OR IGNORE INTO sessions (id, next_inputs) VALUES (?1, '{}')",
        [OWNER],
    )
    .map_err(|e| failed("the owner", e))?;
    for chunk in (1..=rows).collect::<Vec<_>>().chunks(50_000) {
        let tx = conn.transaction().map_err(|e| failed("a transaction", e))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO tasks (id, session, task_type, input, args, submitted_at_ms,
                                        done_seq, outcome, text, output, finished_at_ms,
                                        started_at_ms, worker, attempts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?1, ?7, ?8, ?9, ?10, ?6, 'bench-1/0', 1)",
                )
                .map_err(|e| failed("preparing", e))?;
            for &i in chunk {
                let (kind, input, args, line) = task(i);
                let outcome = match i % 1_000 {
                    0 => "lost",
                    1..=10 => "failed",
                    11..=15 => "cancelled",
                    _ => "finished",
                };
                let ended = now - day_ms + (i as i64 * day_ms) / rows as i64;
                insert
                    .execute(params![
                        i as i64,
                        OWNER,
                        kind,
                        input.to_string(),
                        args,
                        ended - 5,
                        outcome,
                        line,
                        (outcome == "finished").then_some("1"),
                        ended,
                    ])
                    .map_err(|e| failed("a row", e))?;
            }
        }
        tx.commit().map_err(|e| failed("a commit", e))?;
    }
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('last_task_id', ?1)
         ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        [rows as i64],
    )
    .map_err(|e| failed("the last id", e))?;
    load::owners::index_new_rows(db.parent().unwrap_or(Path::new(".")))
        .map_err(|e| failed("the search index", e))?;
    Ok(started.elapsed())
}

/// `count` GETs of `path` as the browser with session `cookie`, one at a time, after a few
/// to warm up: (p50, p99) in ms. Each must answer 200 with a history table or a task page.
pub async fn measure(
    base: &str,
    cookie: &str,
    path: &str,
    count: usize,
) -> Result<(f64, f64), BenchError> {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut took = Vec::with_capacity(count);
    for i in 0..count + 5 {
        let started = Instant::now();
        let response = client
            .get(&url)
            .header("cookie", format!("offload_session={cookie}"))
            .send()
            .await
            .map_err(|e| BenchError::Measure {
                what: format!("GET {path}"),
                detail: e.to_string(),
            })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() || !(body.contains("<tbody>") || body.contains("Task queue")) {
            return Err(BenchError::Measure {
                what: format!("GET {path}"),
                detail: format!("{status}: {}", body.chars().take(300).collect::<String>()),
            });
        }
        if i >= 5 {
            took.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    took.sort_by(f64::total_cmp);
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}
