//! Point-in-time statistics of a cluster, for dashboards.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Submitter, TaskId, TaskState};

pub use model::{Totals, WorkerState};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub id: usize,
    pub state: WorkerState,
    pub current: Option<TaskId>,
    pub current_task: Option<Arc<str>>,
    /// When the current task started (ms since the Unix epoch).
    pub current_started_at_ms: Option<u64>,
    pub tasks_done: u64,
    /// Time spent on finished tasks since the worker started (add the current task's
    /// elapsed time for the full figure).
    pub busy_ms: f64,
    /// Bytes of results this worker has produced.
    pub output_bytes: u64,
    /// The process it belongs to (`host-pid`), for workers of a NATS cluster.
    #[serde(default)]
    pub process: Option<Arc<str>>,
}

impl WorkerStats {
    /// A worker that has done nothing yet.
    pub fn idle(id: usize) -> Self {
        Self {
            id,
            state: WorkerState::Idle,
            current: None,
            current_task: None,
            current_started_at_ms: None,
            tasks_done: 0,
            busy_ms: 0.0,
            output_bytes: 0,
            process: None,
        }
    }
}

/// Everything known about the tasks of one type (one [`crate::Task::NAME`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    pub name: Arc<str>,
    /// Now.
    pub queued: u64,
    /// Now.
    pub running: u64,
    pub finished: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Of the failed, those no worker answered for.
    #[serde(default)]
    pub lost: u64,
    /// Summed time tasks waited in the queue before a worker took them.
    pub wait_ms: f64,
    /// Summed time workers spent on these tasks.
    pub compute_ms: f64,
    /// Bytes of encoded inputs submitted and results produced.
    pub input_bytes: u64,
    pub output_bytes: u64,
    /// Compute times of the last [`GroupStats::SAMPLE`] tasks that ended on a worker (ms),
    /// for percentiles.
    #[serde(default)]
    pub recent_ms: VecDeque<f64>,
}

impl GroupStats {
    /// Compute times kept per type.
    pub const SAMPLE: usize = 256;

    /// Keeps one more compute time, dropping the oldest past [`GroupStats::SAMPLE`].
    pub fn sample(&mut self, compute_ms: f64) {
        if self.recent_ms.len() >= Self::SAMPLE {
            self.recent_ms.pop_front();
        }
        self.recent_ms.push_back(compute_ms);
    }

    /// The `q`-quantile (0.5: the median) of the recent compute times, if any ended.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        let mut sorted: Vec<f64> = self.recent_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let last = sorted.len().checked_sub(1)?;
        Some(sorted[((last as f64) * q.clamp(0.0, 1.0)).round() as usize])
    }

    /// Adds another server's figures for the same task type.
    pub fn add(&mut self, other: &Self) {
        self.queued += other.queued;
        self.running += other.running;
        self.finished += other.finished;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.lost += other.lost;
        self.wait_ms += other.wait_ms;
        self.compute_ms += other.compute_ms;
        self.input_bytes += other.input_bytes;
        self.output_bytes += other.output_bytes;
        for &ms in &other.recent_ms {
            self.sample(ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GroupStats;

    #[test]
    fn percentiles_come_from_the_recent_sample_merged_across_servers() {
        let mut a = GroupStats::default();
        assert_eq!(a.percentile(0.5), None);
        for ms in 1..=300 {
            a.sample(ms as f64);
        }
        assert_eq!(a.recent_ms.len(), GroupStats::SAMPLE);
        assert_eq!(a.recent_ms[0], 45.0, "the oldest went first");
        let mut b = GroupStats::default();
        b.sample(10_000.0);
        a.add(&b);
        assert_eq!(a.percentile(1.0), Some(10_000.0));
        assert_eq!(a.percentile(0.5), Some(174.0));
    }
}

/// A task that has ended, kept in a bounded ring for task-stream views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedTask {
    pub id: TaskId,
    pub name: Arc<str>,
    pub submitter: Submitter,
    pub state: TaskState,
    /// None when it was cancelled before a worker took it.
    pub worker: Option<usize>,
    pub queued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub ended_at_ms: u64,
    pub error: Option<String>,
    pub output_bytes: usize,
}

/// CPU and memory of the process hosting the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// Since the previous snapshot; 100 % per fully used core.
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    pub cores: usize,
}

/// One GPU of the workers' host, read through NVML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuStats {
    pub name: String,
    /// 0–100.
    pub utilization_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
}

/// One worker process: the app server itself with embedded workers, or an `offload worker`
/// (or `offload cluster`) process of a NATS cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerProcess {
    /// `host-pid`.
    pub name: String,
    pub host: String,
    pub pid: u32,
    /// Its worker threads.
    pub threads: usize,
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    /// What its threads run now, e.g. `primes #42`.
    pub running: Vec<String>,
    pub tasks_done: u64,
    /// When it last reported (ms since the Unix epoch); now for embedded workers.
    pub heartbeat_ms: u64,
    /// The task types it runs, each with the first digits of its input schema's hash
    /// (`primes 3f2a9c1e`): which worker can take which task, in a cluster of mixed builds.
    #[serde(default)]
    pub runs: Vec<String>,
}

impl WorkerProcess {
    /// The row for `threads` of one process.
    pub fn of(
        name: String,
        host: String,
        pid: u32,
        threads: &[WorkerStats],
        process: ProcessStats,
        heartbeat_ms: u64,
    ) -> Self {
        Self {
            name,
            host,
            pid,
            threads: threads.len(),
            cpu_percent: process.cpu_percent,
            memory_bytes: process.memory_bytes,
            running: threads
                .iter()
                .filter_map(|t| Some(format!("{} #{}", t.current_task.as_ref()?, t.current?)))
                .collect(),
            tasks_done: threads.iter().map(|t| t.tasks_done).sum(),
            heartbeat_ms,
            runs: Vec::new(),
        }
    }

    /// The same row, saying which task types it runs.
    pub fn running_types<'a>(
        mut self,
        types: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        self.runs = types
            .into_iter()
            .map(|(name, schema)| format!("{name} {}", &schema[..schema.len().min(8)]))
            .collect();
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStats {
    pub at_ms: u64,
    pub workers: Vec<WorkerStats>,
    pub totals: Totals,
    pub queue_capacity: usize,
    /// Oldest first.
    pub recent: Vec<FinishedTask>,
    /// Per task type, by name.
    pub groups: Vec<GroupStats>,
    /// The most recent failed tasks, oldest first.
    pub failures: Vec<FinishedTask>,
    pub process: ProcessStats,
    /// Empty when no worker has a GPU (or NVIDIA's driver is not installed).
    pub gpus: Vec<GpuStats>,
    /// The processes the workers live in.
    pub processes: Vec<WorkerProcess>,
}
