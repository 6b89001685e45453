//! [`Client`]: the one handle through which the rest of Offload uses a cluster.

use std::marker::PhantomData;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{broadcast, oneshot, watch};

use model::form::FieldError;

use crate::nats::{Observer, WorkerView};
use crate::scheduler::{Core, Refusal};
use crate::work::Ended;
use crate::{
    Backend, ClusterEvent, ClusterStats, Registry, Submitter, Task, TaskError, TaskId, TaskInfo,
};

/// Why a submission was not accepted. Messages are meant for the person who submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error(
        "the cluster is busy: {} waiting already; try again when some have finished",
        model::count(*capacity as u64, "task is", "tasks are")
    )]
    Busy { capacity: usize },
    #[error(
        "you already have {} waiting, the most one session may queue: wait for some to finish, or cancel some",
        model::count(*limit as u64, "task", "tasks")
    )]
    SubmitterBusy { limit: usize },
    /// The input was refused; the error says which field, when it is about one.
    #[error("{0}")]
    InvalidInput(FieldError),
    #[error("there is no task type {0:?}")]
    UnknownTask(String),
    /// On NATS: no live worker runs this type with this build's input schema.
    #[error(
        "no live worker runs {task} with this server's version of its input: start a worker built from the same tasks, or wait for one to come back"
    )]
    NoWorker { task: String },
    #[error("the cluster is shutting down")]
    ShutDown,
    #[error("the input could not be encoded: {0}")]
    Encode(String),
    #[error("this process only watches the cluster: submit through an app server")]
    WatchOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    #[error("task {0} is neither queued nor running (it may have just finished)")]
    NotFound(TaskId),
}

/// A cheap-to-clone handle on a cluster, shared by every session of the app.
///
/// Nothing in its API assumes that workers are threads of this process.
#[derive(Clone)]
pub struct Client {
    backend: Via,
}

#[derive(Clone)]
enum Via {
    /// This process schedules: its workers are its own threads, or NATS workers it hands
    /// tasks to.
    Scheduler(Arc<Core>),
    /// This process only watches a NATS cluster's workers and app servers (its dashboard).
    Observer(Arc<Observer>),
    /// This process is a NATS worker: it sees its own threads.
    Worker(Arc<WorkerView>),
}

impl Client {
    pub(crate) fn scheduler(shared: Arc<Core>) -> Self {
        Self {
            backend: Via::Scheduler(shared),
        }
    }

    pub(crate) fn observer(observer: Arc<Observer>) -> Self {
        Self {
            backend: Via::Observer(observer),
        }
    }

    pub(crate) fn worker(worker: Arc<WorkerView>) -> Self {
        Self {
            backend: Via::Worker(worker),
        }
    }

    /// Queues `input` for task `T` on behalf of `submitter`.
    ///
    /// Refused at once, with a message that says why, when the input is invalid, the queue is
    /// full or the workers do not know `T`.
    pub async fn submit<T: Task>(
        &self,
        input: T::Input,
        submitter: &Submitter,
    ) -> Result<TaskHandle<T>, SubmitError> {
        let value = serde_json::to_value(&input).map_err(|e| SubmitError::Encode(e.to_string()))?;
        let handle = self.submit_value(T::NAME, value, submitter).await?;
        Ok(TaskHandle {
            handle,
            task: PhantomData,
        })
    }

    /// Queues `input` (JSON) for the task type called `task`: how the app submits what a
    /// page or a script sent, without knowing the type.
    pub async fn submit_value(
        &self,
        task: &str,
        input: Value,
        submitter: &Submitter,
    ) -> Result<Handle, SubmitError> {
        self.enqueue(task, input, submitter, false).await
    }

    /// Queues work that this cluster's caller admitted once already and must not lose, such
    /// as tasks accepted before a restart: the queue's capacity and the per-submitter cap do
    /// not apply (the running cap, the short lane and the time limit still do).
    pub async fn resubmit_value(
        &self,
        task: &str,
        input: Value,
        submitter: &Submitter,
    ) -> Result<Handle, SubmitError> {
        self.enqueue(task, input, submitter, true).await
    }

    /// The task types this cluster runs (none for a process that only watches).
    pub fn registry(&self) -> Option<&Registry> {
        match &self.backend {
            Via::Scheduler(shared) => Some(&shared.registry),
            Via::Observer(_) | Via::Worker(_) => None,
        }
    }

    async fn enqueue(
        &self,
        task: &str,
        input: Value,
        submitter: &Submitter,
        admitted_before: bool,
    ) -> Result<Handle, SubmitError> {
        let Via::Scheduler(shared) = &self.backend else {
            return Err(SubmitError::WatchOnly);
        };
        let kind = shared
            .registry
            .get(task)
            .ok_or_else(|| SubmitError::UnknownTask(task.to_owned()))?;
        let expected = kind.check(&input).map_err(SubmitError::InvalidInput)?;
        let accepted = shared
            .submit(kind.name(), input, expected, submitter, admitted_before)
            .map_err(|refusal| match refusal {
                Refusal::Full(capacity) => SubmitError::Busy { capacity },
                Refusal::SubmitterFull(limit) => SubmitError::SubmitterBusy { limit },
                Refusal::NoWorker => SubmitError::NoWorker {
                    task: kind.name().to_owned(),
                },
                Refusal::ShutDown => SubmitError::ShutDown,
            })?;
        Ok(Handle {
            id: accepted.id,
            reply: accepted.reply,
            progress: accepted.progress,
        })
    }

