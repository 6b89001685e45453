//! `offload worker`: a process whose threads pull tasks from the cluster's work queue, run them
//! and publish their results, from any machine that can reach NATS.

mod results;
mod work;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{PullConsumer, pull::BatchConfig};
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::wire::{CancelItem, ProgressItem, ResultItem, TypeAd, WorkItem, WorkerInfo};
use super::{
    Connection, HEARTBEAT_EVERY, IN_PROGRESS_EVERY, MAX_DELIVERIES, Names, NatsError,
    RESULT_REQUEST_PATIENCE, RETRY_EVERY,
};
use crate::probe::{ProcessProbe, this_process};
use crate::work::{OutputLimit, Ran, record_duration, run_caught, why_stopped};
use crate::{
    ClusterStats, Registry, TaskContext, TaskError, Totals, WorkerProcess, WorkerState,
    WorkerStats, now_ms,
};

/// How a worker process joins a cluster.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The deployment's name prefix.
    pub prefix: String,
    /// Tasks it runs at once.
    pub threads: usize,
}

/// A running task's progress goes to its app server at most this often, and only once it has
/// run this long: a task that ends sooner sends none (its result says it is done).
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// A worker stops a task this long after its time limit: the app server's watchdog, which
/// knows the whole story, normally stops it first.
const TIME_LIMIT_MARGIN: Duration = Duration::from_secs(1);

/// How long a pull request waits at JetStream for a task before it is asked again.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// Cancels that arrived before their task, remembered in case it is still on its way.
const EARLY_CANCELS_KEPT: usize = 10_000;
/// Longest a stopping worker waits for NATS to take its leave (its entry in the worker list
/// deleted, its last messages flushed).
const LEAVE_WITHIN: Duration = Duration::from_secs(2);

/// A worker process's part of a cluster. Stop it with [`NatsWorker::stop`].
pub struct NatsWorker {
    state: Arc<State>,
    pulling: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    cancels: JoinHandle<()>,
    /// Ends once every result finished before the stop is stored.
    storing: JoinHandle<()>,
}

/// Workers started in this process so far.
static NEXT_IN_PROCESS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub(crate) struct State {
    /// Its name in the cluster: `host-pid`, and `host-pid-k` for the k-th more worker of one
    /// process (tests start several), so heartbeats never overwrite each other.
    name: String,
    conn: Connection,
    work: PullConsumer,
    registry: Registry,
    /// What it advertises: its types, and the queue of its catalogue.
    types: Vec<TypeAd>,
    queue: String,
    /// Running tasks' cancel flags, by task key.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// The latest start of each app server heard of: tasks of its earlier starts are stale.
    latest_boot: Mutex<HashMap<String, u64>>,
    early_cancels: Mutex<(VecDeque<String>, HashSet<String>)>,
    threads: Mutex<Vec<WorkerStats>>,
    probe: Mutex<ProcessProbe>,
    stopping: AtomicBool,
    /// One OS thread per slot runs its tasks (named like the embedded workers, so that the
    /// dashboard's profile view finds them).
    runners: Vec<std::sync::mpsc::Sender<Work>>,
}

type Work = Box<dyn FnOnce() + Send>;

/// One work message and the tasks it carries: acked once every one of their results is stored.
struct Delivery {
    message: Message,
    /// How many times JetStream has delivered it (its tasks') worker died before.
    delivered: i64,
    /// Its tasks whose results are not stored yet.
    unfinished: AtomicUsize,
    /// How many tasks it carries.
    tasks: usize,
    /// Results of its tasks that ran, held until the last one has: quick tasks that came
    /// together go back together, in one results message (their cost together is bounded by
    /// the app server's batching, 20 ms).
    ran: Mutex<Vec<Finished>>,
}

impl Delivery {
    /// Adds the result of one of its tasks; all of them once the last one has run.
    fn ran(&self, result: Finished) -> Option<Vec<Finished>> {
        if self.tasks == 1 {
            return Some(vec![result]);
        }
        let mut ran = self.ran.lock();
        ran.push(result);
        (ran.len() == self.tasks).then(|| std::mem::take(&mut *ran))
    }

