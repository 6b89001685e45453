//! The cluster-wide event stream: one [`ClusterEvent`] per state change of any task.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Submitter, TaskError, TaskId};

pub use model::TaskState;

/// Something that happened to one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterEvent {
    pub task: TaskId,
    /// The task's [`crate::Task::NAME`].
    pub name: Arc<str>,
    pub submitter: Submitter,
    /// When it happened (ms since the Unix epoch).
    pub at_ms: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EventKind {
    Queued {
        /// Size of the encoded input.
        input_bytes: usize,
    },
    Started {
        worker: usize,
        /// Time spent waiting in the queue.
        wait_ms: f64,
    },
    Progress {
        worker: usize,
        /// From 0.0 to 1.0; never decreases for one task.
        fraction: f64,
    },
    Finished {
        worker: usize,
        compute_ms: f64,
        /// Size of the encoded result.
        output_bytes: usize,
    },
    Failed {
        worker: Option<usize>,
        error: TaskError,
    },
    Cancelled {
        /// The worker that was running it, or none if it was still queued.
        worker: Option<usize>,
    },
}

impl EventKind {
    /// The task's state once this event has happened.
    pub fn state(&self) -> TaskState {
        match self {
            Self::Queued { .. } => TaskState::Queued,
            Self::Started { .. } | Self::Progress { .. } => TaskState::Running,
            Self::Finished { .. } => TaskState::Finished,
            Self::Failed { .. } => TaskState::Failed,
            Self::Cancelled { .. } => TaskState::Cancelled,
        }
    }
}
