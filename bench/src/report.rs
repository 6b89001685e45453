//! The run's report: `target/bench/latest.json`, the table printed at the end of a run, and the
//! README's figures table, generated from the JSON so that it never drifts from a measurement.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::BenchError;

/// The stacks, as keys of each figure's object.
pub const STACKS: [&str; 3] = ["seed", "offload_embedded", "offload_nats"];

/// Whether more is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// One figure of the report.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// Its key in the JSON.
    pub key: &'static str,
    /// What it is, for a reader.
    pub label: &'static str,
    pub unit: &'static str,
    pub better: Better,
}

/// Every figure, in the order of the table.
pub const FIGURES: [Figure; 16] = [
    Figure {
        key: "roundtrip_p50_ms",
        label: "submit → result round trip, fibonacci(0), p50",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "roundtrip_p99_ms",
        label: "same, p99",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "api_roundtrip_p50_ms",
        label: "API: `POST /api/v1/tasks` → its result event, fibonacci(0), p50",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "api_roundtrip_p99_ms",
        label: "same, p99",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "tiny_tasks_per_s",
        label: "10,000 tiny tasks (fibonacci(i mod 10)), throughput",
        unit: "tasks/s",
        better: Better::Higher,
    },
    Figure {
        key: "batch_members_per_s",
        label: "a map of 10,000 fibonacci(i mod 10) from one request to the last member's result (Offload: `POST /api/v1/batches`, every member recorded; the seed: `client.map` + `gather`)",
        unit: "members/s",
        better: Better::Higher,
    },
    Figure {
        key: "batch_page_p50_ms",
        label: "a 10,000-member batch's page (counts, the first 100 rows, the plot), p50",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "batch_csv_p50_ms",
        label: "the same batch's results as CSV, 10,000 rows, p50",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "fib32_ms",
        label: "fibonacci(32) in a worker, submit → result",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "fib30x8_ms",
        label: "8 × fibonacci(30) on 4 workers, wall time",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "cancel_ms",
        label: "cancel a running fibonacci(60) → stopped, median (Dask cannot stop a running task)",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "click_to_line_ms",
        label: "browser: click → terminal line, fibonacci(0), median",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "page_first_byte_ms",
        label: "browser: task page, first byte, median",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "page_dom_loaded_ms",
        label: "browser: task page, DOM content loaded, median",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "page_interactive_ms",
        label: "browser: task page, interactive, median",
        unit: "ms",
        better: Better::Lower,
    },
    Figure {
        key: "idle_rss_mb",
        label: "idle resident memory, every process of the stack",
        unit: "MB",
        better: Better::Lower,
    },
];

/// The machine the run was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gb: f64,
    pub os: String,
    pub cpu: String,
}

impl Machine {
    pub fn this() -> Self {
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gb: (system.total_memory() as f64 / 1e9 * 10.0).round() / 10.0,
            os: sysinfo::System::long_os_version().unwrap_or_else(|| "unknown".into()),
            cpu: system
                .cpus()
                .first()
                .map_or_else(|| "unknown".into(), |c| c.brand().trim().to_string()),
        }
    }
}

/// One run's figures: `figures[key][stack]`, absent where a stack was not measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: Machine,
    /// When the run started, RFC 3339.
    pub at: String,
    /// Whether it was a `--smoke` run (figures not to be quoted).
    pub smoke: bool,
    values: Map<String, Value>,
    /// `offload-bench history`'s figures, when it ran: `{"rows", "fill_s", "start_s",
    /// "queries": [{"key", "label", "p50_ms", "p99_ms"}], "task_page": {...}}`.
    pub history: Option<Value>,
    /// `offload-bench owners`'s figures, when it ran: `{"owners", "fill_s", "start_s",
    /// "rss_start_mb", "rss_after_mb", "visitors", "p50_ms", "p99_ms", "at"}`.
    pub owners: Option<Value>,
    /// The NATS flood taken apart (see [`crate::flood::Breakdown`]), when it ran.
    pub nats_flood: Option<Value>,
    /// `offload-bench postgres`'s figures, when it ran: the history's (as `history`'s) with
    /// the record in PostgreSQL, and `"api_p50_ms"`, `"api_p99_ms"`.
    pub postgres: Option<Value>,
    /// `offload-bench failover`'s figures, when it ran: a load round through HAProxy in
    /// front of a server and its standby (`"sessions"`, `"results"`, `"errors"`, `"p50_ms"`,
    /// `"p99_ms"`) and each takeover's time (`"takeovers_ms"`, `"takeover_p50_ms"`).
    pub failover: Option<Value>,
}