    /// Tells JetStream every second that the message is still being worked on, so that a
    /// long task, or tasks waiting here for a thread, are not given to another worker.
    async fn keep_in_progress(self: Arc<Self>) {
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + IN_PROGRESS_EVERY,
            IN_PROGRESS_EVERY,
        );
        loop {
            tick.tick().await;
            if self.unfinished.load(Ordering::Acquire) == 0 {
                return;
            }
            let _ = self.message.ack_with(AckKind::Progress).await;
        }
    }
}

/// A task's result on its way to its app server.
struct Finished {
    /// That server's name.
    server: String,
    key: String,
    result: ResultItem,
    delivery: Arc<Delivery>,
}

/// Results per results message, at most (a work message carries up to 64 tasks).
const RESULTS_MAX: usize = 128;

fn runner(slot: usize) -> std::sync::mpsc::Sender<Work> {
    let (tx, rx) = std::sync::mpsc::channel::<Work>();
    std::thread::Builder::new()
        .name(format!("offload-worker-{slot}"))
        .spawn(move || {
            // Ends when the worker is dropped and with it the sender.
            while let Ok(work) = rx.recv() {
                work();
            }
        })
        .expect("spawning a worker thread");
    tx
}

impl NatsWorker {
    /// Connects, sets up the cluster's streams if this is the first process, and starts
    /// `config.threads` threads pulling work.
    pub async fn start(config: WorkerConfig, registry: Registry) -> Result<Self, NatsError> {
        let names = Names::new(&config.prefix)?;
        let conn = Connection::open(&config.url, names, "worker").await?;
        let types = TypeAd::all(&registry);
        let queue = TypeAd::queue(&types);
        let work = conn.work_consumer(&queue).await?;
        let threads = config.threads.max(1);
        let (finished, to_store) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            name: match NEXT_IN_PROCESS.fetch_add(1, Ordering::Relaxed) {
                0 => this_process().name.clone(),
                k => format!("{}-{k}", this_process().name),
            },
            conn,
            work,
            registry,
            types,
            queue,
            running: Mutex::new(HashMap::new()),
            latest_boot: Mutex::new(HashMap::new()),
            early_cancels: Mutex::new((VecDeque::new(), HashSet::new())),
            threads: Mutex::new((0..threads).map(WorkerStats::idle).collect()),
            probe: Mutex::new(ProcessProbe::new()),
            stopping: AtomicBool::new(false),
            runners: (0..threads).map(runner).collect(),
        });
        // Heard before the first task can be pulled, so no cancel is missed.
        let cancels = state
            .conn
            .client
            .subscribe(state.conn.names.cancel_subject())
            .await
            .map_err(|e| NatsError::Setup {
                what: "the cancel subscription".into(),
                reason: e.to_string(),
            })?;
        state.beat().await;
        results::count_from_zero();
        let cancels = tokio::spawn(state.clone().listen_cancels(cancels));
        let heartbeat = tokio::spawn(state.clone().heartbeat());
        let storing = tokio::spawn(state.clone().publish_results(to_store));
        let pulling = tokio::spawn(state.clone().pull(threads, finished));
        tracing::info!(
            worker = %state.name,
            threads,
            types = ?state.registry.types().iter().map(|t| t.name()).collect::<Vec<_>>(),
            "worker joined the cluster"
        );
        Ok(Self {
            state,
            pulling,
            heartbeat,
            cancels,
            storing,
        })
    }

    /// This worker's name in the cluster (`host-pid`).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// A client that sees this worker process's threads (for its ops endpoints); it submits
    /// nothing.
    pub fn client(&self) -> crate::Client {
        crate::Client::worker(self.state.clone())
    }

    /// Stops pulling work, lets running tasks finish and their results be stored for up to
    /// `grace` (a task not done by then runs again elsewhere after the ack wait), and leaves
    /// the worker list.
    pub async fn stop(mut self, grace: Duration) {
        self.state.stopping.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + grace;
        // The puller and its tasks hold the only senders of results: once they are done, the
        // publisher stores what is left and ends.
        if tokio::time::timeout_at(deadline, self.pulling)
            .await
            .is_err()
            || tokio::time::timeout_at(deadline, &mut self.storing)
                .await
                .is_err()
        {
            tracing::info!(
                "the grace period ended first: what this worker held runs again elsewhere"
            );
        }
        self.heartbeat.abort();
        self.cancels.abort();
        self.storing.abort();
        // With NATS gone (a Ctrl-C in a terminal stops the cluster's own nats-server too),
        // the delete and the flush would wait for a reconnection that never comes.
        let leave = async {
            let _ = self.state.conn.workers.delete(&self.state.name).await;
            let _ = self.state.conn.client.flush().await;
        };
        if tokio::time::timeout(LEAVE_WITHIN, leave).await.is_err() {
            tracing::info!(
                "NATS did not answer: the worker list drops this worker once its heartbeat is stale"
            );
        } else {
            tracing::info!(worker = %self.state.name, "worker left the cluster");
        }
    }
}

