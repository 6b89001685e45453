//! The app server's side of a NATS cluster: the second way to run a released task. Each slot
//! admission fills is a future that hands its task to JetStream and awaits the result, with a
//! deadline; no thread waits on the network. It follows the workers' heartbeats to know how
//! many slots to open, within a bound of its own.

mod inbox;
mod outbox;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;
use futures::StreamExt;
use model::Backend;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::wire::{CancelItem, ProgressItem, ResultItem, ServerReport, WorkItem, task_key};
use super::{Connection, Names, NatsError, RESULTS_KEPT, RETRY_EVERY, valid_token};
use crate::scheduler::{CancelFlag, Core, Job, Scheduler, millis};
use crate::work::{Ended, output_bytes};
use crate::{ClusterConfig, Registry, SpawnError, TaskError, TaskId, now_ms};

/// How an app server reaches its NATS cluster.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The deployment's name prefix.
    pub prefix: String,
    /// This app server's name in the cluster: stable across its restarts (its results
    /// consumer is durable under it) and different from every other app server's.
    pub server: String,
    /// Tasks in flight per live worker thread. Only tiny tasks use the slots beyond one per
    /// thread (they travel in batches); other work never waits in JetStream.
    pub in_flight_per_thread: usize,
    /// Tasks in flight at most, whatever the workers advertise.
    pub max_in_flight: usize,
    /// How long past the time limit a task's result is awaited before it ends as lost.
    pub result_grace: Duration,
}

impl NatsConfig {
    /// Tasks in flight per live worker thread, by default. Only tiny tasks use more than one
    /// per thread; measured on 2 cores, a flood of them needs about 256 in flight to keep
    /// JetStream's round trips busy (64 in flight: 16,000 tasks/s; 256: 28,000).
    pub const IN_FLIGHT_PER_THREAD: usize = 64;
    /// Tasks in flight at most, by default.
    pub const MAX_IN_FLIGHT: usize = 1_024;
    /// How long past the time limit a result is awaited, by default: long enough for a
    /// cancel to reach a worker and for JetStream to redeliver a dead worker's task once.
    pub const RESULT_GRACE: Duration = Duration::from_secs(15);

    /// The defaults for a server named `server` of the deployment `prefix` at `url`.
    pub fn new(
        url: impl Into<String>,
        prefix: impl Into<String>,
        server: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            prefix: prefix.into(),
            server: server.into(),
            in_flight_per_thread: Self::IN_FLIGHT_PER_THREAD,
            max_in_flight: Self::MAX_IN_FLIGHT,
            result_grace: Self::RESULT_GRACE,
        }
    }

    /// (slots, threads) for `threads` live worker threads.
    fn slots(&self, threads: usize) -> (usize, usize) {
        let max = self.max_in_flight.max(1);
        let slots = threads
            .saturating_mul(self.in_flight_per_thread.max(1))
            .min(max);
        (slots, threads.min(max))
    }
}

/// Why a NATS app server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

/// Tasks expected to take at most this long all together travel to a worker in one message:
/// a flood of tiny tasks costs JetStream a message per batch, not per task. A task expected to
/// take longer, or that cannot say, travels alone, so a batch never keeps real work waiting
/// on one worker while another is idle.
const BATCH_COST: Duration = Duration::from_millis(20);
/// Tasks per work message, at most; fewer when a thread's share of the slots
/// (`in_flight_per_thread`) is smaller, so that a flood is spread over every worker thread.
const BATCH_MAX: usize = 64;

/// Work messages on their way to JetStream at once: a stored message waits for JetStream's
/// answer (a round trip), so two travel together, and the tasks released meanwhile pile up
/// into the next batch; a lone task goes at once. (Four measured 35,500 tiny tasks/s; two,
/// 37,100, with a lower p99.)
const HANDOVERS: usize = 2;

/// How often the workers' heartbeats are read and the dashboard's report is sent.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Recent tasks sent in each report.
const REPORTED_RECENT: usize = 300;