impl Report {
    pub fn new(machine: Machine, smoke: bool) -> Self {
        let now = time::OffsetDateTime::now_utc();
        let at = now
            .replace_nanosecond(0)
            .unwrap_or(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self {
            machine,
            at,
            smoke,
            values: Map::new(),
            history: None,
            owners: None,
            nats_flood: None,
            postgres: None,
            failover: None,
        }
    }

    pub fn set(&mut self, figure: &str, stack: &str, value: f64) {
        let entry = self
            .values
            .entry(figure)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[stack] = json!(value);
    }

    pub fn get(&self, figure: &str, stack: &str) -> Option<f64> {
        self.values.get(figure)?.get(stack)?.as_f64()
    }

    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for figure in FIGURES {
            let mut stacks = Map::new();
            for stack in STACKS {
                if let Some(v) = self.get(figure.key, stack) {
                    stacks.insert(stack.into(), json!(v));
                }
            }
            out.insert(figure.key.into(), Value::Object(stacks));
        }
        out.insert("machine".into(), json!(self.machine));
        out.insert("at".into(), json!(self.at));
        out.insert("smoke".into(), json!(self.smoke));
        if let Some(history) = &self.history {
            out.insert("history".into(), history.clone());
        }
        if let Some(owners) = &self.owners {
            out.insert("owners".into(), owners.clone());
        }
        if let Some(flood) = &self.nats_flood {
            out.insert("nats_flood".into(), flood.clone());
        }
        if let Some(postgres) = &self.postgres {
            out.insert("postgres".into(), postgres.clone());
        }
        if let Some(failover) = &self.failover {
            out.insert("failover".into(), failover.clone());
        }
        Value::Object(out)
    }

    pub fn from_json(path: &Path, value: &Value) -> Result<Self, BenchError> {
        let bad = |detail: String| BenchError::BadReport {
            path: path.to_path_buf(),
            detail,
        };
        let machine = serde_json::from_value(value["machine"].clone())
            .map_err(|e| bad(format!("machine: {e}")))?;
        let at = value["at"]
            .as_str()
            .ok_or_else(|| bad("no `at`".into()))?
            .to_string();
        let mut report = Self {
            machine,
            at,
            smoke: value["smoke"].as_bool().unwrap_or(false),
            values: Map::new(),
            history: value.get("history").cloned(),
            owners: value.get("owners").cloned(),
            nats_flood: value.get("nats_flood").cloned(),
            postgres: value.get("postgres").cloned(),
            failover: value.get("failover").cloned(),
        };
        for figure in FIGURES {
            let entry = value
                .get(figure.key)
                .and_then(Value::as_object)
                .ok_or_else(|| bad(format!("no `{}`", figure.key)))?;
            for stack in STACKS {
                if let Some(v) = entry.get(stack).and_then(Value::as_f64) {
                    report.set(figure.key, stack, v);
                }
            }
        }
        Ok(report)
    }

