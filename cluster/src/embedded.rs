//! The embedded backend: a scheduler and N worker OS threads inside this process.
//!
//! One mutex guards the queue, the live tasks, worker stats and the ring of recent tasks, so
//! that every snapshot is consistent; its critical sections are a few map operations. Events go
//! out on a bounded broadcast channel after the lock is released: a slow listener lags (and
//! resyncs from a snapshot), it never slows the workers.
//!
//! Admission control lives here, once, for whatever carries the work: per-submitter caps on
//! queued and running tasks, a lane that keeps one worker for short work, and a wall-clock
//! limit per task enforced by a watchdog thread through the task's cancellation flag.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot, watch};

use crate::queue::FairQueue;
use crate::{
    ClusterEvent, ClusterStats, EventKind, FinishedTask, GroupStats, ProcessStats, Registry,
    Submitter, TaskContext, TaskError, TaskId, TaskInfo, TaskState, Totals, WorkerProcess,
    WorkerState, WorkerStats, now_ms,
};

/// How an embedded cluster is sized.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Worker threads (the seed's `LocalCluster` has 4).
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
    /// Most tasks of one submitter running at once (None: one less than the workers, at
    /// least 1), so that no submitter can hold every worker.
    pub max_running_per_submitter: Option<usize>,
    /// Tasks expected to take at most this long may use every worker; longer or unknown
    /// ones never take the last free worker.
    pub short_task: Duration,
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
struct Limits {
    queued_per_submitter: usize,
    /// None: one less than the workers of the moment, at least 1.
    running_per_submitter: Option<usize>,
    short_task: Duration,
    time_limit: Option<Duration>,
}

impl Limits {
    fn running_cap(&self, capacity: usize) -> usize {
        self.running_per_submitter
            .unwrap_or(capacity.saturating_sub(1))
            .max(1)
    }

    /// Workers that long work must leave free; with a single worker there is nothing to keep.
    fn reserved_for_short(capacity: usize) -> usize {
        usize::from(capacity > 1)
    }
}

/// Where a task's work is done once admission has let it start.
pub(crate) enum Executor {
    /// On the worker thread itself.
    Local,
    /// On a worker of a NATS cluster; the thread waits for the result.
    Remote(Arc<crate::nats::Dispatch>),
}

/// A running embedded cluster. Dropping it cancels running tasks, fails queued ones as lost
/// and joins the worker threads.
pub struct EmbeddedCluster {
    shared: Arc<Shared>,
}

impl EmbeddedCluster {
    /// Starts `config.workers` workers that run every task this crate ships.
    pub fn start(config: ClusterConfig) -> Self {
        Self::start_with(config, Registry::default())
    }

    /// Starts workers that run the tasks in `registry`.
    pub fn start_with(config: ClusterConfig, registry: Registry) -> Self {
        let workers = config.workers.max(1);
        let cluster = Self::scheduler(&config, registry, Executor::Local, "embedded");
        cluster.shared.set_capacity(workers);
        tracing::info!(
            workers,
            capacity = config.queue_capacity,
            queued_per_submitter = config.max_queued_per_submitter,
            running_per_submitter = config.running_per_submitter(),
            time_limit_s = config.task_time_limit.map(|l| l.as_secs_f64()),
            "embedded cluster started"
        );
        cluster
    }