/// An app server's cluster whose workers are NATS workers. Its [`crate::Client`] behaves as
/// the embedded one does: same admission, same events, same errors.
pub struct NatsCluster {
    scheduler: Scheduler,
    dispatch: Arc<Dispatch>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the slots use to run a task remotely.
struct Dispatch {
    conn: Connection,
    server: String,
    /// This start of the server: results of an earlier one are ignored.
    boot: u64,
    /// Each task type's input schema hash, by name, as this server's registry has it.
    schemas: HashMap<&'static str, String>,
    /// For each task type, the work queues of live workers that run it with the same schema
    /// (from their heartbeats); a task is handed to one of them.
    routes: Mutex<HashMap<String, Vec<String>>>,
    /// Turns the choice between several queues for one type.
    turn: std::sync::atomic::AtomicUsize,
    time_limit_ms: Option<u64>,
    max_output_bytes: usize,
    /// How long a slot waits for its result after the hand-over.
    deadline: Duration,
    /// Tasks per work message, at most.
    batch_max: usize,
    waiting: Mutex<HashMap<TaskId, Waiter>>,
    closed: AtomicBool,
    /// To the task that publishes work ([`Dispatch::publish_work`]).
    outbox: UnboundedSender<Outgoing>,
}

/// A slot awaiting its task's result.
struct Waiter {
    done: oneshot::Sender<Ended>,
    /// Only the latest figure matters: a flood of progress never queues.
    progress: watch::Sender<f64>,
    /// When JetStream took its work message: the start of its remote leg.
    handed_over: Option<Instant>,
}

/// The stages of a task's round trip on NATS, timed by the app server
/// (`offload_nats_stage_seconds`): from its slot to JetStream's ack of its work message, and
/// from there to its result.
const TO_JETSTREAM: &str = "to JetStream";
const THERE_AND_BACK: &str = "worker and back";

fn record_stage(stage: &'static str, took: Duration) {
    metrics::histogram!("offload_nats_stage_seconds", "stage" => stage).record(took.as_secs_f64());
}

/// Gathers `first` and the tasks already waiting behind it that may travel with it: only
/// tasks that say they are quick, `max` at most, expected to take [`BATCH_COST`] at most all
/// together. The first that may not is returned, to start the next batch.
fn gather<T>(
    max: usize,
    first: T,
    expected: impl Fn(&T) -> Option<Duration>,
    mut waiting: impl FnMut() -> Option<T>,
) -> (Vec<T>, Option<T>) {
    let Some(mut cost) = expected(&first).filter(|cost| *cost <= BATCH_COST) else {
        return (vec![first], None);
    };
    let mut batch = vec![first];
    while batch.len() < max {
        let Some(more) = waiting() else { break };
        match expected(&more).map(|e| cost + e) {
            Some(total) if total <= BATCH_COST => {
                cost = total;
                batch.push(more);
            }
            _ => return (batch, Some(more)),
        }
    }
    (batch, None)
}

/// A task on its way to the work queue.
struct Outgoing {
    /// When its slot released it.
    released: Instant,
    item: WorkItem,
    expected: Option<Duration>,
    cancel: Arc<CancelFlag>,
}

/// This server's durable consumer of its results (so results wait for it across a restart of
/// its connection).
async fn results_consumer(
    conn: &Connection,
    server: &str,
) -> Result<consumer::PullConsumer, NatsError> {
    conn.js
        .get_stream(conn.names.results_stream())
        .await
        .map_err(|e| super::setup_error(conn.names.results_stream(), e))?
        .get_or_create_consumer(
            &format!("results-{server}"),
            consumer::pull::Config {
                durable_name: Some(format!("results-{server}")),
                filter_subject: conn.names.results_subject(server),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| super::setup_error("this server's results consumer".into(), e))
}

impl NatsCluster {
    /// Connects and starts following the workers; tasks start once a worker has joined.
    pub async fn connect(
        nats: NatsConfig,
        config: ClusterConfig,
        registry: Registry,
    ) -> Result<Self, ConnectError> {
        if !valid_token(&nats.server) {
            return Err(NatsError::ServerId(nats.server).into());
        }
        let names = Names::new(&nats.prefix)?;
        let conn = Connection::open(&nats.url, names, "app server").await?;
        let results = results_consumer(&conn, &nats.server).await?;
        let result_requests = conn
            .client
            .subscribe(conn.names.result_requests_subject(&nats.server))
            .await
            .map_err(|e| super::setup_error("the result requests' subscription".into(), e))?;
        let progress = conn
            .client
            .subscribe(conn.names.progress_subject(&nats.server))
            .await
            .map_err(|e| super::setup_error("the progress subscription".into(), e))?;
        let (outbox, outgoing) = unbounded_channel();
        let time_limit = config.task_time_limit;
        let dispatch = Arc::new(Dispatch {
            conn,
            server: nats.server.clone(),
            boot: now_ms(),
            schemas: registry
                .types()
                .iter()
                .map(|t| (t.name(), t.schema_hash().to_owned()))
                .collect(),
            routes: Mutex::new(HashMap::new()),
            turn: std::sync::atomic::AtomicUsize::new(0),
            time_limit_ms: time_limit.map(|l| l.as_millis() as u64),
            max_output_bytes: config.max_output_bytes,
            // Without a time limit, as long as JetStream keeps an unclaimed result.
            deadline: time_limit.map_or(RESULTS_KEPT, |limit| limit + nats.result_grace),
            batch_max: BATCH_MAX,
            waiting: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            outbox,
        });
        dispatch.announce_restart().await;
        inbox::count_from_zero();
        let scheduler = Scheduler::start(&config, registry, Backend::Nats)?;
        let core = Arc::downgrade(scheduler.core());
        let tasks = vec![
            tokio::spawn(dispatch.clone().publish_work(outgoing)),
            tokio::spawn(dispatch.clone().listen_results(results)),
            tokio::spawn(dispatch.clone().listen_result_requests(result_requests)),
            tokio::spawn(dispatch.clone().listen_progress(progress)),
            tokio::spawn(dispatch.clone().follow_workers(core.clone(), nats.clone())),
            tokio::spawn(dispatch.clone().fill_slots(core)),
        ];
        tracing::info!(
            url = %super::redacted(&nats.url),
            server = %dispatch.server,
            prefix = %nats.prefix,
            max_in_flight = nats.max_in_flight,
            "connected to the NATS cluster"
        );
        Ok(Self {
            scheduler,
            dispatch,
            tasks,
        })
    }

    /// Its scheduler: its client, drain and wait.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Slots awaiting remote results end now, as lost; the scheduler then stops.
        self.dispatch.close();
    }
}

impl Dispatch {
    /// Tells the workers this server started again: they drop what an earlier start of it
    /// left running or queued, which it runs again itself.
    async fn announce_restart(&self) {
        let restarted = CancelItem::Restarted {
            server: self.server.clone(),
            boot: self.boot,
        };
        if let Ok(payload) = serde_json::to_vec(&restarted) {
            let _ = self
                .conn
                .client
                .publish(self.conn.names.cancel_subject(), payload.into())
                .await;
        }
    }