    pub fn write(&self, path: &Path) -> Result<(), BenchError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(BenchError::io(dir))?;
        }
        let text = serde_json::to_string_pretty(&self.to_json()).expect("a JSON value");
        std::fs::write(path, text + "\n").map_err(BenchError::io(path))
    }

    pub fn read(path: &Path) -> Result<Self, BenchError> {
        let text = std::fs::read_to_string(path).map_err(BenchError::io(path))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| BenchError::BadReport {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Self::from_json(path, &value)
    }

    /// How many times better Offload's `stack` is than the seed on `figure`.
    pub fn ratio(&self, figure: &Figure, stack: &str) -> Option<f64> {
        let (seed, ours) = (self.get(figure.key, "seed")?, self.get(figure.key, stack)?);
        let r = match figure.better {
            Better::Lower => seed / ours,
            Better::Higher => ours / seed,
        };
        r.is_finite().then_some(r)
    }

    /// The table as Markdown: each figure, each stack, and Offload's ratio to the seed.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| figure | seed (Panel + Dask) | Offload embedded | vs seed | Offload on NATS | vs seed |\n\
             |---|---|---|---|---|---|\n",
        );
        for figure in &FIGURES {
            let cell = |stack| {
                self.get(figure.key, stack)
                    .map_or_else(|| "–".into(), |v| format!("{} {}", number(v), figure.unit))
            };
            let ratio = |stack| {
                self.ratio(figure, stack)
                    .map_or_else(|| "–".into(), |r| format!("{}×", number(r)))
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                figure.label,
                cell("seed"),
                cell("offload_embedded"),
                ratio("offload_embedded"),
                cell("offload_nats"),
                ratio("offload_nats"),
            ));
        }
        out.push_str(&format!(
            "\n{}; {} cores ({}), {} GB; {}. \"vs seed\": how many times better than the seed \
             (faster, more, or less memory).\n",
            if self.smoke {
                "A smoke run: not figures to quote"
            } else {
                "Measured by `make bench` in one run"
            },
            self.machine.cores,
            self.machine.cpu,
            number(self.machine.memory_gb),
            self.machine.os,
        ));
        out.push_str(&format!("Run at {}.\n", self.at));
        if let Some(history) = &self.history {
            out.push_str(&history_markdown(history, "SQLite"));
        }
        if let Some(postgres) = &self.postgres {
            out.push_str(&history_markdown(postgres, "PostgreSQL (`--database`)"));
            out.push_str(&format!(
                "\nThe API's round trip (submit, then its result on the event stream) with the record in PostgreSQL: p50 {} ms, p99 {} ms.\n",
                number(postgres["api_p50_ms"].as_f64().unwrap_or(0.0)),
                number(postgres["api_p99_ms"].as_f64().unwrap_or(0.0)),
            ));
        }
        if let Some(owners) = &self.owners {
            out.push_str(&owners_markdown(owners));
        }
        if let Some(failover) = &self.failover {
            let number_of = |key: &str| number(failover[key].as_f64().unwrap_or(0.0));
            out.push_str(&format!(
                "
A server and its standby behind HAProxy (`offload-bench failover`): {} sessions × 5 fibonacci(10) through it, {} errors, submit→result p50 {} ms, p99 {} ms (straight to the server: p50 {} ms, p99 {} ms); the server that writes killed, a new visitor's task answered after p50 {} ms.\n",
                failover["sessions"],
                failover["errors"],
                number_of("p50_ms"),
                number_of("p99_ms"),
                number_of("direct_p50_ms"),
                number_of("direct_p99_ms"),
                number_of("takeover_p50_ms"),
            ));
        }
        out
    }

    /// Replaces the README's text between the bench markers with this report's table.
    pub fn rewrite_readme(&self, readme: &Path) -> Result<(), BenchError> {
        const BEGIN: &str = "<!-- bench:begin (generated by `make bench-readme`) -->";
        const END: &str = "<!-- bench:end -->";
        let text = std::fs::read_to_string(readme).map_err(BenchError::io(readme))?;
        let bad = |detail: &str| BenchError::BadReport {
            path: readme.to_path_buf(),
            detail: detail.into(),
        };
        let start = text
            .find(BEGIN)
            .ok_or_else(|| bad("no bench:begin marker"))?
            + BEGIN.len();
        let end = start
            + text[start..]
                .find(END)
                .ok_or_else(|| bad("no bench:end marker after bench:begin"))?;
        let new = format!("{}\n{}{}", &text[..start], self.markdown(), &text[end..]);
        std::fs::write(readme, new).map_err(BenchError::io(readme))
    }
}

/// The history's table: each page's p50 and p99, from `offload-bench history` (or `postgres`),
/// with the record in `store`.
fn history_markdown(history: &Value, store: &str) -> String {
    let ms = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "–".into(), |v| format!("{} ms", number(v)))
    };
    let rows = history["rows"].as_f64().unwrap_or(0.0);
    let mut out = format!(
        "\n| history page (`GET /history`, 50 rows), one owner with {} ended tasks of 4 types, in {store} | p50 | p99 |\n|---|---|---|\n",
        number(rows)
    );
    for query in history["queries"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            query["label"].as_str().unwrap_or_default(),
            ms(&query["p50_ms"]),
            ms(&query["p99_ms"]),
        ));
    }
    let page = &history["task_page"];
    out.push_str(&format!(
        "| the task page `/` of that owner (its terminal: 1,000 lines) | {} | {} |\n\
         | the task page `/` of a newcomer, same server | {} | {} |\n",
        ms(&page["owner_p50_ms"]),
        ms(&page["owner_p99_ms"]),
        ms(&page["newcomer_p50_ms"]),
        ms(&page["newcomer_p99_ms"]),
    ));
    out.push_str(&format!(
        "\nThe million rows written in {} s (with their search indexes); the server then started in {} s. Run at {}.\n",
        number(history["fill_s"].as_f64().unwrap_or(0.0)),
        number(history["start_s"].as_f64().unwrap_or(0.0)),
        history["at"].as_str().unwrap_or_default(),
    ));
    out
}

