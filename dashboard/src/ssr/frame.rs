//! One [`DashboardFrame`] from one snapshot of the cluster's stats and the host's counters:
//! pure functions, one for each part of the frame, and the little the sampler remembers from
//! one frame to the next ([`Sampler`]: the history of samples, each worker's busy time).

use std::collections::{HashMap, VecDeque};

use cluster::{Backend, ClusterStats, WorkerState};
use model::frame::{
    DashboardFrame, ExceptionRow, GpuRow, HISTORY, Profiles, Sample, TaskBar, TaskGroup, Transfer,
    WorkerRow,
};
use model::{TaskState, Totals};

/// How far back the task stream looks.
const TASK_STREAM_WINDOW_MS: u64 = 60_000;
/// Most bars the task stream holds (the newest).
const TASK_STREAM_MAX: usize = 500;

/// The host's counters over the last interval: memory now, and bytes moved since the last
/// sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostSample {
    pub memory_used: u64,
    pub memory_total: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub disk_read: u64,
    pub disk_written: u64,
}

/// What one frame needs from the ones before it.
#[derive(Debug, Default)]
pub struct Sampler {
    /// The newest [`HISTORY`] samples, oldest first.
    history: VecDeque<Sample>,
    /// Each worker's busy milliseconds at the last frame.
    last_busy: HashMap<usize, f64>,
    /// When the last frame was taken (None before the first).
    last_at_ms: Option<u64>,
}

impl Sampler {
    /// The frame of `stats`, taken `host` and `profiles` beside it.
    pub fn frame(
        &mut self,
        stats: &ClusterStats,
        host: HostSample,
        backend: Backend,
        profiles: Profiles,
    ) -> DashboardFrame {
        let now = stats.at_ms;
        let dt_ms = now.saturating_sub(self.last_at_ms.unwrap_or(now)).max(1) as f64;
        self.last_at_ms = Some(now);
        let workers = worker_rows(stats, dt_ms, &mut self.last_busy);
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(sample(stats, host, dt_ms, &workers));
        DashboardFrame {
            at_ms: now,
            backend,
            cores: stats.process.cores,
            totals: stats.totals,
            queue_capacity: stats.queue_capacity,
            recent: task_bars(stats),
            exceptions: exceptions(stats),
            history: self.history.iter().cloned().collect(),
            bandwidth: bandwidth(stats),
            bandwidth_by_worker: stats
                .workers
                .iter()
                .map(|w| (w.id, w.output_bytes))
                .collect(),
            in_process: backend == Backend::Embedded,
            gpus: gpu_rows(stats),
            profiles,
            groups: task_groups(stats),
            // The app's, filled in by the feed (the cluster's stats do not know them).
            batches: Vec::new(),
            workers,
        }
    }
}

/// Each worker, with its share of the last `dt_ms` spent busy (from its busy time now and at
/// the last frame, which `last_busy` keeps).
fn worker_rows(
    stats: &ClusterStats,
    dt_ms: f64,
    last_busy: &mut HashMap<usize, f64>,
) -> Vec<WorkerRow> {
    let now = stats.at_ms;
    stats
        .workers
        .iter()
        .map(|w| {
            let running_ms = w
                .current_started_at_ms
                .map_or(0.0, |s| now.saturating_sub(s) as f64);
            let busy = w.busy_ms + running_ms;
            let before = last_busy.insert(w.id, busy).unwrap_or(busy);
            WorkerRow {
                id: w.id,
                process: w.process.as_deref().map(str::to_owned),
                state: w.state,
                current: w
                    .current
                    .zip(w.current_task.as_ref())
                    .map(|(id, name)| format!("{name} #{id}")),
                tasks_done: w.tasks_done,
                busy_percent: ((busy - before) / dt_ms * 100.0).clamp(0.0, 100.0),
                processing: usize::from(w.state == WorkerState::Busy),
                cpu_percent: f64::from(stats.process.cpu_percent),
                memory_bytes: stats.process.memory_bytes,
            }
        })
        .collect()
}

