//! What every worker does with one task, whichever backend it serves: run it with panics caught,
//! say why a stopped task stopped, measure its output, and keep its thread's figures. Written
//! once for the embedded workers ([`crate::local`]) and the NATS workers
//! ([`crate::nats::NatsWorker`]).

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

use crate::{Registry, TaskContext, TaskError, TaskId, WorkerState, WorkerStats};

/// A task's outcome as a worker reports it.
pub(crate) type Reply = Result<Value, TaskError>;

/// Where and when a task ran, as its worker reported it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ran {
    /// `host-pid/thread`: the worker process and its thread.
    pub worker: String,
    /// When the worker started it (its clock, ms since the Unix epoch).
    pub started_at_ms: u64,
    /// 1, or more when a worker died while running it and it was delivered again.
    pub attempt: u32,
}

impl Ran {
    /// Thread `slot` of this process, started at `started_at_ms`, first attempt.
    pub(crate) fn here(slot: usize, started_at_ms: u64) -> Self {
        Self {
            worker: format!("{}/{slot}", crate::probe::this_process().name),
            started_at_ms,
            attempt: 1,
        }
    }
}

/// How a task ended, and where it ran if it did.
#[derive(Debug)]
pub struct Ended {
    pub outcome: Reply,
    /// None when it never started (cancelled while queued, or lost).
    pub ran: Option<Ran>,
}

impl Ended {
    pub(crate) fn unstarted(outcome: Reply) -> Self {
        Self { outcome, ran: None }
    }
}

/// How big a result may be, and what sets that bound (named in the failure's message).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputLimit {
    pub bytes: usize,
    pub set_by: &'static str,
}

impl OutputLimit {
    /// The cluster's `--max-output-bytes`.
    pub fn flag(bytes: usize) -> Self {
        Self {
            bytes,
            set_by: "--max-output-bytes",
        }
    }
}

/// Runs task `name` on this thread; a panic becomes [`TaskError::Panicked`] and the thread
/// carries on. A result bigger than `limit` (as JSON) becomes a failure. Returns the outcome
/// and the size of its result (measured once, for the limit and the figures). `checked`: see
/// [`Registry::run`].
pub(crate) fn run_caught(
    registry: &Registry,
    name: &str,
    input: &Value,
    ctx: &TaskContext<'_>,
    limit: OutputLimit,
    checked: bool,
) -> (Reply, usize) {
    let output = match catch_unwind(AssertUnwindSafe(|| registry.run(name, input, ctx, checked))) {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => return (Err(error), 0),
        Err(panic) => return (Err(TaskError::Panicked(panic_message(panic.as_ref()))), 0),
    };
    let bytes = json_len(&output);
    if bytes > limit.bytes {
        let error = TaskError::Failed(format!(
            "its result is {bytes} bytes, more than the {} bytes a result may have ({})",
            limit.bytes, limit.set_by
        ));
        return (Err(error), 0);
    }
    (Ok(output), bytes)
}

/// Why a task stopped, when it stopped through its cancel flag: the time limit and a shutdown
/// use that flag too, but nobody cancelled those tasks.
pub(crate) fn why_stopped(outcome: Reply, timed_out: Option<u64>, shut_down: bool) -> Reply {
    match outcome {
        Err(TaskError::Cancelled) => match timed_out {
            Some(limit_ms) => Err(TaskError::TimeLimit { limit_ms }),
            None if shut_down => Err(TaskError::Lost(
                "the cluster shut down before it finished".into(),
            )),
            None => Err(TaskError::Cancelled),
        },
        other => other,
    }
}

/// The size of a result encoded as JSON (0 for none), without keeping the encoding.
pub(crate) fn output_bytes(outcome: &Reply) -> usize {
    let Ok(value) = outcome else { return 0 };
    json_len(value)
}

/// The size of `value` encoded as JSON.
pub(crate) fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

impl WorkerStats {
    /// The thread took task `task` (of type `name`) at `at_ms`.
    pub(crate) fn begin(&mut self, task: TaskId, name: std::sync::Arc<str>, at_ms: u64) {
        self.state = WorkerState::Busy;
        self.current = Some(task);
        self.current_task = Some(name);
        self.current_started_at_ms = Some(at_ms);
    }

    /// The thread is done with its task, after `compute_ms`, with `output_bytes` of result.
    pub(crate) fn end(&mut self, compute_ms: f64, output_bytes: usize) {
        self.state = WorkerState::Idle;
        self.current = None;
        self.current_task = None;
        self.current_started_at_ms = None;
        self.tasks_done += 1;
        self.busy_ms += compute_ms;
        self.output_bytes += output_bytes as u64;
    }
}

/// The `offload_task_duration_seconds` histogram: how long workers spent on each task.
pub(crate) fn record_duration(task: &str, compute_ms: f64) {
    metrics::histogram!("offload_task_duration_seconds", "task_type" => task.to_owned())
        .record(compute_ms / 1e3);
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_task_says_why_it_stopped() {
        let cancelled = || Err(TaskError::Cancelled);
        assert_eq!(
            why_stopped(cancelled(), Some(1500), false),
            Err(TaskError::TimeLimit { limit_ms: 1500 })
        );
        assert!(matches!(
            why_stopped(cancelled(), None, true),
            Err(TaskError::Lost(_))
        ));
        assert_eq!(
            why_stopped(cancelled(), None, false),
            Err(TaskError::Cancelled)
        );
        assert_eq!(
            why_stopped(Ok(Value::from(3)), Some(1), true),
            Ok(Value::from(3))
        );
    }

    #[test]
    fn output_sizes_are_their_json_encoding() {
        assert_eq!(output_bytes(&Ok(Value::from(6765))), 4);
        assert_eq!(output_bytes(&Ok(serde_json::json!({"a": [1, 2]}))), 11);
        assert_eq!(output_bytes(&Err(TaskError::Cancelled)), 0);
    }
}