    /// Gives each free slot the task admission lets take it, whenever work arrives or a slot
    /// frees; ends at shutdown.
    async fn fill_slots(self: Arc<Self>, core: Weak<Core>) {
        let Some(ready) = core.upgrade().map(|core| core.slot_ready.clone()) else {
            return;
        };
        loop {
            {
                let Some(core) = core.upgrade() else { return };
                if core.is_shut_down() {
                    return;
                }
                while let Some((slot, job)) = core.take_any() {
                    tokio::spawn(self.clone().run(core.clone(), slot, job));
                }
            }
            // A wake-up since the last look is kept as a permit: none is missed.
            ready.notified().await;
        }
    }

    /// One slot: hands `job` to the workers, relays its progress and cancel, and ends it
    /// with its result, or as lost when none comes before the deadline.
    async fn run(self: Arc<Self>, core: Arc<Core>, slot: usize, job: Job) {
        let started = Instant::now();
        let Ended { outcome, ran } = self.remote(&core, slot, &job, job.input.clone()).await;
        let output_bytes = output_bytes(&outcome);
        core.finish(
            slot,
            job,
            outcome,
            ran,
            output_bytes,
            millis(started.elapsed()),
        );
    }

    async fn remote(&self, core: &Core, slot: usize, job: &Job, input: Arc<Value>) -> Ended {
        let (done, mut result) = oneshot::channel();
        let (progress, mut progress_rx) = watch::channel(0.0);
        self.waiting.lock().insert(
            job.id,
            Waiter {
                done,
                progress,
                handed_over: None,
            },
        );
        if self.closed.load(Ordering::Acquire) {
            self.waiting.lock().remove(&job.id);
            return Ended::unstarted(Err(stopped()));
        }
        let item = WorkItem {
            server: self.server.clone(),
            boot: self.boot,
            task: job.id,
            name: job.name.to_string(),
            input,
            schema: self.schemas.get(&*job.name).cloned().unwrap_or_default(),
            time_limit_ms: self.time_limit_ms,
            max_output_bytes: self.max_output_bytes,
        };
        let outgoing = Outgoing {
            released: Instant::now(),
            item,
            expected: job.expected,
            cancel: job.cancel.clone(),
        };
        if self.outbox.send(outgoing).is_err() {
            self.waiting.lock().remove(&job.id);
            return Ended::unstarted(Err(stopped()));
        }
        let deadline = tokio::time::sleep(self.deadline);
        tokio::pin!(deadline);
        let mut cancel_sent = false;
        loop {
            tokio::select! {
                biased;
                ended = &mut result => return ended.unwrap_or_else(|_| Ended::unstarted(Err(stopped()))),
                () = job.cancel.raised(), if !cancel_sent => {
                    cancel_sent = true;
                    self.send_cancel(task_key(&self.server, self.boot, job.id)).await;
                }
                Ok(()) = progress_rx.changed() => {
                    let fraction = *progress_rx.borrow_and_update();
                    core.progress(slot, job, fraction);
                }
                () = &mut deadline => {
                    self.waiting.lock().remove(&job.id);
                    tracing::warn!(task = %job.id, name = %job.name, "no result before the deadline");
                    return Ended::unstarted(Err(TaskError::Lost(format!(
                        "no worker answered within {} s of the hand-over (a worker may be stuck or gone)",
                        self.deadline.as_secs_f64()
                    ))));
                }
            }
        }
    }

