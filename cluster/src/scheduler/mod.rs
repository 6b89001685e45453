//! The scheduler: one per app server, whatever runs its tasks. It holds the fair queue, the
//! live tasks, the figures dashboards read and the event channel, and lets [`admission`]
//! decide which queued task takes a free slot. What fills a slot is a backend's business:
//! a worker thread of this process ([`crate::local`]) or a future awaiting a NATS worker's
//! result ([`crate::nats`]); both hand a task back through [`Core::finish`], which does the
//! bookkeeping once.
//!
//! One mutex guards the queue, the live tasks, slot stats and the ring of recent tasks, so
//! that every snapshot is consistent; its critical sections are a few map operations. Events
//! go out on a bounded broadcast channel after the lock is released: a slow listener lags
//! (and resyncs from a snapshot), it never slows the workers.
//!
//! [`admission`]: crate::admission

mod figures;
mod slots;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use model::Backend;
use parking_lot::{Condvar, Mutex};
use serde_json::Value;
use tokio::sync::{Notify, broadcast, oneshot, watch};

use crate::admission::{ClusterConfig, Cost, Limits, Occupancy, Running};
use crate::probe::{ProcessProbe, this_process};
use crate::queue::FairQueue;
use crate::work::{Ended, Ran, Reply, json_len, why_stopped};
use crate::{
    ClusterEvent, ClusterStats, EventKind, FinishedTask, GroupStats, Registry, Submitter,
    TaskError, TaskId, TaskInfo, TaskState, Totals, WorkerProcess, WorkerState, WorkerStats,
    now_ms,
};

/// Failed tasks kept for exception views.
const FAILURES_KEPT: usize = 100;

/// A task's cancel flag, which the time limit and a shutdown raise too. Worker threads poll
/// it; a task awaited remotely is woken by it.
#[derive(Debug, Default)]
pub(crate) struct CancelFlag {
    flag: AtomicBool,
    raised: Notify,
}

impl CancelFlag {
    pub fn raise(&self) {
        self.flag.store(true, Ordering::Relaxed);
        // Stores a permit when nobody waits yet, so no raise is missed.
        self.raised.notify_one();
    }

