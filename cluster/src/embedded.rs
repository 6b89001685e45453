//! The embedded cluster: the scheduler and N worker OS threads inside this process, which is
//! what `make run` starts.

use std::thread::JoinHandle;

use model::Backend;

use crate::scheduler::{Scheduler, SpawnError};
use crate::{ClusterConfig, Registry};

/// A running embedded cluster. Dropping it cancels running tasks, fails queued ones as lost
/// and joins the worker threads.
pub struct EmbeddedCluster {
    scheduler: Scheduler,
    threads: Vec<JoinHandle<()>>,
}

impl EmbeddedCluster {
    /// Starts `config.workers` workers that run the tasks in `registry`.
    pub fn start(config: ClusterConfig, registry: Registry) -> Result<Self, SpawnError> {
        let workers = config.workers.max(1);
        let mut cluster = Self {
            scheduler: Scheduler::start(&config, registry, Backend::Embedded)?,
            threads: Vec::with_capacity(workers),
        };
        // On an error, dropping `cluster` stops the threads that did start.
        crate::local::start_threads(cluster.scheduler.core(), workers, &mut cluster.threads)?;
        tracing::info!(
            workers,
            capacity = config.queue_capacity,
            queued_per_submitter = config.max_queued_per_submitter,
            running_per_submitter = config.running_per_submitter(),
            time_limit_s = config.task_time_limit.map(|l| l.as_secs_f64()),
            "embedded cluster started"
        );
        Ok(cluster)
    }

    /// Its scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// A handle for submitting work; clone it freely.
    pub fn client(&self) -> crate::Client {
        self.scheduler.client()
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        self.scheduler.core().shut_down();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