    /// Ends every slot still awaiting a result, as lost.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for (_, waiter) in self.waiting.lock().drain() {
            let _ = waiter.done.send(Ended::unstarted(Err(stopped())));
        }
    }

    /// Once a second: open as many slots as the live workers' threads allow (within the
    /// bound), and send the cluster's dashboard this server's figures.
    async fn follow_workers(self: Arc<Self>, core: Weak<Core>, nats: NatsConfig) {
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        loop {
            tick.tick().await;
            let Some(core) = core.upgrade() else {
                return;
            };
            match self.conn.read_workers().await {
                Ok(workers) => {
                    let threads = workers
                        .iter()
                        .fold(0usize, |sum, w| sum.saturating_add(w.threads.len()));
                    // The types some live worker runs with this server's input schema, and
                    // the queues those workers take tasks from.
                    let mut routes: HashMap<String, Vec<String>> = HashMap::new();
                    for worker in &workers {
                        for ad in &worker.types {
                            if self.schemas.get(ad.name.as_str()) == Some(&ad.schema) {
                                let queues = routes.entry(ad.name.clone()).or_default();
                                if !queues.contains(&worker.queue) {
                                    queues.push(worker.queue.clone());
                                }
                            }
                        }
                    }
                    core.set_runnable(Some(
                        routes
                            .keys()
                            .map(|name| Arc::<str>::from(name.as_str()))
                            .collect(),
                    ));
                    *self.routes.lock() = routes;
                    let (slots, threads) = nats.slots(threads);
                    core.set_capacity(slots, threads);
                }
                // Keep the last figure: the workers are probably still there.
                Err(error) => tracing::debug!(%error, "worker list not read"),
            }
            let stats = core.stats();
            drop(core);
            let skip = stats.recent.len().saturating_sub(REPORTED_RECENT);
            let report = ServerReport {
                server: self.server.clone(),
                totals: stats.totals,
                groups: stats.groups,
                queue_capacity: stats.queue_capacity,
                recent: stats.recent.into_iter().skip(skip).collect(),
                failures: stats.failures,
            };
            if let Ok(payload) = serde_json::to_vec(&report) {
                let _ = self
                    .conn
                    .client
                    .publish(
                        self.conn.names.reports_subject(&self.server),
                        payload.into(),
                    )
                    .await;
            }
        }
    }
}

fn stopped() -> TaskError {
    TaskError::Lost("the app server stopped before its result came".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Option<Duration> {
        Some(Duration::from_millis(ms))
    }

    fn gather_all(tasks: Vec<Option<Duration>>) -> Vec<usize> {
        let mut queue = tasks.into_iter();
        let mut sizes = Vec::new();
        let mut next = queue.next();
        while let Some(first) = next.take() {
            let (batch, rest) = gather(BATCH_MAX, first, |t| *t, || queue.next());
            sizes.push(batch.len());
            next = rest.or_else(|| queue.next());
        }
        sizes
    }

    #[test]
    fn quick_tasks_travel_together_up_to_the_cost_and_the_count() {
        assert_eq!(gather_all(vec![ms(0); 150]), vec![64, 64, 22]);
        assert_eq!(gather_all(vec![ms(5); 10]), vec![4, 4, 2]);
        assert_eq!(gather_all(vec![ms(15), ms(5), ms(1)]), vec![2, 1]);
    }

    #[test]
    fn slots_follow_the_threads_within_the_bound() {
        let config = NatsConfig::new("nats://x", "p", "s");
        assert_eq!(config.slots(0), (0, 0));
        assert_eq!(config.slots(4), (256, 4));
        assert_eq!(config.slots(100_000), (1_024, 1_024));
        assert_eq!(config.slots(usize::MAX), (1_024, 1_024));
    }

    #[test]
    fn long_and_unknown_tasks_travel_alone() {
        assert_eq!(gather_all(vec![ms(0), ms(21), ms(0), ms(0)]), vec![1, 1, 2]);
        assert_eq!(gather_all(vec![None, ms(0), None, ms(0)]), vec![1, 1, 1, 1]);
        assert_eq!(gather_all(vec![ms(500), ms(0), ms(0)]), vec![1, 2]);
    }
}