    pub fn is_raised(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// The flag as a task's [`crate::TaskContext`] polls it.
    pub fn as_atomic(&self) -> &AtomicBool {
        &self.flag
    }

    /// Returns once the flag is raised.
    pub async fn raised(&self) {
        while !self.is_raised() {
            self.raised.notified().await;
        }
    }
}

/// A task admitted to the queue, and then to a slot.
pub(crate) struct Job {
    pub id: TaskId,
    pub name: Arc<str>,
    /// Shared with the task's [`TaskInfo`]: the submit path never copies it.
    pub input: Arc<Value>,
    pub submitter: Submitter,
    queued_at: Instant,
    cost: Cost,
    /// What the task said it expects to take, if it knows.
    pub expected: Option<Duration>,
    pub cancel: Arc<CancelFlag>,
    progress: watch::Sender<f64>,
    reply: oneshot::Sender<Ended>,
}

struct Live {
    info: TaskInfo,
    cancel: Arc<CancelFlag>,
}

/// A slot's running task, as the watchdog sees it.
struct Busy {
    task: TaskId,
    started: Instant,
    cancel: Arc<CancelFlag>,
    /// Set by the watchdog, together with `cancel`, when the task ran past its time limit.
    timed_out: bool,
}

struct Inner {
    queue: FairQueue<Submitter, Job>,
    live: HashMap<TaskId, Live>,
    /// One per slot ever opened: worker threads here, tasks in flight on NATS.
    slots: Vec<WorkerStats>,
    /// The running task of each slot.
    running: Vec<Option<Busy>>,
    /// Slots below `occupancy.slots` with nothing running, lowest first.
    idle: BTreeSet<usize>,
    occupancy: Occupancy,
    totals: Totals,
    /// Kept here, under the lock every state change takes anyway, so that dashboards can read
    /// them once a second instead of listening to every event.
    groups: BTreeMap<Arc<str>, GroupStats>,
    failures: VecDeque<FinishedTask>,
    recent: VecDeque<FinishedTask>,
    /// Running tasks per submitter, for the running caps.
    running_by: HashMap<Submitter, Running>,
    /// Stopping: refuse submissions, start nothing new.
    draining: bool,
    shutdown: bool,
}

impl Inner {
    fn group(&mut self, name: &Arc<str>) -> &mut GroupStats {
        self.groups
            .entry(name.clone())
            .or_insert_with(|| GroupStats {
                name: name.clone(),
                ..GroupStats::default()
            })
    }
}

/// Why a submission was refused.
pub(crate) enum Refusal {
    Full(usize),
    SubmitterFull(usize),
    ShutDown,
    /// No live worker runs the type.
    NoWorker,
}

pub(crate) struct Accepted {
    pub id: TaskId,
    pub reply: oneshot::Receiver<Ended>,
    pub progress: watch::Receiver<f64>,
}

/// The scheduler's state, shared by the [`crate::Client`]s, the backend and the watchdog.
pub(crate) struct Core {
    inner: Mutex<Inner>,
    /// Worker threads of this process wait here for work.
    work_ready: Condvar,
    /// A remote backend waits here for work and free slots.
    pub(crate) slot_ready: Arc<Notify>,
    events: broadcast::Sender<ClusterEvent>,
    pub(crate) registry: Registry,
    pub(crate) backend: Backend,
    next_id: AtomicU64,
    recent_capacity: usize,
    pub(crate) limits: Limits,
    process: Mutex<ProcessProbe>,
    /// On NATS, the task types some live worker runs with this server's input schema, once
    /// known; None: every registered type (embedded workers run them all).
    runnable: Mutex<Option<HashSet<Arc<str>>>>,
}

/// The one scheduler of an app server: its [`crate::Client`]s submit to it, and dropping it
/// fails queued tasks as lost, stops running ones and ends the watchdog.
pub struct Scheduler {
    core: Arc<Core>,
    watchdog: Option<JoinHandle<()>>,
}

/// A thread could not be started.
#[derive(Debug, thiserror::Error)]
#[error("starting the {what} thread: {source}")]
pub struct SpawnError {
    what: String,
    source: std::io::Error,
}

pub(crate) fn spawn(
    name: String,
    run: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, SpawnError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(run)
        .map_err(|source| SpawnError { what: name, source })
}

impl Scheduler {
    pub(crate) fn start(
        config: &ClusterConfig,
        registry: Registry,
        backend: Backend,
    ) -> Result<Self, SpawnError> {
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let core = Arc::new(Core {
            inner: Mutex::new(Inner {
                queue: FairQueue::new(config.queue_capacity),
                live: HashMap::new(),
                slots: Vec::new(),
                running: Vec::new(),
                idle: BTreeSet::new(),
                occupancy: Occupancy::default(),
                totals: Totals::default(),
                groups: BTreeMap::new(),
                failures: VecDeque::new(),
                recent: VecDeque::with_capacity(config.recent_capacity),
                running_by: HashMap::new(),
                draining: false,
                shutdown: false,
            }),
            work_ready: Condvar::new(),
            slot_ready: Arc::new(Notify::new()),
            events,
            registry,
            backend,
            next_id: AtomicU64::new(1),
            recent_capacity: config.recent_capacity,
            limits: Limits::from(config),
            process: Mutex::new(ProcessProbe::new()),
            runnable: Mutex::new(None),
        });
        let watchdog = match config.task_time_limit {
            Some(limit) => {
                let watched = Arc::downgrade(&core);
                Some(spawn("offload-watchdog".into(), move || {
                    crate::watchdog::watch(limit, |limit| {
                        watched
                            .upgrade()
                            .is_some_and(|core| core.stop_overdue(limit))
                    });
                })?)
            }
            None => None,
        };
        Ok(Self { core, watchdog })
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// A handle for submitting work; clone it freely.
    pub fn client(&self) -> crate::Client {
        crate::Client::scheduler(self.core.clone())
    }

    /// The first step of a graceful stop: new submissions are refused and queued tasks stay
    /// queued, while running tasks carry on.
    pub fn drain(&self) {
        self.core.inner.lock().draining = true;
    }

    /// Waits until no task is running or `grace` has passed; true when none is running.
    pub async fn wait_idle(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if self.core.inner.lock().occupancy.busy == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.core.shut_down();
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
        tracing::info!(
            backend = self.core.backend.name(),
            "cluster scheduler stopped"
        );
    }
}

impl Core {
    fn emit(&self, task: TaskId, name: &Arc<str>, submitter: &Submitter, kind: EventKind) {
        // An error only means nobody listens right now.
        let _ = self.events.send(ClusterEvent {
            task,
            name: name.clone(),
            submitter: submitter.clone(),
            at_ms: now_ms(),
            kind,
        });
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    /// Wakes whoever fills slots: a worker thread, or the remote backend.
    fn wake(&self, all: bool) {
        if all {
            self.work_ready.notify_all();
        } else {
            self.work_ready.notify_one();
        }
        self.slot_ready.notify_one();
    }

    pub(crate) fn submit(
        &self,
        name: &'static str,
        input: Value,
        expected: Option<Duration>,
        submitter: &Submitter,
        admitted_before: bool,
    ) -> Result<Accepted, Refusal> {
        if !admitted_before
            && self
                .runnable
                .lock()
                .as_ref()
                .is_some_and(|types| !types.contains(name))
        {
            return Err(Refusal::NoWorker);
        }
        let id = TaskId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let input_bytes = json_len(&input);
        let input = Arc::new(input);
        let name: Arc<str> = Arc::from(name);
        let (reply_tx, reply_rx) = oneshot::channel();
        let (progress_tx, progress_rx) = watch::channel(0.0);
        let cancel = Arc::new(CancelFlag::default());
        let info = TaskInfo {
            id,
            task: name.to_string(),
            input: input.clone(),
            submitter: submitter.clone(),
            state: TaskState::Queued,
            worker: None,
            queued_at_ms: now_ms(),
            started_at_ms: None,
            progress: 0.0,
        };
        let job = Job {
            id,
            name: name.clone(),
            input,
            submitter: submitter.clone(),
            queued_at: Instant::now(),
            cost: self.limits.cost(expected),
            expected,
            cancel: cancel.clone(),
            progress: progress_tx,
            reply: reply_tx,
        };
        {
            let mut inner = self.inner.lock();
            if inner.shutdown || inner.draining {
                return Err(Refusal::ShutDown);
            }
            if !admitted_before {
                if inner.queue.is_full() {
                    return Err(Refusal::Full(inner.queue.capacity()));
                }
                let limit = self.limits.queued_per_submitter;
                if inner.queue.lane_len(submitter) >= limit {
                    return Err(Refusal::SubmitterFull(limit));
                }
            }
            inner.queue.push(submitter.clone(), job);
            inner.live.insert(id, Live { info, cancel });
            inner.totals.submitted += 1;
            let group = inner.group(&name);
            group.queued += 1;
            group.input_bytes += input_bytes as u64;
            // Under the lock: no worker can take the job, and report it started, before
            // listeners have heard that it was queued.
            self.emit(id, &name, submitter, EventKind::Queued { input_bytes });
        }
        self.wake(false);
        Ok(Accepted {
            id,
            reply: reply_rx,
            progress: progress_rx,
        })
    }

    /// Cancels a queued or running task; false when it is neither.
    pub(crate) fn cancel(&self, id: TaskId) -> bool {
        let mut inner = self.inner.lock();
        let Some(live) = inner.live.get(&id) else {
            return false;
        };
        if live.info.state == TaskState::Running {
            // Its worker notices at its next checkpoint and reports the cancellation.
            live.cancel.raise();
            return true;
        }
        let submitter = live.info.submitter.clone();
        let Some(job) = inner.queue.remove(&submitter, |job| job.id == id) else {
            return false;
        };
        let Some(live) = inner.live.remove(&id) else {
            return false;
        };
        inner.totals.cancelled += 1;
        let group = inner.group(&job.name);
        group.queued = group.queued.saturating_sub(1);
        group.cancelled += 1;
        self.record(&mut inner, &live.info, TaskState::Cancelled, None, 0);
        drop(inner);
        let _ = job.reply.send(Ended::unstarted(Err(TaskError::Cancelled)));
        self.emit(
            id,
            &job.name,
            &submitter,
            EventKind::Cancelled { worker: None },
        );
        true
    }

    pub(crate) fn unfinished(&self, submitter: &Submitter) -> Vec<TaskInfo> {
        let inner = self.inner.lock();
        let mut tasks: Vec<TaskInfo> = inner
            .live
            .values()
            .filter(|live| &live.info.submitter == submitter)
            .map(|live| live.info.clone())
            .collect();
        drop(inner);
        tasks.sort_by_key(|t| t.id);
        tasks
    }

    /// Slots and threads, and how many are busy.
    pub(crate) fn occupancy(&self) -> Occupancy {
        self.inner.lock().occupancy
    }

    /// Sets how many tasks may run at once (`slots`) and on how many worker threads. Fewer
    /// than before is fine: tasks running beyond the new figure finish, and no more start.
    /// Which task types may be submitted (see [`Core::runnable`]).
    pub(crate) fn set_runnable(&self, types: Option<HashSet<Arc<str>>>) {
        *self.runnable.lock() = types;
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.inner.lock().shutdown
    }

    /// Refuses everything from now on: queued tasks end as lost, running ones are cancelled
    /// (they end as lost too), and whoever waits for work is woken to leave.
    pub(crate) fn shut_down(&self) {
        let drained: Vec<Job> = {
            let mut inner = self.inner.lock();
            if inner.shutdown {
                return;
            }
            inner.shutdown = true;
            for live in inner.live.values() {
                live.cancel.raise();
            }
            inner.queue.drain().collect()
        };
        for job in drained {
            let _ = job.reply.send(Ended::unstarted(Err(TaskError::Lost(
                "the cluster shut down before it ran".into(),
            ))));
        }
        self.wake(true);
    }
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
