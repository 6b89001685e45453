//! What crosses NATS, as JSON: work items, results, progress, cancels, worker heartbeats and
//! app servers' reports. Everything is owned and versionless by design: a task carries the hash
//! of its type's input schema, and a worker runs it only with a build of the type that has the
//! same.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::work::{Ended, Ran};
use crate::{FinishedTask, GroupStats, ProcessStats, TaskError, TaskId, Totals, WorkerStats};

/// One task handed to the workers, on the work-queue stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WorkItem {
    /// The submitting app server: its results come back on its own subject.
    pub server: String,
    /// Which start of that server submitted it; a restarted server ignores its earlier self's
    /// results, because it runs those tasks again under new ids.
    pub boot: u64,
    pub task: TaskId,
    pub name: String,
    pub input: std::sync::Arc<Value>,
    /// The submitter's [`crate::TaskType::schema_hash`] for this task's type.
    pub schema: String,
    /// The submitter's time limit: its watchdog normally stops the task, but a worker stops
    /// it too (a little later), so a task outlives neither its limit nor a dead server.
    pub time_limit_ms: Option<u64>,
    /// The submitter's cap on a result's size (JSON bytes).
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
}

fn default_max_output() -> usize {
    offload_task::MAX_OUTPUT_BYTES
}

impl WorkItem {
    /// Unique in the whole cluster, for ever: the message id JetStream deduplicates on, and
    /// the key a cancel names.
    pub fn key(&self) -> String {
        task_key(&self.server, self.boot, self.task)
    }
}

pub(crate) fn task_key(server: &str, boot: u64, task: TaskId) -> String {
    format!("{server}.{boot}.{task}")
}

/// A task's outcome, on the results stream, on its server's subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ResultItem {
    pub boot: u64,
    pub task: TaskId,
    pub outcome: Result<Value, TaskError>,
    /// The worker process that ran it.
    pub worker: String,
    /// Its thread, when and which delivery (absent from workers older than this field).
    #[serde(default)]
    pub ran: Option<Ran>,
}

impl From<ResultItem> for Ended {
    fn from(result: ResultItem) -> Self {
        Self {
            outcome: result.outcome,
            ran: result.ran,
        }
    }
}

/// Progress of a running task, on plain NATS (it may be dropped).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProgressItem {
    pub boot: u64,
    pub task: TaskId,
    pub fraction: f64,
}

/// Broadcast to every worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cancel", rename_all = "lowercase")]
pub(crate) enum CancelItem {
    /// Stop this task wherever it runs (or will run).
    Task { key: String },
    /// This app server started again: its earlier starts' tasks are its own to rerun, so
    /// workers drop them.
    Restarted { server: String, boot: u64 },
}

/// A worker process's heartbeat, in the workers' KV bucket under its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// `host-pid`: unique while it runs.
    pub name: String,
    pub host: String,
    pub pid: u32,
    /// The task types it runs, each with its input schema's hash.
    #[serde(default)]
    pub types: Vec<TypeAd>,
    /// The queue it takes tasks from: [`TypeAd::queue`] of `types`.
    #[serde(default)]
    pub queue: String,
    /// One entry per worker thread.
    pub threads: Vec<WorkerStats>,
    /// The whole process's CPU and memory.
    pub process: ProcessStats,
    /// When it was written (ms since the Unix epoch).
    pub at_ms: u64,
}

/// One task type a worker runs, as it advertises it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TypeAd {
    pub name: String,
    /// [`crate::TaskType::schema_hash`].
    pub schema: String,
}

impl TypeAd {
    /// Names a catalogue (16 hex digits): workers that run the same types with the same
    /// schemas share a work queue, and a task goes only to a queue whose catalogue has its
    /// type and schema.
    pub fn queue(types: &[Self]) -> String {
        use sha2::{Digest, Sha256};
        let mut sorted: Vec<String> = types
            .iter()
            .map(|t| format!("{}:{}", t.name, t.schema))
            .collect();
        sorted.sort();
        let digest = Sha256::digest(sorted.join(",").as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Every type of `registry`.
    pub fn all(registry: &crate::Registry) -> Vec<Self> {
        registry
            .types()
            .iter()
            .map(|t| Self {
                name: t.name().to_owned(),
                schema: t.schema_hash().to_owned(),
            })
            .collect()
    }
}

/// An app server's view of its own work, published once a second for the cluster's dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServerReport {
    pub server: String,
    pub totals: Totals,
    pub groups: Vec<GroupStats>,
    pub queue_capacity: usize,
    /// Its most recently ended tasks, oldest first.
    pub recent: Vec<FinishedTask>,
    pub failures: Vec<FinishedTask>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_item_survives_the_wire_and_its_key_names_server_boot_and_task() {
        let item = WorkItem {
            server: "web-1".into(),
            boot: 7,
            task: TaskId(42),
            name: "primes".into(),
            input: Value::from(30).into(),
            schema: "c".into(),
            time_limit_ms: Some(300_000),
            max_output_bytes: 1 << 20,
        };
        let back: WorkItem = serde_json::from_slice(&serde_json::to_vec(&item).unwrap()).unwrap();
        assert_eq!(back, item);
        assert_eq!(item.key(), "web-1.7.42");
        let result = ResultItem {
            boot: 7,
            task: TaskId(42),
            outcome: Err(TaskError::Lost("its worker died 3 times".into())),
            worker: "h-1".into(),
            ran: Some(Ran {
                worker: "h-1/0".into(),
                started_at_ms: 1_700_000_000_000,
                attempt: 3,
            }),
        };
        let back: ResultItem =
            serde_json::from_slice(&serde_json::to_vec(&result).unwrap()).unwrap();
        assert_eq!(back, result);
        // A worker built before `ran` existed: its results still decode.
        let older: ResultItem = serde_json::from_str(
            r#"{"boot": 7, "task": 42, "outcome": {"Ok": 1}, "worker": "h-1"}"#,
        )
        .unwrap();
        assert_eq!(older.ran, None);
        let cancel = CancelItem::Restarted {
            server: "web-1".into(),
            boot: 8,
        };
        let text = serde_json::to_string(&cancel).unwrap();
        assert_eq!(text, r#"{"cancel":"restarted","server":"web-1","boot":8}"#);
    }
}