    /// The scheduler alone, with no worker yet: [`Shared::set_capacity`] adds them.
    pub(crate) fn scheduler(
        config: &ClusterConfig,
        registry: Registry,
        executor: Executor,
        kind: &'static str,
    ) -> Self {
        let limits = Limits {
            queued_per_submitter: config.max_queued_per_submitter.max(1),
            running_per_submitter: config.max_running_per_submitter,
            short_task: config.short_task,
            time_limit: config.task_time_limit,
        };
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                queue: FairQueue::new(config.queue_capacity),
                live: HashMap::new(),
                workers: Vec::new(),
                totals: Totals::default(),
                groups: BTreeMap::new(),
                failures: VecDeque::new(),
                recent: VecDeque::with_capacity(config.recent_capacity),
                running_by: HashMap::new(),
                capacity: 0,
                busy: 0,
                running: Vec::new(),
                draining: false,
                shutdown: false,
            }),
            limits,
            work_ready: Condvar::new(),
            events,
            registry,
            executor,
            kind,
            next_id: AtomicU64::new(1),
            recent_capacity: config.recent_capacity,
            process: Mutex::new(ProcessProbe::new()),
            threads: Mutex::new(Vec::new()),
        });
        if let Some(limit) = config.task_time_limit {
            let watched = shared.clone();
            shared.threads.lock().push(
                std::thread::Builder::new()
                    .name("offload-watchdog".into())
                    .spawn(move || watchdog(&watched, limit))
                    .expect("spawning the watchdog thread"),
            );
        }
        Self { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A handle for submitting work; clone it freely.
    pub fn client(&self) -> crate::Client {
        crate::Client::scheduler(self.shared.clone())
    }

    /// The first step of a graceful stop: new submissions are refused and queued tasks stay
    /// queued, while running tasks carry on.
    pub fn drain(&self) {
        self.shared.inner.lock().draining = true;
    }

    /// Waits until no task is running or `grace` has passed; true when none is running.
    pub async fn wait_idle(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if self.shared.inner.lock().running.iter().all(Option::is_none) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        let drained: Vec<Job> = {
            let mut inner = self.shared.inner.lock();
            inner.shutdown = true;
            for live in inner.live.values() {
                live.cancel.store(true, Ordering::Relaxed);
            }
            inner.queue.drain().collect()
        };
        for job in drained {
            let _ = job.reply.send(Err(TaskError::Lost(
                "the cluster shut down before it ran".into(),
            )));
        }
        self.shared.work_ready.notify_all();
        // Taken out first: a thread that ends drops its handle on `shared`, not on itself.
        let threads = std::mem::take(&mut *self.shared.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
        tracing::info!(kind = self.shared.kind, "cluster scheduler stopped");
    }
}

pub(crate) type Reply = Result<Value, TaskError>;

struct Job {
    id: TaskId,
    name: Arc<str>,
    input: Value,
    submitter: Submitter,
    queued_at: Instant,
    /// Expected to finish within the short-task bound.
    short: bool,
    /// What the task said it expects to take, if it knows.
    expected: Option<Duration>,
    cancel: Arc<AtomicBool>,
    progress: watch::Sender<f64>,
    reply: oneshot::Sender<Reply>,
}

struct Live {
    info: TaskInfo,
    cancel: Arc<AtomicBool>,
}

struct Inner {
    queue: FairQueue<Submitter, Job>,
    live: HashMap<TaskId, Live>,
    workers: Vec<WorkerStats>,
    totals: Totals,
    /// Kept here, under the lock every state change takes anyway, so that dashboards can read
    /// them once a second instead of listening to every event.
    groups: BTreeMap<Arc<str>, GroupStats>,
    failures: VecDeque<FinishedTask>,
    recent: VecDeque<FinishedTask>,
    /// Running tasks per submitter, for the running cap.
    running_by: HashMap<Submitter, usize>,
    /// Tasks that may run at once: the worker threads here, or the remote workers' threads.
    capacity: usize,
    /// Tasks running now.
    busy: usize,
    /// What the watchdog needs of each worker's current task.
    running: Vec<Option<Running>>,
    /// Stopping: refuse submissions, start nothing new.
    draining: bool,
    shutdown: bool,
}

/// A running task as the watchdog sees it.
struct Running {
    task: TaskId,
    started: Instant,
    cancel: Arc<AtomicBool>,
    /// Set by the watchdog, together with `cancel`, when the task ran past its time limit.
    timed_out: bool,
}

/// Failed tasks kept for exception views.
const FAILURES_KEPT: usize = 100;

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

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    work_ready: Condvar,
    events: broadcast::Sender<ClusterEvent>,
    pub(crate) registry: Registry,
    executor: Executor,
    /// What carries the work, for display: "embedded" or "nats".
    pub(crate) kind: &'static str,
    next_id: AtomicU64,
    recent_capacity: usize,
    limits: Limits,
    process: Mutex<ProcessProbe>,
    /// The worker threads (and the watchdog), joined when the cluster is dropped.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Why the embedded backend refused a submission.
pub(crate) enum Refusal {
    Full(usize),
    SubmitterFull(usize),
    ShutDown,
}

pub(crate) struct Accepted {
    pub id: TaskId,
    pub reply: oneshot::Receiver<Reply>,
    pub progress: watch::Receiver<f64>,
}

impl Shared {
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

    fn time_limit_ms(&self) -> u64 {
        self.limits.time_limit.map_or(0, |l| l.as_millis() as u64)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    pub(crate) fn submit(
        &self,
        name: &'static str,
        input: Value,
        expected: Option<Duration>,
        submitter: &Submitter,
        admitted_before: bool,
    ) -> Result<Accepted, Refusal> {
        let id = TaskId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let input_bytes = json_len(&input);
        let name: Arc<str> = Arc::from(name);
        let (reply_tx, reply_rx) = oneshot::channel();
        let (progress_tx, progress_rx) = watch::channel(0.0);
        let cancel = Arc::new(AtomicBool::new(false));
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
            short: expected.is_some_and(|d| d <= self.limits.short_task),
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
        self.work_ready.notify_one();
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
            // The worker notices at its next checkpoint and reports the cancellation.
            live.cancel.store(true, Ordering::Relaxed);
            drop(inner);
            self.interrupt(id);
            return true;
        }
        let submitter = live.info.submitter.clone();
        let Some(job) = inner.queue.remove(&submitter, |job| job.id == id) else {
            return false;
        };
        let live = inner.live.remove(&id).expect("queued task is live");
        inner.totals.cancelled += 1;
        let group = inner.group(&job.name);
        group.queued = group.queued.saturating_sub(1);
        group.cancelled += 1;
        self.record(&mut inner, &live.info, TaskState::Cancelled, None, 0);
        drop(inner);
        let _ = job.reply.send(Err(TaskError::Cancelled));
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

    /// Tells a remote worker that a running task's cancel flag is set.
    fn interrupt(&self, id: TaskId) {
        if let Executor::Remote(dispatch) = &self.executor {
            dispatch.interrupt(id);
        }
    }

    pub(crate) fn workers(&self) -> usize {
        self.inner.lock().capacity
    }

    /// Sets how many tasks may run at once, adding worker threads when there are too few.
    /// Fewer is fine: tasks running beyond the new capacity finish, and no more start.
    pub(crate) fn set_capacity(self: &Arc<Self>, capacity: usize) {
        let mut inner = self.inner.lock();
        if inner.capacity == capacity {
            return;
        }
        inner.capacity = capacity;
        let mut threads = self.threads.lock();
        while inner.workers.len() < capacity {
            let id = inner.workers.len();
            inner.workers.push(WorkerStats::idle(id));
            inner.running.push(None);
            let shared = self.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("offload-worker-{id}"))
                    .spawn(move || worker_loop(&shared, id))
                    .expect("spawning a worker thread"),
            );
        }
        drop(threads);
        drop(inner);
        self.work_ready.notify_all();
    }

    pub(crate) fn stats(&self) -> ClusterStats {
        let (process, gpus) = {
            let mut probe = self.process.lock();
            (probe.sample(), probe.gpus())
        };
        let inner = self.inner.lock();
        let mut totals = inner.totals;
        totals.queued = inner.queue.len() as u64;
        totals.running = inner
            .workers
            .iter()
            .filter(|w| w.state == WorkerState::Busy)
            .count() as u64;
        let at_ms = now_ms();
        // Embedded workers live here; a NATS app server's threads only wait on remote ones.
        let processes = match self.executor {
            Executor::Local => {
                let me = crate::nats::this_process();
                vec![WorkerProcess::of(
                    me.name.clone(),
                    me.host.clone(),
                    me.pid,
                    &inner.workers,
                    process,
                    at_ms,
                )]
            }
            Executor::Remote(_) => Vec::new(),
        };
        ClusterStats {
            at_ms,
            processes,
            workers: inner.workers.clone(),
            totals,
            queue_capacity: inner.queue.capacity(),
            recent: inner.recent.iter().cloned().collect(),
            groups: inner.groups.values().cloned().collect(),
            failures: inner.failures.iter().cloned().collect(),
            process,
            gpus,
        }
    }

    fn record(
        &self,
        inner: &mut Inner,
        info: &TaskInfo,
        state: TaskState,
        error: Option<String>,
        output_bytes: usize,
    ) {
        let task = FinishedTask {
            id: info.id,
            name: Arc::from(info.task.as_str()),
            submitter: info.submitter.clone(),
            state,
            worker: info.worker,
            queued_at_ms: info.queued_at_ms,
            started_at_ms: info.started_at_ms,
            ended_at_ms: now_ms(),
            error,
            output_bytes,
        };
        if state == TaskState::Failed {
            if inner.failures.len() == FAILURES_KEPT {
                inner.failures.pop_front();
            }
            inner.failures.push_back(task.clone());
        }
        if self.recent_capacity == 0 {
            return;
        }
        if inner.recent.len() == self.recent_capacity {
            inner.recent.pop_front();
        }
        inner.recent.push_back(task);
    }

    /// Blocks until there is a job for worker `id` that admission lets it take, or returns
    /// None at shutdown. The caller is idle while it waits.
    fn next_job(&self, id: usize) -> Option<Job> {
        let limits = self.limits;
        let mut inner = self.inner.lock();
        loop {
            if inner.shutdown {
                inner.workers[id].state = WorkerState::Stopped;
                return None;
            }
            let Inner {
                queue,
                running_by,
                capacity,
                busy,
                draining,
                ..
            } = &mut *inner;
            let free = capacity.saturating_sub(*busy);
            let long_allowed = free > Limits::reserved_for_short(*capacity);
            let running_cap = limits.running_cap(*capacity);
            let popped = queue.pop_eligible(|submitter, job| {
                !*draining
                    && free > 0
                    && (job.short || long_allowed)
                    && running_by.get(submitter).copied().unwrap_or(0) < running_cap
            });
            if let Some(job) = popped {
                *running_by.entry(job.submitter.clone()).or_default() += 1;
                *busy += 1;
                inner.running[id] = Some(Running {
                    task: job.id,
                    started: Instant::now(),
                    cancel: job.cancel.clone(),
                    timed_out: false,
                });
                if inner.queue.len() > 0 {
                    // Another idle worker may be allowed what this one left.
                    self.work_ready.notify_one();
                }
                let started_at_ms = now_ms();
                let wait_ms = millis(job.queued_at.elapsed());
                let group = inner.group(&job.name);
                group.queued = group.queued.saturating_sub(1);
                group.running += 1;
                group.wait_ms += wait_ms;
                if let Some(live) = inner.live.get_mut(&job.id) {
                    live.info.state = TaskState::Running;
                    live.info.worker = Some(id);
                    live.info.started_at_ms = Some(started_at_ms);
                }
                let worker = &mut inner.workers[id];
                worker.state = WorkerState::Busy;
                worker.current = Some(job.id);
                worker.current_task = Some(job.name.clone());
                worker.current_started_at_ms = Some(started_at_ms);
                return Some(job);
            }
            self.work_ready.wait(&mut inner);
        }
    }
}

