//! A task type's tests run its code with a [`Recorder`]: a [`TaskContext`] that keeps every
//! progress report the task publishes and can be cancelled, as a worker's would be.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::TaskContext;

/// Records what a task reports while it runs; cancel it to see the task stop.
#[derive(Debug, Default)]
pub struct Recorder {
    cancelled: AtomicBool,
    progress: Mutex<Vec<f64>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// One whose task is cancelled from the start: it should stop at its first look.
    pub fn cancelled() -> Self {
        let recorder = Self::new();
        recorder.cancel();
        recorder
    }

    /// Runs `task` with a context that reports here.
    pub fn run<R>(&self, task: impl FnOnce(&TaskContext<'_>) -> R) -> R {
        let publish = |fraction: f64| {
            self.progress
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(fraction);
        };
        task(&TaskContext::new(&self.cancelled, &publish))
    }

    /// Cancels the task, as the Cancel button, the time limit or a shutdown would.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// The progress the task published, in order (at most one report every 50 ms gets out,
    /// and always the last one).
    pub fn progress(&self) -> Vec<f64> {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskError;

    #[test]
    fn it_records_what_a_task_reports_and_cancels_it() {
        let recorder = Recorder::new();
        let done = recorder.run(|ctx| {
            ctx.report_progress(0.5);
            ctx.report_progress(1.0);
            ctx.is_cancelled()
        });
        assert!(!done);
        assert_eq!(recorder.progress().last(), Some(&1.0));
        let stopped: Result<(), TaskError> = Recorder::cancelled().run(|ctx| {
            if ctx.is_cancelled() {
                Err(TaskError::Cancelled)
            } else {
                Ok(())
            }
        });
        assert_eq!(stopped, Err(TaskError::Cancelled));
    }
}