impl State {
    pub(crate) fn threads(&self) -> usize {
        self.threads.lock().len()
    }

    pub(crate) fn connected(&self) -> bool {
        self.conn.client.connection_state() == async_nats::connection::State::Connected
    }

    /// This process's threads and what they have done, as a cluster of one process.
    pub(crate) fn stats(&self) -> ClusterStats {
        let (process, gpus) = {
            let mut probe = self.probe.lock();
            (probe.sample(), probe.gpus())
        };
        let threads = self.threads.lock().clone();
        let at_ms = now_ms();
        let me = this_process();
        let totals = Totals {
            running: threads
                .iter()
                .filter(|t| t.state == WorkerState::Busy)
                .count() as u64,
            finished: threads.iter().map(|t| t.tasks_done).sum(),
            ..Totals::default()
        };
        ClusterStats {
            at_ms,
            processes: vec![
                WorkerProcess::of(
                    self.name.clone(),
                    me.host.clone(),
                    me.pid,
                    &threads,
                    process,
                    at_ms,
                )
                .running_types(
                    self.types
                        .iter()
                        .map(|t| (t.name.as_str(), t.schema.as_str())),
                ),
            ],
            workers: threads,
            totals,
            queue_capacity: 0,
            recent: Vec::new(),
            groups: Vec::new(),
            failures: Vec::new(),
            process,
            gpus,
        }
    }

