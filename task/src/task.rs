//! What a task is: its type-level description ([`Task`]), the context it runs in
//! ([`TaskContext`]) and how it fails ([`TaskError`]).

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A kind of work a cluster can run: one file in the `tasks` crate and one line in its
/// registry (see `docs/your-own-task.md`).
///
/// Inputs and outputs cross the wire as JSON, so a task behaves the same on an embedded worker
/// thread and on a worker on another machine. Their JSON Schemas (derived with `schemars`) are
/// the rest of its description: the input's fields become the page's form, with their doc
/// comments as labels and help and their `#[schemars(range(..), length(..))]` bounds as the
/// form's limits, enforced on every submission and again on the worker.
pub trait Task: 'static {
    /// Stable name: it identifies the task on the wire, in URLs and in dashboards.
    const NAME: &'static str;
    /// A few words for the picker.
    const TITLE: &'static str;
    /// One paragraph for the picker: what it computes and what makes it heavy.
    const DESCRIPTION: &'static str;
    /// Bump it when a change makes the same input give another result: a batch that reuses
    /// earlier results (`"reuse": true`) reuses only those of this version.
    const VERSION: u32 = 1;
    /// What the submitter sends: a struct of scalar fields (numbers, text, unit enums, bools).
    type Input: Serialize + DeserializeOwned + JsonSchema + Send + fmt::Debug;
    /// What the worker returns.
    type Output: Serialize + DeserializeOwned + JsonSchema + Send + fmt::Debug;

    /// Refuses input that passes the schema's bounds but that the task still cannot run. The
    /// message is shown to users, so it says what is allowed and why.
    fn validate(_input: &Self::Input) -> Result<(), String> {
        Ok(())
    }

    /// How long the task expects to run on one worker, when its input tells. Admission uses it:
    /// work expected to be short may take every worker, while long or unknown work always
    /// leaves one free, so a crowd of long tasks cannot hold up everyone's short ones.
    fn expected_duration(_input: &Self::Input) -> Option<Duration> {
        None
    }

    /// The result in one line for the results terminal, which adds the time it took
    /// (`primes(100)=25, largest 97`, then ` in 0.004sec`).
    fn summary(input: &Self::Input, output: &Self::Output) -> String;

    /// What the form offers once `input` was submitted (the seed's n + 1); by default the
    /// same input again.
    fn next_input(_input: &Self::Input) -> Option<Self::Input> {
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
}
