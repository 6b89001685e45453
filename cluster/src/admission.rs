//! Admission: which queued task may start now. Written once, for whatever runs the tasks.
//!
//! A task starts when it has a slot and its submitter is under the running cap; work that
//! does not say it is short never takes the last free worker thread (the short-work lane).
//! Slots and worker threads differ only for NATS workers: there a slot is a task handed to
//! JetStream and awaited, and tiny tasks may have more slots than there are threads, because
//! they travel to a worker together. Work that is not tiny never has more slots than threads,
//! so it never waits in JetStream behind another session's.

use std::time::Duration;

/// How a cluster is sized and what admission allows.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Worker threads (the seed's `LocalCluster` has 4). NATS app servers read theirs from the
    /// workers' heartbeats instead.
    pub workers: usize,
    /// Most tasks that may wait in the queue; beyond it submissions are refused as busy.
    pub queue_capacity: usize,
    /// Events a listener may fall behind by before it lags.
    pub event_capacity: usize,
    /// Finished tasks kept for task-stream views.
    pub recent_capacity: usize,
    /// A running task is stopped once it has run this long (None: no limit).
    pub task_time_limit: Option<Duration>,
    /// Most tasks one submitter may have waiting; beyond it its submissions are refused.
    pub max_queued_per_submitter: usize,
    /// Most tasks of one submitter running at once (None: one less than the worker threads,
    /// at least 1), so that no submitter can hold every worker.
    pub max_running_per_submitter: Option<usize>,
    /// Tasks expected to take at most this long may use every worker; longer or unknown
    /// ones never take the last free worker.
    pub short_task: Duration,
    /// Tasks expected to take at most this long are tiny: several travel to a NATS worker
    /// in one message, so they may use the slots beyond the worker threads.
    pub tiny_task: Duration,
    /// A result larger than this, encoded as JSON, is a failure rather than a result: it
    /// would otherwise be held, sent and stored without bound.
    pub max_output_bytes: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            queue_capacity: 10_000,
            event_capacity: 4_096,
            recent_capacity: 1_000,
            task_time_limit: Some(Duration::from_secs(300)),
            max_queued_per_submitter: 100,
            max_running_per_submitter: None,
            short_task: Duration::from_secs(1),
            tiny_task: Duration::from_millis(20),
            max_output_bytes: offload_task::MAX_OUTPUT_BYTES,
        }
    }
}

impl ClusterConfig {
    /// The running cap per submitter once the default is resolved.
    pub fn running_per_submitter(&self) -> usize {
        self.max_running_per_submitter
            .unwrap_or(self.workers.max(1) - 1)
            .max(1)
    }
}

/// The limits admission applies, resolved from a [`ClusterConfig`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub queued_per_submitter: usize,
    /// None: one less than the threads (or slots) of the moment, at least 1.
    pub running_per_submitter: Option<usize>,
    pub short_task: Duration,
    pub tiny_task: Duration,
    pub time_limit: Option<Duration>,
    pub max_output_bytes: usize,
}

impl From<&ClusterConfig> for Limits {
    fn from(config: &ClusterConfig) -> Self {
        Self {
            queued_per_submitter: config.max_queued_per_submitter.max(1),
            running_per_submitter: config.max_running_per_submitter,
            short_task: config.short_task,
            tiny_task: config.tiny_task,
            time_limit: config.task_time_limit,
            max_output_bytes: config.max_output_bytes,
        }
    }
}

/// What a task says of its cost, sorted by admission when it is submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cost {
    /// Expected within [`Limits::short_task`].
    pub short: bool,
    /// Expected within [`Limits::tiny_task`].
    pub tiny: bool,
}

impl Limits {
    pub fn cost(&self, expected: Option<Duration>) -> Cost {
        Cost {
            short: expected.is_some_and(|d| d <= self.short_task),
            tiny: expected.is_some_and(|d| d <= self.tiny_task),
        }
    }

    /// The running cap per submitter when `of` tasks may run at once.
    pub fn running_cap(&self, of: usize) -> usize {
        self.running_per_submitter
            .unwrap_or(of.saturating_sub(1))
            .max(1)
    }