    async fn heartbeat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tick.tick().await;
            self.beat().await;
        }
    }

    async fn beat(&self) {
        let info = WorkerInfo {
            name: self.name.clone(),
            host: this_process().host.clone(),
            pid: this_process().pid,
            types: self.types.clone(),
            queue: self.queue.clone(),
            threads: self.threads.lock().clone(),
            process: self.probe.lock().sample(),
            at_ms: now_ms(),
        };
        let Ok(value) = serde_json::to_vec(&info) else {
            return;
        };
        if let Err(error) = self.conn.workers.put(&self.name, value.into()).await {
            tracing::warn!(%error, "heartbeat not written");
        }
    }

    async fn listen_cancels(self: Arc<Self>, mut cancels: async_nats::Subscriber) {
        while let Some(message) = cancels.next().await {
            match serde_json::from_slice(&message.payload) {
                Ok(CancelItem::Task { key }) => self.cancel_task(key),
                Ok(CancelItem::Restarted { server, boot }) => {
                    if self.newer_boot(&server, boot) {
                        for (key, flag) in self.running.lock().iter() {
                            if superseded(key, &server, boot) {
                                flag.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Err(error) => tracing::debug!(%error, "a cancel that does not decode"),
            }
        }
    }

    fn cancel_task(&self, key: String) {
        if let Some(flag) = self.running.lock().get(&key) {
            flag.store(true, Ordering::Relaxed);
            return;
        }
        let mut early = self.early_cancels.lock();
        let (order, keys) = &mut *early;
        if keys.insert(key.clone()) {
            order.push_back(key);
            if order.len() > EARLY_CANCELS_KEPT
                && let Some(old) = order.pop_front()
            {
                keys.remove(&old);
            }
        }
    }

    /// Records `boot` as `server`'s latest start; false when a later one is known already.
    fn newer_boot(&self, server: &str, boot: u64) -> bool {
        let mut latest = self.latest_boot.lock();
        let known = latest.entry(server.to_owned()).or_insert(boot);
        *known = (*known).max(boot);
        *known == boot
    }
}

/// Room a results message needs besides one output: the result's envelope and the headers.
const ENVELOPE_BYTES: usize = 16 << 10;

/// The bound on a task's output on this worker: the cluster's `--max-output-bytes`, or less
/// when the NATS server's messages are smaller (NATS refuses a message over its
/// `max_payload`; `offload cluster` starts its nats-server with
/// [`super::server::MAX_PAYLOAD`]).
fn output_limit(max_output_bytes: usize, max_payload: usize) -> OutputLimit {
    let fits = max_payload.saturating_sub(ENVELOPE_BYTES);
    if fits < max_output_bytes {
        OutputLimit {
            bytes: fits,
            set_by: "the most one message of this NATS server carries: raise its max_payload",
        }
    } else {
        OutputLimit::flag(max_output_bytes)
    }
}

/// One result as JSON; one that cannot be a message of `max_payload` bytes (a task's own
/// failure message of megabytes, say) is sent as a failure that says so.
fn encode_result(result: &ResultItem, max_payload: usize) -> Vec<u8> {
    let encoded = serde_json::to_vec(result).unwrap_or_default();
    if !encoded.is_empty() && encoded.len() + 2 <= max_payload {
        return encoded;
    }
    let failed = ResultItem {
        outcome: Err(TaskError::Failed(format!(
            "its result ({} bytes) does not fit in one NATS message ({max_payload} bytes)",
            encoded.len()
        ))),
        worker: result.worker.clone(),
        ran: result.ran.clone(),
        ..*result
    };
    serde_json::to_vec(&failed).unwrap_or_default()
}

/// Groups encoded results into JSON arrays of at most `max_payload` bytes, in order: each
/// with the range of results it holds.
fn pack(encoded: &[Vec<u8>], max_payload: usize) -> Vec<(std::ops::Range<usize>, Vec<u8>)> {
    let mut messages = Vec::new();
    let mut start = 0;
    let mut payload = vec![b'['];
    for (i, result) in encoded.iter().enumerate() {
        if i > start && payload.len() + 1 + result.len() + 1 > max_payload {
            payload.push(b']');
            messages.push((start..i, std::mem::replace(&mut payload, vec![b'['])));
            start = i;
        }
        if i > start {
            payload.push(b',');
        }
        payload.extend_from_slice(result);
    }
    if start < encoded.len() {
        payload.push(b']');
        messages.push((start..encoded.len(), payload));
    }
    messages
}

/// Whether the task `key` (see [`WorkItem::key`]) comes from an earlier start of `server`
/// than `boot`.
fn superseded(key: &str, server: &str, boot: u64) -> bool {
    key.strip_prefix(server)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.split('.').next())
        .and_then(|b| b.parse::<u64>().ok())
        .is_some_and(|b| b < boot)
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Why a worker must not run a delivered task, if it must not.
fn refusal(
    item: &WorkItem,
    registry: &Registry,
    delivered: i64,
    cancelled_early: bool,
) -> Option<TaskError> {
    let name = &item.name;
    let ours = registry.get(name).map(|t| t.schema_hash());
    if ours.is_none() {
        Some(TaskError::Failed(format!(
            "the worker {} does not run {name}: build it from the same tasks as the app server",
            this_process().name
        )))
    } else if ours != Some(item.schema.as_str()) {
        Some(TaskError::Failed(format!(
            "the worker {} runs another version of {name} (input schema {}, the app server's is {}): build it from the same tasks as the app server",
            this_process().name,
            ours.unwrap_or_default(),
            item.schema
        )))
    } else if delivered > MAX_DELIVERIES {
        Some(TaskError::Lost(format!(
            "its worker died {MAX_DELIVERIES} times"
        )))
    } else if cancelled_early {
        Some(TaskError::Cancelled)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskId;

    #[test]
    fn results_are_packed_into_messages_no_bigger_than_the_servers_limit() {
        let results: Vec<Vec<u8>> = [3, 3, 5, 1, 9].iter().map(|&n| vec![b'1'; n]).collect();
        let packed = pack(&results, 10);
        let ranges: Vec<_> = packed.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(ranges, [0..2, 2..4, 4..5]);
        assert_eq!(packed[0].1, b"[111,111]");
        assert_eq!(packed[1].1, b"[11111,1]");
        assert!(packed.iter().all(|(_, p)| p.len() <= 11));
        for (_, payload) in &packed {
            serde_json::from_slice::<Vec<u64>>(payload).unwrap();
        }
        assert!(pack(&[], 10).is_empty());
    }

    #[test]
    fn a_result_that_no_message_can_carry_becomes_a_failure_that_says_so() {
        let result = ResultItem {
            boot: 1,
            task: TaskId(7),
            outcome: Ok(serde_json::Value::String("x".repeat(2000))),
            worker: "w".into(),
            ran: None,
        };
        let encoded = encode_result(&result, 1000);
        let sent: ResultItem = serde_json::from_slice(&encoded).unwrap();
        assert!(
            matches!(&sent.outcome, Err(TaskError::Failed(m)) if m.contains("does not fit")),
            "{sent:?}"
        );
        assert_eq!((sent.boot, sent.task), (1, TaskId(7)));
        assert_eq!(
            encode_result(&result, 1 << 20),
            serde_json::to_vec(&result).unwrap()
        );
    }

    #[test]
    fn outputs_are_bounded_by_the_flag_or_by_what_fits_in_a_message() {
        let limit = output_limit(4 << 20, 8 << 20);
        assert_eq!((limit.bytes, limit.set_by), (4 << 20, "--max-output-bytes"));
        let limit = output_limit(4 << 20, 1 << 20);
        assert_eq!(limit.bytes, (1 << 20) - ENVELOPE_BYTES);
        assert!(limit.set_by.contains("max_payload"));
    }

    #[test]
    fn a_restarted_server_supersedes_only_its_own_earlier_tasks() {
        assert!(superseded("web.5.9", "web", 6));
        assert!(!superseded("web.6.9", "web", 6));
        assert!(!superseded("web-2.5.9", "web", 6));
        assert!(!superseded("webx.5.9", "web", 6));
        assert!(!superseded("other.5.9", "web", 6));
    }

    /// Echoes its number.
    struct Echo;

    #[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Number {
        x: u32,
    }

    impl crate::Task for Echo {
        const NAME: &'static str = "echo";
        const TITLE: &'static str = "Echo";
        const DESCRIPTION: &'static str = "Its input.";
        type Input = Number;
        type Output = u32;
        fn summary(_: &Number, output: &u32) -> String {
            output.to_string()
        }
        fn run(input: Number, _: &crate::TaskContext<'_>) -> Result<u32, TaskError> {
            Ok(input.x)
        }
    }

    #[test]
    fn workers_refuse_other_types_and_schemas_fourth_deliveries_and_cancelled_tasks() {
        let registry = Registry::empty().register::<Echo>();
        let ours = registry.first().unwrap().schema_hash().to_owned();
        let item = WorkItem {
            server: "s".into(),
            boot: 1,
            task: TaskId(1),
            name: "echo".into(),
            input: serde_json::json!({"x": 10}).into(),
            schema: ours.clone(),
            time_limit_ms: None,
            max_output_bytes: 1 << 20,
        };
        assert_eq!(refusal(&item, &registry, 1, false), None);
        assert_eq!(refusal(&item, &registry, 3, false), None);
        assert_eq!(
            refusal(&item, &registry, 4, false).map(|e| e.to_string()),
            Some("lost: its worker died 3 times".into())
        );
        assert_eq!(
            refusal(&item, &registry, 1, true),
            Some(TaskError::Cancelled)
        );
        let other = WorkItem {
            schema: "0123456789abcdef".into(),
            ..item.clone()
        };
        let message = refusal(&other, &registry, 1, false).unwrap().to_string();
        assert!(
            message.contains("another version of echo") && message.contains(&ours),
            "{message}"
        );
        let unknown = WorkItem {
            name: "mystery".into(),
            ..item
        };
        let message = refusal(&unknown, &registry, 1, false).unwrap().to_string();
        assert!(message.contains("does not run mystery"), "{message}");
    }
}