/// The task stream: tasks that ended in the last minute, then those running now, at most
/// [`TASK_STREAM_MAX`] (the newest).
fn task_bars(stats: &ClusterStats) -> Vec<TaskBar> {
    let now = stats.at_ms;
    let ended = stats
        .recent
        .iter()
        .filter(|t| t.ended_at_ms + TASK_STREAM_WINDOW_MS >= now)
        .filter_map(|t| {
            Some(TaskBar {
                id: t.id.0,
                name: t.name.to_string(),
                worker: t.worker?,
                state: t.state,
                start_ms: t.started_at_ms?,
                end_ms: t.ended_at_ms,
            })
        });
    let running = stats.workers.iter().filter_map(|w| {
        Some(TaskBar {
            id: w.current?.0,
            name: w.current_task.as_deref()?.to_owned(),
            worker: w.id,
            state: TaskState::Running,
            start_ms: w.current_started_at_ms?,
            end_ms: now,
        })
    });
    let mut bars: Vec<TaskBar> = ended.chain(running).collect();
    let skip = bars.len().saturating_sub(TASK_STREAM_MAX);
    bars.drain(..skip);
    bars
}

/// This interval's point of every time series.
fn sample(stats: &ClusterStats, host: HostSample, dt_ms: f64, workers: &[WorkerRow]) -> Sample {
    let per_sec = |bytes: u64| bytes as f64 * 1000.0 / dt_ms;
    Sample {
        at_ms: stats.at_ms,
        process_cpu: f64::from(stats.process.cpu_percent),
        process_memory: stats.process.memory_bytes,
        host_memory_used: host.memory_used,
        host_memory_total: host.memory_total,
        net_rx: per_sec(host.net_rx),
        net_tx: per_sec(host.net_tx),
        disk_read: per_sec(host.disk_read),
        disk_write: per_sec(host.disk_written),
        worker_busy: workers.iter().map(|w| w.busy_percent).collect(),
        queued: stats.totals.queued,
        running: stats.totals.running,
    }
}

/// One group per task type, as Dask groups tasks by prefix.
fn task_groups(stats: &ClusterStats) -> Vec<TaskGroup> {
    stats
        .groups
        .iter()
        .map(|g| TaskGroup {
            name: g.name.to_string(),
            counts: Totals {
                submitted: g.queued + g.running + g.finished + g.failed + g.cancelled,
                queued: g.queued,
                running: g.running,
                finished: g.finished,
                failed: g.failed,
                cancelled: g.cancelled,
                lost: g.lost,
            },
            wait_ms: g.wait_ms,
            compute_ms: g.compute_ms,
            output_bytes: g.output_bytes,
            p50_ms: g.percentile(0.5),
            p99_ms: g.percentile(0.99),
        })
        .collect()
}

fn exceptions(stats: &ClusterStats) -> Vec<ExceptionRow> {
    stats
        .failures
        .iter()
        .map(|t| ExceptionRow {
            at_ms: t.ended_at_ms,
            id: t.id.0,
            name: t.name.to_string(),
            worker: t.worker,
            error: t.error.clone().unwrap_or_default(),
        })
        .collect()
}

/// Bytes that crossed to and from the workers, by kind.
fn bandwidth(stats: &ClusterStats) -> Vec<Transfer> {
    vec![
        Transfer {
            kind: "task inputs".into(),
            bytes: stats.groups.iter().map(|g| g.input_bytes).sum(),
        },
        Transfer {
            kind: "task results".into(),
            bytes: stats.groups.iter().map(|g| g.output_bytes).sum(),
        },
    ]
}

