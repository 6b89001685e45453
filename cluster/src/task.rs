//! What a task is: its type-level description ([`Task`]), the context it runs in
//! ([`TaskContext`]), how it fails ([`TaskError`]), and the [`Registry`] that lets a worker run
//! a task it only knows by name (the seam that lets workers live in other processes).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

/// A kind of work the cluster can run.
///
/// Inputs and outputs cross the wire as JSON, so a task behaves the same on an embedded worker
/// thread and on a worker on another machine.
pub trait Task: 'static {
    /// Stable name: it identifies the task on the wire and in dashboards.
    const NAME: &'static str;
    /// What the submitter sends.
    type Input: Serialize + DeserializeOwned + Send + fmt::Debug;
    /// What the worker returns.
    type Output: Serialize + DeserializeOwned + Send + fmt::Debug;

    /// Refuses input the task cannot run, before it is queued. The message is shown to users,
    /// so it says what is allowed and why.
    fn validate(_input: &Self::Input) -> Result<(), String> {
        Ok(())
    }

    /// How long the task expects to run on one worker, when its input tells. Admission uses it:
    /// work expected to be short may take every worker, while long or unknown work always
    /// leaves one free, so a crowd of long tasks cannot hold up everyone's short ones.
    fn expected_duration(_input: &Self::Input) -> Option<Duration> {
        None
    }

    /// Does the work on a worker thread. Long work calls [`TaskContext::report_progress`] and
    /// returns [`TaskError::Cancelled`] soon after [`TaskContext::is_cancelled`] turns true.
    fn run(input: Self::Input, ctx: &TaskContext<'_>) -> Result<Self::Output, TaskError>;
}

/// Why a task produced no result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TaskError {
    /// Someone cancelled it, queued or running.
    #[error("cancelled")]
    Cancelled,
    /// The task panicked; the message is the panic's. Its worker carries on.
    #[error("panicked: {0}")]
    Panicked(String),
    /// The task reported a failure of its own.
    #[error("{0}")]
    Failed(String),
    /// The input did not decode or did not pass validation.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The cluster went away before the task finished (shutdown, lost worker).
    #[error("lost: {0}")]
    Lost(String),
    /// It ran longer than the cluster's time limit and was stopped.
    #[error("it ran past the {} s limit", *limit_ms as f64 / 1e3)]
    TimeLimit {
        /// The limit, in milliseconds.
        limit_ms: u64,
    },
}

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
    pub input: Value,
    pub submitter: Submitter,
    pub state: crate::TaskState,
    /// The worker running it, once started.
    pub worker: Option<usize>,
    pub queued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    /// From 0.0 to 1.0.
    pub progress: f64,
}

/// Handed to [`Task::run`]: cancellation and progress for the running task.
pub struct TaskContext<'a> {
    cancelled: &'a AtomicBool,
    publish: &'a (dyn Fn(f64) + 'a),
    last: Cell<(Instant, f64)>,
}

/// Progress is published at most this often, so that a task may report as often as it likes.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(50);