fn worker_loop(shared: &Shared, worker: usize) {
    while let Some(job) = shared.next_job(worker) {
        run_job(shared, worker, job);
    }
}

fn run_job(shared: &Shared, worker: usize, job: Job) {
    let started = Instant::now();
    // Tells the handle's progress watchers that the task has started.
    job.progress.send_replace(0.0);
    let wait_ms = millis(started - job.queued_at);
    shared.emit(
        job.id,
        &job.name,
        &job.submitter,
        EventKind::Started { worker, wait_ms },
    );
    tracing::debug!(worker, task = %job.id, name = %job.name, input = %job.input, "start");

    let publish = |fraction: f64| {
        job.progress.send_replace(fraction);
        if let Some(live) = shared.inner.lock().live.get_mut(&job.id) {
            live.info.progress = fraction;
        }
        shared.emit(
            job.id,
            &job.name,
            &job.submitter,
            EventKind::Progress { worker, fraction },
        );
    };
    let ctx = TaskContext::new(&job.cancel, &publish);
    let outcome = catch_unwind(AssertUnwindSafe(|| match &shared.executor {
        Executor::Local => shared.registry.run(&job.name, job.input, &ctx),
        Executor::Remote(dispatch) => dispatch.run(
            job.id,
            &job.name,
            job.input,
            job.expected,
            &job.cancel,
            &ctx,
        ),
    }))
    .unwrap_or_else(|panic| Err(TaskError::Panicked(panic_message(panic.as_ref()))));
    // The watchdog and a shutdown stop tasks through their cancel flag, but nobody cancelled
    // them: say what really happened.
    let outcome = match outcome {
        Err(TaskError::Cancelled) => {
            let inner = shared.inner.lock();
            if inner.running[worker].as_ref().is_some_and(|r| r.timed_out) {
                Err(TaskError::TimeLimit {
                    limit_ms: shared.time_limit_ms(),
                })
            } else if inner.shutdown {
                Err(TaskError::Lost(
                    "the cluster shut down before it finished".into(),
                ))
            } else {
                Err(TaskError::Cancelled)
            }
        }
        other => other,
    };
    let compute_ms = millis(started.elapsed());
    if let Executor::Local = shared.executor {
        record_duration(&job.name, compute_ms);
    }

    let output_bytes = outcome.as_ref().map_or(0, json_len);
    let (state, kind) = match &outcome {
        Ok(_) => (
            TaskState::Finished,
            EventKind::Finished {
                worker,
                compute_ms,
                output_bytes,
            },
        ),
        Err(TaskError::Cancelled) => (
            TaskState::Cancelled,
            EventKind::Cancelled {
                worker: Some(worker),
            },
        ),
        Err(error) => (
            TaskState::Failed,
            EventKind::Failed {
                worker: Some(worker),
                error: error.clone(),
            },
        ),
    };
    {
        let mut inner = shared.inner.lock();
        if let Some(live) = inner.live.remove(&job.id) {
            let error = outcome.as_ref().err().map(ToString::to_string);
            shared.record(&mut inner, &live.info, state, error, output_bytes);
        }
        match state {
            TaskState::Finished => inner.totals.finished += 1,
            TaskState::Cancelled => inner.totals.cancelled += 1,
            _ => inner.totals.failed += 1,
        }
        let group = inner.group(&job.name);
        group.running = group.running.saturating_sub(1);
        group.compute_ms += compute_ms;
        group.output_bytes += output_bytes as u64;
        match state {
            TaskState::Finished => group.finished += 1,
            TaskState::Cancelled => group.cancelled += 1,
            _ => group.failed += 1,
        }
        if let Some(count) = inner.running_by.get_mut(&job.submitter) {
            *count -= 1;
            if *count == 0 {
                inner.running_by.remove(&job.submitter);
            }
        }
        inner.busy -= 1;
        inner.running[worker] = None;
        let stats = &mut inner.workers[worker];
        stats.state = WorkerState::Idle;
        stats.current = None;
        stats.current_task = None;
        stats.current_started_at_ms = None;
        stats.tasks_done += 1;
        stats.busy_ms += compute_ms;
        stats.output_bytes += output_bytes as u64;
    }
    match &outcome {
        Ok(_) => {
            tracing::debug!(worker, task = %job.id, name = %job.name, compute_ms, "end");
        }
        Err(error) => {
            tracing::info!(worker, task = %job.id, name = %job.name, compute_ms, %error, "end");
        }
    }
    shared.emit(job.id, &job.name, &job.submitter, kind);
    // The submitter may have stopped waiting; the result is then simply dropped.
    let _ = job.reply.send(outcome);
}