/// None when no worker has a GPU: the GPU views say so instead of drawing zeros.
fn gpu_rows(stats: &ClusterStats) -> Option<Vec<GpuRow>> {
    (!stats.gpus.is_empty()).then(|| {
        stats
            .gpus
            .iter()
            .map(|g| GpuRow {
                name: g.name.clone(),
                utilization: g.utilization_percent,
                memory_used: g.memory_used_bytes,
                memory_total: g.memory_total_bytes,
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cluster::{FinishedTask, GroupStats, Submitter, TaskId, WorkerStats};

    use super::*;

    fn stats(at_ms: u64, workers: Vec<WorkerStats>) -> ClusterStats {
        ClusterStats {
            at_ms,
            workers,
            totals: Totals::default(),
            queue_capacity: 10,
            recent: Vec::new(),
            groups: Vec::new(),
            failures: Vec::new(),
            process: Default::default(),
            gpus: Vec::new(),
            processes: Vec::new(),
        }
    }

    fn busy(id: usize, busy_ms: f64, running_since: Option<u64>) -> WorkerStats {
        WorkerStats {
            busy_ms,
            current_started_at_ms: running_since,
            current: running_since.map(|_| TaskId(7)),
            current_task: running_since.map(|_| Arc::from("square")),
            state: if running_since.is_some() {
                WorkerState::Busy
            } else {
                WorkerState::Idle
            },
            ..WorkerStats::idle(id)
        }
    }

    fn ended(id: u64, ended_at_ms: u64) -> FinishedTask {
        FinishedTask {
            id: TaskId(id),
            name: Arc::from("square"),
            submitter: Submitter::new("test"),
            state: TaskState::Finished,
            worker: Some(0),
            queued_at_ms: ended_at_ms - 20,
            started_at_ms: Some(ended_at_ms - 10),
            ended_at_ms,
            error: None,
            output_bytes: 3,
        }
    }

    #[test]
    fn a_workers_busy_share_is_of_the_interval_since_the_last_frame() {
        let mut sampler = Sampler::default();
        let first = sampler.frame(
            &stats(
                10_000,
                vec![busy(0, 500.0, None), busy(1, 0.0, Some(9_000))],
            ),
            HostSample::default(),
            Backend::Embedded,
            Profiles::default(),
        );
        // Nothing to compare with yet.
        assert!(first.workers.iter().all(|w| w.busy_percent == 0.0));
        // A second later: worker 0 was busy 250 ms of it, worker 1 all of it (still running).
        let second = sampler.frame(
            &stats(
                11_000,
                vec![busy(0, 750.0, None), busy(1, 0.0, Some(9_000))],
            ),
            HostSample {
                net_rx: 2_000,
                ..HostSample::default()
            },
            Backend::Embedded,
            Profiles::default(),
        );
        assert_eq!(second.workers[0].busy_percent, 25.0);
        assert_eq!(second.workers[1].busy_percent, 100.0);
        assert_eq!(second.workers[1].current.as_deref(), Some("square #7"));
        assert_eq!(second.history.len(), 2);
        assert_eq!(second.history[1].net_rx, 2_000.0, "bytes per second");
        assert_eq!(second.history[1].worker_busy, vec![25.0, 100.0]);
        assert!(second.in_process);
    }

    #[test]
    fn the_history_keeps_the_newest_samples_only() {
        let mut sampler = Sampler::default();
        let mut frame = None;
        for i in 0..HISTORY as u64 + 5 {
            frame = Some(sampler.frame(
                &stats(1_000 * i, Vec::new()),
                HostSample::default(),
                Backend::Nats,
                Profiles::default(),
            ));
        }
        let history = frame.unwrap().history;
        assert_eq!(history.len(), HISTORY);
        assert_eq!(history[0].at_ms, 5_000);
    }

    #[test]
    fn the_task_stream_is_the_last_minute_and_what_runs_now_at_most_its_cap() {
        let mut now = stats(100_000, vec![busy(1, 0.0, Some(99_000))]);
        now.recent = vec![ended(1, 30_000), ended(2, 50_000), ended(3, 99_500)];
        let bars = task_bars(&now);
        let ids: Vec<u64> = bars.iter().map(|b| b.id).collect();
        assert_eq!(ids, vec![2, 3, 7], "the 30 s one is over a minute old");
        assert_eq!(bars[2].state, TaskState::Running);
        assert_eq!(bars[2].end_ms, 100_000);

        now.recent = (0..TASK_STREAM_MAX as u64 + 10)
            .map(|i| ended(i, 99_000))
            .collect();
        let bars = task_bars(&now);
        assert_eq!(bars.len(), TASK_STREAM_MAX);
        assert_eq!(bars.last().unwrap().id, 7, "the newest kept");
    }

    #[test]
    fn a_group_counts_every_task_it_was_given_and_no_gpu_is_none() {
        let mut now = stats(1, Vec::new());
        now.groups = vec![GroupStats {
            name: Arc::from("square"),
            queued: 1,
            running: 2,
            finished: 3,
            failed: 4,
            cancelled: 5,
            input_bytes: 10,
            output_bytes: 20,
            ..GroupStats::default()
        }];
        let groups = task_groups(&now);
        assert_eq!(groups[0].counts.submitted, 15);
        let bandwidth = bandwidth(&now);
        assert_eq!((bandwidth[0].bytes, bandwidth[1].bytes), (10, 20));
        assert_eq!(gpu_rows(&now), None);
    }
}
