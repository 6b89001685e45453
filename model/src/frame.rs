//! What a dashboard page receives once a second: everything every view needs, so that one
//! stream serves a page however many views it shows.

use serde::{Deserialize, Serialize};

use crate::{TaskState, Totals, WorkerState};

/// Samples kept for timeseries views (two minutes at one a second).
pub const HISTORY: usize = 120;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DashboardFrame {
    pub at_ms: u64,
    /// Where the workers are.
    pub backend: crate::Backend,
    pub cores: usize,
    pub workers: Vec<WorkerRow>,
    pub totals: Totals,
    pub queue_capacity: usize,
    /// One group per task type.
    pub groups: Vec<TaskGroup>,
    /// The app's open batches, a bar each beside the types' (as Dask shows one per task
    /// prefix): `batch 7 · square` and its members by state, those still waiting in the
    /// batch counted as queued. Empty where the app's batches are not known (the dashboard of
    /// `offload cluster`, another process).
    #[serde(default)]
    pub batches: Vec<(String, Totals)>,
    /// Recent tasks for the task stream (newest last).
    pub recent: Vec<TaskBar>,
    /// Recent failures (newest last).
    pub exceptions: Vec<ExceptionRow>,
    /// Oldest first, at most [`HISTORY`].
    pub history: Vec<Sample>,
    /// Bytes moved, by kind of message.
    pub bandwidth: Vec<Transfer>,
    /// Result bytes each worker produced: (worker, bytes).
    pub bandwidth_by_worker: Vec<(usize, u64)>,
    /// True when all transfers happen inside one process (no network).
    pub in_process: bool,
    /// None when no worker has a GPU.
    pub gpus: Option<Vec<GpuRow>>,
    /// Where each profile view's flame graph comes from, or why there is none.
    pub profiles: Profiles,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRow {
    pub id: usize,
    /// The worker process (`host-pid`) of a NATS cluster; None for embedded threads.
    pub process: Option<String>,
    pub state: WorkerState,
    /// E.g. `primes #42`.
    pub current: Option<String>,
    pub tasks_done: u64,
    /// Share of the last sampling interval spent running tasks, 0–100.
    pub busy_percent: f64,
    /// Running tasks (0 or 1 for a thread worker).
    pub processing: usize,
    /// CPU of the worker's host process, 0–100 per core.
    pub cpu_percent: f64,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskGroup {
    pub name: String,
    pub counts: Totals,
    /// Summed over finished tasks.
    pub wait_ms: f64,
    pub compute_ms: f64,
    /// Bytes of results produced.
    pub output_bytes: u64,
    /// Compute time of its recent tasks: median and 99th percentile (ms).
    #[serde(default)]
    pub p50_ms: Option<f64>,
    #[serde(default)]
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskBar {
    pub id: u64,
    pub name: String,
    pub worker: usize,
    /// Running, or how it ended.
    pub state: TaskState,
    pub start_ms: u64,
    pub end_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionRow {
    pub at_ms: u64,
    pub id: u64,
    pub name: String,
    pub worker: Option<usize>,
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at_ms: u64,
    /// The server process (scheduler and embedded workers), 0–100 per core.
    pub process_cpu: f64,
    pub process_memory: u64,
    pub host_memory_used: u64,
    pub host_memory_total: u64,
    /// Host network, bytes per second.
    pub net_rx: f64,
    pub net_tx: f64,
    /// The process's disk I/O, bytes per second.
    pub disk_read: f64,
    pub disk_write: f64,
    /// Per worker, busy share of the interval, 0–100.
    pub worker_busy: Vec<f64>,
    pub queued: u64,
    pub running: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub kind: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuRow {
    pub name: String,
    pub utilization: f64,
    pub memory_used: u64,
    pub memory_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profiles {
    /// Call stacks of worker threads: (frames root first, samples).
    pub workers: Vec<Stack>,
    /// Call stacks of the server's own threads.
    pub server: Vec<Stack>,
    /// Samples taken per second while a profile view is open.
    pub hz: u32,
    /// The server was started without `--profiler`: nothing is ever sampled.
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    pub frames: Vec<String>,
    pub samples: u64,
}
