//! What dashboards read: a consistent snapshot of the scheduler ([`Core::stats`]) and the ring
//! of recent tasks each ended task is recorded in.

use super::*;

impl Core {
    pub(crate) fn stats(&self) -> ClusterStats {
        let (process, gpus) = {
            let mut probe = self.process.lock();
            (probe.sample(), probe.gpus())
        };
        let inner = self.inner.lock();
        let mut totals = inner.totals;
        totals.queued = inner.queue.len() as u64;
        totals.running = inner.occupancy.busy as u64;
        let at_ms = now_ms();
        // Embedded workers live here; a NATS app server's slots only await remote ones.
        let processes = match self.backend {
            Backend::Embedded => {
                let me = this_process();
                vec![
                    WorkerProcess::of(
                        me.name.clone(),
                        me.host.clone(),
                        me.pid,
                        &inner.slots,
                        process,
                        at_ms,
                    )
                    .running_types(
                        self.registry
                            .types()
                            .iter()
                            .map(|t| (t.name(), t.schema_hash())),
                    ),
                ]
            }
            Backend::Nats => Vec::new(),
        };
        ClusterStats {
            at_ms,
            processes,
            workers: inner.slots.clone(),
            totals,
            queue_capacity: inner.queue.capacity(),
            recent: inner.recent.iter().cloned().collect(),
            groups: inner.groups.values().cloned().collect(),
            failures: inner.failures.iter().cloned().collect(),
            process,
            gpus,
        }
    }

    pub(super) fn record(
        &self,
        inner: &mut Inner,
        info: &TaskInfo,
        state: TaskState,
        error: Option<String>,
        output_bytes: usize,
    ) {
        let task = FinishedTask {
            id: info.id,
            name: Arc::from(info.task.as_str()),
            submitter: info.submitter.clone(),
            state,
            worker: info.worker,
            queued_at_ms: info.queued_at_ms,
            started_at_ms: info.started_at_ms,
            ended_at_ms: now_ms(),
            error,
            output_bytes,
        };
        if state == TaskState::Failed {
            if inner.failures.len() == FAILURES_KEPT {
                inner.failures.pop_front();
            }
            inner.failures.push_back(task.clone());
        }
        if self.recent_capacity == 0 {
            return;
        }
        if inner.recent.len() == self.recent_capacity {
            inner.recent.pop_front();
        }
        inner.recent.push_back(task);
    }
}
