//! Where a task is in its life, what a worker is doing, and the cluster's task counts.

use serde::{Deserialize, Serialize};

use crate::page::Outcome;

/// Where a task is in its life: the cluster's events, the dashboard and the API say it alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Queued,
    Running,
    Finished,
    Failed,
    Cancelled,
    /// Ended without a result: its worker was never heard from again. (The cluster counts it
    /// among the failed, with a flag; the app's record says it.)
    Lost,
}

impl TaskState {
    pub fn is_done(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// Its serde name, for a CSS class or an attribute.
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Lost => "lost",
        }
    }

    /// How a task in this state ended, if it has.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            Self::Queued | Self::Running => None,
            Self::Finished => Some(Outcome::Finished),
            Self::Failed => Some(Outcome::Failed),
            Self::Cancelled => Some(Outcome::Cancelled),
            Self::Lost => Some(Outcome::Lost),
        }
    }
}

impl From<Outcome> for TaskState {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Finished => Self::Finished,
            Outcome::Failed => Self::Failed,
            Outcome::Cancelled => Self::Cancelled,
            Outcome::Lost => Self::Lost,
        }
    }
}

/// What a worker thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    Idle,
    Busy,
    Stopped,
}

impl WorkerState {
    /// Its serde name, for a CSS class or a table cell.
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Busy => "busy",
            Self::Stopped => "stopped",
        }
    }
}

/// What runs a cluster's tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Worker threads of the app server itself.
    #[default]
    Embedded,
    /// Worker processes that take their tasks from NATS JetStream.
    Nats,
}

impl Backend {
    /// Its serde name, for display.
    pub fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Nats => "nats",
        }
    }
}

/// Task counts: `queued` and `running` now, the rest since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub submitted: u64,
    pub queued: u64,
    pub running: u64,
    pub finished: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Of the failed, those whose worker never answered (gone, stuck, or past every
    /// deadline).
    #[serde(default)]
    pub lost: u64,
}

impl Totals {
    /// Adds another server's counts.
    pub fn add(&mut self, other: &Self) {
        self.submitted += other.submitted;
        self.queued += other.queued;
        self.running += other.running;
        self.finished += other.finished;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.lost += other.lost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        use TaskState::*;
        for state in [Queued, Running, Finished, Failed, Cancelled] {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                state.name(),
                "{state:?}"
            );
        }
        for state in [WorkerState::Idle, WorkerState::Busy, WorkerState::Stopped] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.name());
        }
    }
}
