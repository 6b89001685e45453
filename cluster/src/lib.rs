//! Offload's worker cluster.
//!
//! A [`Client`] is the only way in: it submits typed [`Task`]s on behalf of a [`Submitter`],
//! cancels them, lists a submitter's unfinished work, streams [`ClusterEvent`]s and takes
//! [`ClusterStats`] snapshots. Behind it sits a backend; today the [`EmbeddedCluster`] (worker
//! OS threads inside this process), later workers on other machines. Nothing here knows about
//! HTTP, browsers or sessions, and nothing here may block a tokio thread with CPU work.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use cluster::{ClusterConfig, EmbeddedCluster, Submitter, tasks::Fibonacci};
//! let cluster = EmbeddedCluster::start(ClusterConfig::default());
//! let client = cluster.client();
//! let handle = client.submit::<Fibonacci>(20, &Submitter::new("docs")).await.unwrap();
//! assert_eq!(handle.result().await.unwrap(), 6765);
//! # });
//! ```

mod client;
mod embedded;
mod event;
pub mod nats;
mod queue;
mod stats;
mod task;
pub mod tasks;

pub use client::{CancelError, Client, SubmitError, TaskHandle};
pub use embedded::{ClusterConfig, EmbeddedCluster};
pub use event::{ClusterEvent, EventKind, TaskState};
pub use stats::{
    ClusterStats, FinishedTask, GpuStats, GroupStats, ProcessStats, Totals, WorkerProcess,
    WorkerState, WorkerStats,
};
pub use task::{Registry, Submitter, Task, TaskContext, TaskError, TaskId, TaskInfo};

/// Milliseconds since the Unix epoch: the timestamp every event and record carries, because it
/// survives serialisation and means the same on every machine of a cluster.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