    /// Whether a task of `cost` whose submitter runs `mine` tasks now may start.
    pub fn admits(&self, occupancy: &Occupancy, cost: Cost, mine: Running) -> bool {
        let Occupancy {
            slots,
            threads,
            busy,
            tiny_busy,
        } = *occupancy;
        let free_slots = slots.saturating_sub(busy);
        // Tiny tasks beyond the threads share them; every other task holds one.
        let threads_busy = busy - tiny_busy.min(slots.saturating_sub(threads));
        let free_threads = threads.saturating_sub(threads_busy);
        if free_slots == 0 || mine.all >= self.running_cap(slots) {
            return false;
        }
        if cost.tiny {
            return true;
        }
        // With a single thread there is nothing to keep for short work.
        let kept_for_short = usize::from(threads > 1);
        free_threads > 0
            && (cost.short || free_threads > kept_for_short)
            && mine.not_tiny < self.running_cap(threads)
    }
}

/// How full the cluster is now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Occupancy {
    /// Tasks that may run at once.
    pub slots: usize,
    /// Worker threads: as many as the slots here, the live workers' on NATS.
    pub threads: usize,
    /// Tasks running now.
    pub busy: usize,
    /// Of which tiny.
    pub tiny_busy: usize,
}

/// One submitter's running tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Running {
    pub all: usize,
    pub not_tiny: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::from(&ClusterConfig::default())
    }

    const TINY: Cost = Cost {
        short: true,
        tiny: true,
    };
    const SHORT: Cost = Cost {
        short: true,
        tiny: false,
    };
    const LONG: Cost = Cost {
        short: false,
        tiny: false,
    };

    fn at(slots: usize, threads: usize, busy: usize, tiny_busy: usize) -> Occupancy {
        Occupancy {
            slots,
            threads,
            busy,
            tiny_busy,
        }
    }

    fn mine(all: usize, not_tiny: usize) -> Running {
        Running { all, not_tiny }
    }

    #[test]
    fn long_work_never_takes_the_last_free_thread() {
        let l = limits();
        assert!(l.admits(&at(4, 4, 2, 0), LONG, mine(0, 0)));
        assert!(!l.admits(&at(4, 4, 3, 0), LONG, mine(0, 0)));
        assert!(l.admits(&at(4, 4, 3, 0), SHORT, mine(0, 0)));
        assert!(!l.admits(&at(4, 4, 4, 0), SHORT, mine(0, 0)));
        // One thread: nothing to keep.
        assert!(l.admits(&at(1, 1, 0, 0), LONG, mine(0, 0)));
    }

    #[test]
    fn no_submitter_holds_every_thread() {
        let l = limits();
        assert!(l.admits(&at(4, 4, 2, 0), SHORT, mine(2, 2)));
        assert!(!l.admits(&at(4, 4, 3, 0), SHORT, mine(3, 3)));
        let capped = Limits {
            running_per_submitter: Some(1),
            ..l
        };
        assert!(!capped.admits(&at(4, 4, 1, 0), SHORT, mine(1, 1)));
    }

    #[test]
    fn tiny_work_may_use_the_slots_beyond_the_threads_and_other_work_may_not() {
        let l = limits();
        // 4 threads, 64 slots: 60 tiny tasks in flight leave the threads to other work.
        assert!(l.admits(&at(64, 4, 60, 60), TINY, mine(30, 0)));
        assert!(l.admits(&at(64, 4, 60, 60), LONG, mine(0, 0)));
        // Three long ones running: the fourth thread is kept for short work.
        assert!(!l.admits(&at(64, 4, 63, 60), LONG, mine(0, 0)));
        assert!(l.admits(&at(64, 4, 63, 60), SHORT, mine(0, 0)));
        assert!(l.admits(&at(64, 4, 63, 60), TINY, mine(0, 0)));
        // Every slot taken: nothing more.
        assert!(!l.admits(&at(64, 4, 64, 60), TINY, mine(0, 0)));
        // Four short ones hold the threads; tiny work still travels.
        assert!(!l.admits(&at(64, 4, 4, 0), SHORT, mine(0, 0)));
        assert!(l.admits(&at(64, 4, 4, 0), TINY, mine(0, 0)));
    }

    #[test]
    fn embedded_workers_have_as_many_slots_as_threads() {
        let l = limits();
        assert!(!l.admits(&at(4, 4, 4, 4), TINY, mine(0, 0)));
        assert!(!l.admits(&at(4, 4, 3, 3), LONG, mine(0, 0)));
    }

    #[test]
    fn costs_come_from_the_expected_duration() {
        let l = limits();
        assert_eq!(l.cost(None), LONG);
        assert_eq!(l.cost(Some(Duration::from_millis(5))), TINY);
        assert_eq!(l.cost(Some(Duration::from_millis(500))), SHORT);
        assert_eq!(l.cost(Some(Duration::from_secs(5))), LONG);
    }
}
