//! Figures 5 and 6: both apps in Debian's chromium, driven by Playwright
//! (`end2end/bench/stacks.bench.ts`), the stacks alternating click by click and load by load.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::stack::PageKind;

/// One app for the browser benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub key: String,
    pub url: String,
    pub kind: PageKind,
}

/// What the browser measured on one app, medians in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PageFigures {
    /// Click on SUBMIT → the fibonacci(0) line painted in the terminal.
    pub click_to_line_ms: f64,
    /// Navigation → first byte of the page.
    pub first_byte_ms: f64,
    /// Navigation → DOMContentLoaded.
    pub dom_loaded_ms: f64,
    /// Navigation → the page can be used: Offload's "Live" badge (hydrated, stream open);
    /// the seed's SUBMIT button drawn by BokehJS.
    pub interactive_ms: f64,
}

/// Runs the Playwright benchmark against `targets`: `clicks` measured clicks and `loads`
/// cold loads each.
pub fn measure(
    end2end: &Path,
    targets: &[Target],
    clicks: usize,
    loads: usize,
    out: &Path,
) -> Result<BTreeMap<String, PageFigures>, BenchError> {
    let _ = std::fs::remove_file(out);
    let targets_json = serde_json::to_string(targets).expect("targets serialise");
    let status = Command::new("npx")
        .args(["playwright", "test"])
        .current_dir(end2end)
        .env("OFFLOAD_BENCH_TARGETS", targets_json)
        .env("OFFLOAD_BENCH_CLICKS", clicks.to_string())
        .env("OFFLOAD_BENCH_LOADS", loads.to_string())
        .env("OFFLOAD_BENCH_OUT", out)
        .status()
        .map_err(|source| BenchError::Spawn {
            what: "npx playwright test (run `make node`)".into(),
            source,
        })?;
    if !status.success() {
        return Err(BenchError::Measure {
            what: "the browser benchmark".into(),
            detail: format!("npx playwright test: {status}"),
        });
    }
    let text = std::fs::read_to_string(out).map_err(BenchError::io(out))?;
    serde_json::from_str(&text).map_err(|e| BenchError::BadReport {
        path: out.to_path_buf(),
        detail: e.to_string(),
    })
}
