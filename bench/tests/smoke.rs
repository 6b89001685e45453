//! `make bench` cannot rot: in `make test`, a `--smoke` run (about a second of each figure)
//! starts both Offload stacks, drives chromium, and writes a report of the right shape. The
//! seed's Python stack is left out (`--no-seed`): it is set up by `make bench` only.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The report's keys, written out again here so that a renamed key fails this test.
const FIGURES: [&str; 14] = [
    "roundtrip_p50_ms",
    "roundtrip_p99_ms",
    "tiny_tasks_per_s",
    "batch_members_per_s",
    "batch_page_p50_ms",
    "batch_csv_p50_ms",
    "fib32_ms",
    "fib30x8_ms",
    "cancel_ms",
    "click_to_line_ms",
    "page_first_byte_ms",
    "page_dom_loaded_ms",
    "page_interactive_ms",
    "idle_rss_mb",
];

/// Runs `offload-bench ARGS --out REPORT` from the workspace's root: what it printed, and
/// the report it wrote.
fn bench(args: &[&str]) -> (String, Value) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("latest.json");
    let output = Command::new(env!("CARGO_BIN_EXE_offload-bench"))
        .current_dir(&root)
        // The Playwright runner is found through end2end's node_modules, as in the Makefile.
        .env(
            "PATH",
            format!(
                "{}:{}",
                root.join("end2end/node_modules/.bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("offload-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "offload-bench {args:?} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    (stdout, report)
}

#[test]
fn a_smoke_run_measures_every_offload_figure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let offload = root.join("target/release/offload");
    assert!(
        offload.exists(),
        "{} is missing: run `make build` first",
        offload.display()
    );
    let (stdout, report) = bench(&["run", "--smoke", "--no-seed"]);
    assert!(stdout.contains("| figure |"), "no table printed:\n{stdout}");

    for key in FIGURES {
        let entry = report[key]
            .as_object()
            .unwrap_or_else(|| panic!("no `{key}` in {report:#}"));
        for stack in ["offload_embedded", "offload_nats"] {
            let value = entry[stack]
                .as_f64()
                .unwrap_or_else(|| panic!("no `{key}.{stack}` in {report:#}"));
            assert!(value > 0.0, "{key}.{stack} = {value}");
        }
        assert!(entry.get("seed").is_none(), "the seed was left out");
    }
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["memory_gb"].as_f64().unwrap() > 0.0);
    assert!(!report["machine"]["os"].as_str().unwrap().is_empty());
    assert!(report["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(report["smoke"], true);

    // The NATS flood taken apart: a rate at each bound on the tasks in flight, the CPU of each
    // process, the messages per task and the round trip's stages.
    let flood = &report["nats_flood"];
    let bounds: Vec<u64> = flood["tasks_per_s"]
        .as_array()
        .unwrap_or_else(|| panic!("no nats_flood in {report:#}"))
        .iter()
        .map(|pair| {
            assert!(pair[1].as_f64().unwrap() > 0.0, "{pair}");
            pair[0].as_u64().unwrap()
        })
        .collect();
    assert_eq!(bounds, [64, 256, 512, 1_024]);
    let named = |key: &str| -> Vec<String> {
        flood[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| pair[0].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(named("cpu_us_per_task").contains(&"nats-server".to_owned()));
    assert_eq!(
        named("round_trip_ms"),
        [
            "whole",
            "to JetStream",
            "worker and back",
            "in the app server"
        ]
    );
    assert!(stdout.contains("nats round trip, mean by stage: whole "));
}

/// `offload-bench history` on a small history: every page answers, and the report gets its
/// section beside the other figures (here, in a report of its own).
#[test]
fn a_small_history_run_measures_every_page() {
    let (_, report) = bench(&["history", "--rows", "4000", "--requests", "3"]);
    let history = &report["history"];
    assert_eq!(history["rows"], 4000);
    let keys: Vec<&str> = history["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "all",
            "type",
            "outcome",
            "type_outcome",
            "search_rare",
            "search_common",
            "older"
        ]
    );
    for query in history["queries"].as_array().unwrap() {
        assert!(query["p50_ms"].as_f64().unwrap() > 0.0, "{query}");
    }
    assert!(history["task_page"]["owner_p50_ms"].as_f64().unwrap() > 0.0);
}
