//! The cluster's dashboard side: every worker from the heartbeat bucket, every app server's
//! figures from its reports, merged into one [`ClusterStats`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::wire::{ServerReport, WorkerInfo};
use super::{Connection, Names, NatsError, WORKER_TTL};
use crate::{ClusterStats, FinishedTask, GroupStats, ProcessStats, Totals, WorkerProcess, now_ms};

/// Finished tasks kept for the task-stream views, all app servers together.
const RECENT_KEPT: usize = 1_000;
const FAILURES_KEPT: usize = 100;

/// A process that watches a NATS cluster (`offload cluster`'s dashboard). Its
/// [`crate::Client`] answers `stats()`; it submits nothing.
pub struct NatsObserver {
    observer: Arc<Observer>,
    tasks: Vec<JoinHandle<()>>,
}

pub(crate) struct Observer {
    workers: Mutex<Vec<WorkerInfo>>,
    reports: Mutex<HashMap<String, (Instant, ServerReport)>>,
}

impl NatsObserver {
    pub async fn start(url: &str, prefix: &str) -> Result<Self, NatsError> {
        let conn = Connection::open(url, Names::new(prefix)?, "dashboard").await?;
        let reports = conn
            .client
            .subscribe(conn.names.reports_subject("*"))
            .await
            .map_err(|e| super::setup_error("the reports subscription".into(), e))?;
        let observer = Arc::new(Observer {
            workers: Mutex::new(Vec::new()),
            reports: Mutex::new(HashMap::new()),
        });
        let tasks = vec![
            tokio::spawn(observer.clone().listen_reports(reports)),
            tokio::spawn(observer.clone().follow_workers(conn)),
        ];
        Ok(Self { observer, tasks })
    }

    pub fn client(&self) -> crate::Client {
        crate::Client::observer(self.observer.clone())
    }
}

impl Drop for NatsObserver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Observer {
    async fn listen_reports(self: Arc<Self>, mut reports: async_nats::Subscriber) {
        while let Some(message) = reports.next().await {
            match serde_json::from_slice::<ServerReport>(&message.payload) {
                Ok(report) => {
                    self.reports
                        .lock()
                        .insert(report.server.clone(), (Instant::now(), report));
                }
                Err(error) => tracing::debug!(%error, "a report that does not decode"),
            }
        }
    }

    async fn follow_workers(self: Arc<Self>, conn: Connection) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            match conn.read_workers().await {
                Ok(workers) => *self.workers.lock() = workers,
                Err(error) => {
                    tracing::debug!(%error, "worker list not read");
                    // Heartbeats unread are heartbeats missed: drop the workers that are due.
                    let now = now_ms();
                    self.workers
                        .lock()
                        .retain(|w| now.saturating_sub(w.at_ms) < WORKER_TTL.as_millis() as u64);
                }
            }
        }
    }

    /// Worker threads of the live workers, without merging every report as `stats` does.
    pub(crate) fn threads(&self) -> usize {
        self.workers.lock().iter().map(|w| w.threads.len()).sum()
    }

    pub(crate) fn stats(&self) -> ClusterStats {
        let workers = self.workers.lock().clone();
        let mut process = ProcessStats::default();
        let mut threads = Vec::new();
        for worker in &workers {
            process.cpu_percent += worker.process.cpu_percent;
            process.memory_bytes += worker.process.memory_bytes;
            process.cores += worker.process.cores;
            let label: Arc<str> = Arc::from(worker.name.as_str());
            for thread in &worker.threads {
                let mut thread = thread.clone();
                thread.id = threads.len();
                thread.process = Some(label.clone());
                threads.push(thread);
            }
        }
        let mut totals = Totals::default();
        let mut groups: BTreeMap<Arc<str>, GroupStats> = BTreeMap::new();
        let mut recent: Vec<FinishedTask> = Vec::new();
        let mut failures: Vec<FinishedTask> = Vec::new();
        let mut queue_capacity = 0;
        {
            let mut reports = self.reports.lock();
            // A server that stopped reporting has stopped.
            reports.retain(|_, (at, _)| at.elapsed() < WORKER_TTL);
            for (_, report) in reports.values() {
                totals.add(&report.totals);
                queue_capacity += report.queue_capacity;
                for group in &report.groups {
                    groups
                        .entry(group.name.clone())
                        .or_insert_with(|| GroupStats {
                            name: group.name.clone(),
                            ..GroupStats::default()
                        })
                        .add(group);
                }
                recent.extend(report.recent.iter().cloned());
                failures.extend(report.failures.iter().cloned());
            }
        }
        for list in [&mut recent, &mut failures] {
            list.sort_by_key(|t| t.ended_at_ms);
        }
        let keep = |list: &mut Vec<FinishedTask>, n: usize| {
            let extra = list.len().saturating_sub(n);
            list.drain(..extra);
        };
        keep(&mut recent, RECENT_KEPT);
        keep(&mut failures, FAILURES_KEPT);
        let processes = workers
            .iter()
            .map(|w| {
                WorkerProcess::of(
                    w.name.clone(),
                    w.host.clone(),
                    w.pid,
                    &w.threads,
                    w.process,
                    w.at_ms,
                )
                .running_types(w.types.iter().map(|t| (t.name.as_str(), t.schema.as_str())))
            })
            .collect();
        ClusterStats {
            at_ms: now_ms(),
            processes,
            workers: threads,
            totals,
            queue_capacity,
            recent,
            groups: groups.into_values().collect(),
            failures,
            process,
            gpus: Vec::new(),
        }
    }
}