/// The memory of a server whose record holds many owners, from `offload-bench owners`.
fn owners_markdown(owners: &Value) -> String {
    let figure = |key: &str| number(owners[key].as_f64().unwrap_or(0.0));
    format!(
        "\n| embedded server on a record of {} ended tasks of {} different owners | resident memory (goal ≤ 40 MB) |\n|---|---|\n\
         | started on it | {} MB |\n\
         | after a round of {} new visitors (× 5 tiny tasks: p50 {} ms, p99 {} ms), their sessions expired | {} MB |\n\
         \nThe rows written in {} s; the server then started in {} s. Run at {}.\n",
        figure("owners"),
        figure("owners"),
        figure("rss_start_mb"),
        figure("visitors"),
        figure("p50_ms"),
        figure("p99_ms"),
        figure("rss_after_mb"),
        figure("fill_s"),
        figure("start_s"),
        owners["at"].as_str().unwrap_or_default(),
    )
}

/// Three significant figures, thousands separated: 0.0281, 10.8, 1,001, 569,000.
pub fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = v.abs().log10().floor() as i32;
    if digits >= 3 {
        let rounded = (v / 10f64.powi(digits - 2)).round() * 10f64.powi(digits - 2);
        let s = format!("{:.0}", rounded);
        let (sign, s) = s.strip_prefix('-').map_or(("", s.as_str()), |t| ("-", t));
        let mut grouped = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{sign}{grouped}")
    } else {
        let decimals = (2 - digits).max(0) as usize;
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            cores: 2,
            memory_gb: 24.0,
            os: "Linux".into(),
            cpu: "test".into(),
        }
    }

    #[test]
    fn numbers_keep_three_significant_figures() {
        assert_eq!(number(0.02814), "0.0281");
        assert_eq!(number(10.84), "10.8");
        assert_eq!(number(1001.0), "1,000");
        assert_eq!(number(568_912.0), "569,000");
        assert_eq!(number(437.2), "437");
        assert_eq!(number(1_234_567.0), "1,230,000");
    }

    #[test]
    fn ratios_say_how_many_times_better() {
        let mut r = Report::new(machine(), false);
        r.set("roundtrip_p50_ms", "seed", 10.0);
        r.set("roundtrip_p50_ms", "offload_embedded", 0.05);
        r.set("tiny_tasks_per_s", "seed", 1_000.0);
        r.set("tiny_tasks_per_s", "offload_embedded", 500_000.0);
        assert_eq!(r.ratio(&FIGURES[0], "offload_embedded"), Some(200.0));
        assert_eq!(r.ratio(&FIGURES[4], "offload_embedded"), Some(500.0));
        assert_eq!(r.ratio(&FIGURES[0], "offload_nats"), None);
    }

    #[test]
    fn the_json_round_trips_and_has_every_key() {
        let mut r = Report::new(machine(), true);
        for figure in FIGURES {
            r.set(figure.key, "offload_embedded", 1.5);
        }
        let json = r.to_json();
        for figure in FIGURES {
            assert_eq!(json[figure.key]["offload_embedded"], 1.5);
            assert!(json[figure.key].get("seed").is_none());
        }
        let back = Report::from_json(Path::new("x"), &json).unwrap();
        assert_eq!(back.to_json(), json);
        assert!(Report::from_json(Path::new("x"), &json!({"at": "now"})).is_err());
    }

    #[test]
    fn the_readme_table_is_replaced_between_its_markers_only() {
        let dir = tempfile::tempdir().unwrap();
        let readme = dir.path().join("README.md");
        std::fs::write(
            &readme,
            "# X\n<!-- bench:begin (generated by `make bench-readme`) -->\nold\n<!-- bench:end -->\nafter\n",
        )
        .unwrap();
        let mut r = Report::new(machine(), false);
        r.set("fib32_ms", "seed", 220.0);
        r.set("fib32_ms", "offload_embedded", 5.0);
        r.rewrite_readme(&readme).unwrap();
        let text = std::fs::read_to_string(&readme).unwrap();
        assert!(text.starts_with("# X\n"));
        assert!(text.ends_with("<!-- bench:end -->\nafter\n"));
        assert!(!text.contains("old"));
        assert!(text.contains("| 220 ms | 5.00 ms | 44.0× |"), "{text}");
        std::fs::write(&readme, "no markers").unwrap();
        assert!(r.rewrite_readme(&readme).is_err());
    }
}