/// Stops tasks that run past `limit`, through the same flag as a cancel; the worker then
/// reports the time limit. Scanning the workers' current tasks a few times a second costs
/// nothing measurable and needs no wake-up on every task start.
fn watchdog(shared: &Shared, limit: Duration) {
    let tick = (limit / 10).clamp(Duration::from_millis(10), Duration::from_millis(100));
    loop {
        std::thread::sleep(tick);
        let mut inner = shared.inner.lock();
        if inner.shutdown {
            return;
        }
        let mut overdue = Vec::new();
        for running in inner.running.iter_mut().flatten() {
            if !running.timed_out && running.started.elapsed() >= limit {
                running.timed_out = true;
                running.cancel.store(true, Ordering::Relaxed);
                overdue.push(running.task);
            }
        }
        drop(inner);
        for task in overdue {
            shared.interrupt(task);
        }
    }
}

/// The `offload_task_duration_seconds` histogram: how long workers spent on each task.
pub(crate) fn record_duration(task: &str, compute_ms: f64) {
    metrics::histogram!("offload_task_duration_seconds", "task" => task.to_owned())
        .record(compute_ms / 1e3);
}

/// The size of `value` encoded as JSON, without keeping the encoding.
fn json_len(value: &Value) -> usize {
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

fn millis(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
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

/// Reads this process's CPU and memory through `sysinfo`, and the host's GPUs through NVML.
pub(crate) struct ProcessProbe {
    system: sysinfo::System,
    pid: Option<sysinfo::Pid>,
    nvml: Option<nvml_wrapper::Nvml>,
}

impl ProcessProbe {
    pub(crate) fn new() -> Self {
        let nvml = match nvml_wrapper::Nvml::init() {
            Ok(nvml) => Some(nvml),
            Err(error) => {
                tracing::debug!(%error, "no NVML: GPU views will say there is no GPU");
                None
            }
        };
        Self {
            system: sysinfo::System::new(),
            pid: sysinfo::get_current_pid().ok(),
            nvml,
        }
    }

    fn gpus(&self) -> Vec<crate::GpuStats> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let count = nvml.device_count().unwrap_or(0);
        (0..count)
            .filter_map(|i| {
                let device = nvml.device_by_index(i).ok()?;
                let memory = device.memory_info().ok()?;
                Some(crate::GpuStats {
                    name: device.name().unwrap_or_else(|_| format!("GPU {i}")),
                    utilization_percent: device
                        .utilization_rates()
                        .map_or(0.0, |u| f64::from(u.gpu)),
                    memory_used_bytes: memory.used,
                    memory_total_bytes: memory.total,
                })
            })
            .collect()
    }

    pub(crate) fn sample(&mut self) -> ProcessStats {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let Some(pid) = self.pid else {
            return ProcessStats {
                cores,
                ..ProcessStats::default()
            };
        };
        self.system.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[pid]),
            true,
            sysinfo::ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory(),
        );
        self.system
            .process(pid)
            .map(|p| ProcessStats {
                cpu_percent: p.cpu_usage(),
                memory_bytes: p.memory(),
                cores,
            })
            .unwrap_or(ProcessStats {
                cores,
                ..ProcessStats::default()
            })
    }
}
