//! Offload's worker cluster.
//!
//! A [`Client`] is the only way in: it submits typed [`Task`]s on behalf of a [`Submitter`],
//! cancels them, lists a submitter's unfinished work, streams [`ClusterEvent`]s and takes
//! [`ClusterStats`] snapshots. Behind it sits one [`Scheduler`] (admission, fair queue, time
//! limit, figures) and one of two ways to run the tasks it releases: worker OS threads inside
//! this process ([`EmbeddedCluster`]), or workers on any machine through NATS JetStream
//! ([`nats::NatsCluster`]), awaited by futures rather than threads. Nothing here knows about
//! HTTP, browsers or sessions, and nothing here may block a tokio thread with CPU work.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use cluster::{ClusterConfig, EmbeddedCluster, Registry, Submitter, Task, TaskContext, TaskError};
//!
//! /// Squares a number.
//! struct Square;
//!
//! /// What to square.
//! #[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! struct Number {
//!     /// The number
//!     #[schemars(range(max = 1000))]
//!     x: u64,
//! }
//!
//! impl Task for Square {
//!     const NAME: &'static str = "square";
//!     const TITLE: &'static str = "Square";
//!     const DESCRIPTION: &'static str = "x times x.";
//!     type Input = Number;
//!     type Output = u64;
//!     fn summary(input: &Number, output: &u64) -> String {
//!         format!("{}²={output}", input.x)
//!     }
//!     fn run(input: Number, _: &TaskContext<'_>) -> Result<u64, TaskError> {
//!         Ok(input.x * input.x)
//!     }
//! }
//!
//! let registry = Registry::empty().register::<Square>();
//! let cluster = EmbeddedCluster::start(ClusterConfig::default(), registry).unwrap();
//! let client = cluster.client();
//! let handle = client.submit::<Square>(Number { x: 20 }, &Submitter::new("docs")).await.unwrap();
//! assert_eq!(handle.result().await.unwrap(), 400);
//! # });
//! ```

mod admission;
mod client;
mod embedded;
mod event;
mod local;
pub mod nats;
mod probe;
mod queue;
mod scheduler;
mod stats;
mod task;
mod watchdog;
mod work;

pub use admission::ClusterConfig;
pub use client::{CancelError, Client, Handle, SubmitError, TaskHandle};
pub use embedded::EmbeddedCluster;
pub use event::{ClusterEvent, EventKind, TaskState};
pub use model::Backend;
pub use offload_task::MAX_OUTPUT_BYTES;
pub use offload_task::{
    Binary, Registry, Task, TaskContext, TaskError, TaskType, input_from_fields,
};
pub use scheduler::{Scheduler, SpawnError};
pub use stats::{
    ClusterStats, FinishedTask, GpuStats, GroupStats, ProcessStats, Totals, WorkerProcess,
    WorkerState, WorkerStats,
};
pub use task::{Submitter, TaskId, TaskInfo};
pub use work::{Ended, Ran};

/// Milliseconds since the Unix epoch: the timestamp every event and record carries, because it
/// survives serialisation and means the same on every machine of a cluster.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