    /// Cancels a task: a queued one leaves the queue, a running one stops at its next
    /// checkpoint. Either way its handle resolves to [`TaskError::Cancelled`].
    pub async fn cancel(&self, id: TaskId) -> Result<(), CancelError> {
        if let Via::Scheduler(shared) = &self.backend
            && shared.cancel(id)
        {
            Ok(())
        } else {
            Err(CancelError::NotFound(id))
        }
    }

    /// What one submitter may have at once, now: (running, waiting). The running cap follows
    /// the worker threads when no flag sets it. None for a process that only watches.
    pub fn caps(&self) -> Option<(usize, usize)> {
        match &self.backend {
            Via::Scheduler(shared) => Some((
                shared.limits.running_cap(shared.occupancy().slots),
                shared.limits.queued_per_submitter,
            )),
            Via::Observer(_) | Via::Worker(_) => None,
        }
    }

    /// `submitter`'s queued and running tasks, in submission order.
    pub async fn unfinished(&self, submitter: &Submitter) -> Vec<TaskInfo> {
        match &self.backend {
            Via::Scheduler(shared) => shared.unfinished(submitter),
            Via::Observer(_) | Via::Worker(_) => Vec::new(),
        }
    }

    /// Every task's state changes, from now on. A receiver that falls more than the configured
    /// capacity behind gets `RecvError::Lagged` and should resync from [`Client::stats`] or
    /// [`Client::unfinished`].
    pub fn events(&self) -> broadcast::Receiver<ClusterEvent> {
        match &self.backend {
            Via::Scheduler(shared) => shared.subscribe(),
            // Observers and workers see figures, not each task's events.
            Via::Observer(_) | Via::Worker(_) => broadcast::channel(1).1,
        }
    }

    /// A consistent snapshot of workers, totals and recent tasks, plus process CPU and memory.
    /// Takes a few microseconds of /proc reading: fine on an async thread.
    pub fn stats(&self) -> ClusterStats {
        match &self.backend {
            Via::Scheduler(shared) => shared.stats(),
            Via::Observer(observer) => observer.stats(),
            Via::Worker(worker) => worker.stats(),
        }
    }

    /// Worker threads: this process's, or every live NATS worker's.
    pub fn workers(&self) -> usize {
        match &self.backend {
            Via::Scheduler(shared) => shared.occupancy().threads,
            Via::Observer(observer) => observer.threads(),
            Via::Worker(worker) => worker.threads(),
        }
    }

    /// Tasks that may run at once: as many as the worker threads here; on NATS, the tasks
    /// this app server may have in flight (more than threads for tiny tasks, within its
    /// bound).
    pub fn slots(&self) -> usize {
        match &self.backend {
            Via::Scheduler(shared) => shared.occupancy().slots,
            Via::Observer(observer) => observer.threads(),
            Via::Worker(worker) => worker.threads(),
        }
    }

    /// Where the workers run.
    pub fn backend(&self) -> Backend {
        match &self.backend {
            Via::Scheduler(shared) => shared.backend,
            Via::Observer(_) | Via::Worker(_) => Backend::Nats,
        }
    }

    /// Why this process cannot do its part now, if it cannot: for a cluster, it has no
    /// worker; for a NATS worker, it has lost NATS.
    pub fn unready(&self) -> Option<&'static str> {
        match &self.backend {
            Via::Worker(worker) if !worker.connected() => {
                Some("not connected to NATS: this worker cannot take tasks")
            }
            Via::Worker(_) => None,
            _ if self.workers() == 0 => Some("no workers: the cluster cannot run tasks"),
            _ => None,
        }
    }
}

/// A submitted task: its id, its live progress and, once awaited, its result as JSON.
pub struct Handle {
    id: TaskId,
    reply: oneshot::Receiver<Ended>,
    progress: watch::Receiver<f64>,
}

impl Handle {
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Progress from 0.0 to 1.0: it changes (to 0.0) when a worker starts the task, then as
    /// the task reports progress (rate-limited, monotonic).
    pub fn progress(&self) -> watch::Receiver<f64> {
        self.progress.clone()
    }

    /// Waits for the task to end.
    pub async fn result(self) -> Result<Value, TaskError> {
        self.ended().await.outcome
    }

    /// Waits for the task to end: its outcome, and which worker ran it when.
    pub async fn ended(self) -> Ended {
        self.reply.await.unwrap_or_else(|_| {
            Ended::unstarted(Err(TaskError::Lost("the cluster dropped the task".into())))
        })
    }
}

/// A submitted task of a known type: its result comes back typed.
pub struct TaskHandle<T: Task> {
    handle: Handle,
    task: PhantomData<fn() -> T>,
}

impl<T: Task> TaskHandle<T> {
    pub fn id(&self) -> TaskId {
        self.handle.id
    }

    /// See [`Handle::progress`].
    pub fn progress(&self) -> watch::Receiver<f64> {
        self.handle.progress()
    }

    /// See [`Handle::ended`]: the outcome as JSON, and where the task ran.
    pub async fn ended(self) -> Ended {
        self.handle.ended().await
    }

    /// Waits for the task to end.
    pub async fn result(self) -> Result<T::Output, TaskError> {
        let value = self.handle.result().await?;
        serde_json::from_value(value).map_err(|e| TaskError::Failed(format!("output: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::SubmitError;

    #[test]
    fn refusals_count_with_the_right_noun() {
        assert!(
            SubmitError::SubmitterBusy { limit: 1 }
                .to_string()
                .starts_with("you already have 1 task waiting,")
        );
        assert!(
            SubmitError::SubmitterBusy { limit: 100 }
                .to_string()
                .starts_with("you already have 100 tasks waiting,")
        );
        assert!(
            SubmitError::Busy { capacity: 1 }
                .to_string()
                .contains("busy: 1 task is waiting already;")
        );
    }
}