impl<'a> TaskContext<'a> {
    /// A context whose cancellation flag and progress sink are the caller's.
    pub fn new(cancelled: &'a AtomicBool, publish: &'a (dyn Fn(f64) + 'a)) -> Self {
        Self {
            cancelled,
            publish,
            last: Cell::new((Instant::now(), 0.0)),
        }
    }

    /// True once the task has been cancelled. One relaxed atomic load: cheap, but still meant
    /// for every few microseconds of work, not every instruction.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Reports the fraction of the work done (0.0 to 1.0). Values that go backwards are ignored,
    /// so listeners always see progress rise; publication is rate-limited.
    pub fn report_progress(&self, fraction: f64) {
        let fraction = fraction.clamp(0.0, 1.0);
        let (at, last) = self.last.get();
        if fraction <= last {
            return;
        }
        let now = Instant::now();
        if fraction >= 1.0 || now.duration_since(at) >= PROGRESS_INTERVAL {
            self.last.set((now, fraction));
            (self.publish)(fraction);
        }
    }
}

type Runner = fn(Value, &TaskContext<'_>) -> Result<Value, TaskError>;

/// The tasks a cluster's workers can run, by name.
///
/// Like Dask, where client and workers must import the same task code, every process of one
/// cluster builds the same registry.
#[derive(Clone)]
pub struct Registry {
    tasks: HashMap<&'static str, Runner>,
}

impl Default for Registry {
    /// Every task this crate ships.
    fn default() -> Self {
        Self::empty().register::<crate::tasks::Fibonacci>()
    }
}

impl Registry {
    /// A registry that knows no task yet.
    pub fn empty() -> Self {
        Self {
            tasks: HashMap::new(),
        }
    }

    /// Adds a task type.
    pub fn register<T: Task>(mut self) -> Self {
        self.tasks.insert(T::NAME, run_erased::<T>);
        self
    }

    /// What this registry runs, and which build runs it: processes of one cluster must agree
    /// on it, as Dask's client and workers must share package versions.
    pub fn catalogue(&self) -> String {
        let mut names: Vec<&str> = self.tasks.keys().copied().collect();
        names.sort_unstable();
        format!(
            "offload-cluster {} [{}]",
            env!("CARGO_PKG_VERSION"),
            names.join(",")
        )
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tasks.contains_key(name)
    }

    pub(crate) fn run(
        &self,
        name: &str,
        input: Value,
        ctx: &TaskContext<'_>,
    ) -> Result<Value, TaskError> {
        match self.tasks.get(name) {
            Some(run) => run(input, ctx),
            None => Err(TaskError::Failed(format!("unknown task {name:?}"))),
        }
    }
}

fn decode<T: Task>(input: Value) -> Result<T::Input, TaskError> {
    serde_json::from_value(input).map_err(|e| TaskError::InvalidInput(e.to_string()))
}

fn run_erased<T: Task>(input: Value, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    let input = decode::<T>(input)?;
    // Workers validate too: over the network they cannot trust that the submitter did.
    T::validate(&input).map_err(TaskError::InvalidInput)?;
    let output = T::run(input, ctx)?;
    serde_json::to_value(output).map_err(|e| TaskError::Failed(format!("output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A context whose last publication was at `at` (the test's clock).
    fn published_at<'a>(
        flag: &'a AtomicBool,
        publish: &'a (dyn Fn(f64) + 'a),
        at: Instant,
    ) -> TaskContext<'a> {
        let ctx = TaskContext::new(flag, publish);
        ctx.last.set((at, 0.0));
        ctx
    }

    #[test]
    fn progress_is_monotonic_and_rate_limited() {
        let seen = Mutex::new(Vec::new());
        let publish = |f: f64| seen.lock().unwrap().push(f);
        let flag = AtomicBool::new(false);
        // Published a moment from now: every report is within the interval.
        let ctx = published_at(&flag, &publish, Instant::now() + Duration::from_secs(3600));
        ctx.report_progress(0.5); // held back
        ctx.report_progress(0.4);
        ctx.report_progress(1.0); // completion always goes out
        ctx.report_progress(0.9);
        assert_eq!(*seen.lock().unwrap(), vec![1.0]);
    }

    #[test]
    fn progress_goes_out_once_the_interval_has_passed() {
        let seen = Mutex::new(Vec::new());
        let publish = |f: f64| seen.lock().unwrap().push(f);
        let flag = AtomicBool::new(false);
        let long_ago = Instant::now()
            .checked_sub(PROGRESS_INTERVAL * 2)
            .expect("a clock older than 100 ms");
        let ctx = published_at(&flag, &publish, long_ago);
        ctx.report_progress(0.5);
        ctx.report_progress(0.25); // backwards: ignored
        assert_eq!(*seen.lock().unwrap(), vec![0.5]);
    }

    #[test]
    fn cancellation_is_visible() {
        let flag = AtomicBool::new(false);
        let publish = |_: f64| {};
        let ctx = TaskContext::new(&flag, &publish);
        assert!(!ctx.is_cancelled());
        flag.store(true, Ordering::Relaxed);
        assert!(ctx.is_cancelled());
    }

    #[test]
    fn workers_refuse_unknown_tasks_and_undecodable_or_invalid_input() {
        let flag = AtomicBool::new(false);
        let publish = |_: f64| {};
        let ctx = TaskContext::new(&flag, &publish);
        let registry = Registry::default();
        assert!(matches!(
            Registry::empty().run("fibonacci", Value::from(1), &ctx),
            Err(TaskError::Failed(m)) if m.contains("unknown task")
        ));
        assert!(matches!(
            registry.run("fibonacci", Value::from("ten"), &ctx),
            Err(TaskError::InvalidInput(_))
        ));
        assert!(matches!(
            registry.run("fibonacci", Value::from(-3), &ctx),
            Err(TaskError::InvalidInput(m)) if m.contains("0 or more")
        ));
        assert_eq!(
            registry.run("fibonacci", Value::from(10), &ctx),
            Ok(Value::from(55))
        );
    }
}
