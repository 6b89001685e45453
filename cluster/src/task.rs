//! What the cluster says of a submitted task: its id, who submitted it, and how an unfinished
//! one stands ([`TaskInfo`]). What a task *is* — `Task`, its context and its errors, the
//! registry — is the `offload-task` crate's, re-exported here.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Identifies one submitted task, unique within a cluster's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who submitted a task: the unit of fairness (a browser session, say). Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Submitter(Arc<str>);

impl Submitter {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Submitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A task that has not finished yet, as [`crate::Client::unfinished`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub id: TaskId,
    /// The task's [`Task::NAME`].
    pub task: String,
    pub input: Arc<Value>,
    pub submitter: Submitter,
    pub state: crate::TaskState,
    /// The worker running it, once started.
    pub worker: Option<usize>,
    pub queued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    /// From 0.0 to 1.0.
    pub progress: f64,
}
