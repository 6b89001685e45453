//! The app server's side of a NATS cluster: its scheduler hands each task that admission lets
//! start to the workers and waits for the result, and it follows the workers' heartbeats to
//! know how many tasks may run at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak, mpsc};
use std::time::Duration;

use async_nats::jetstream::consumer;
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use super::wire::{CancelItem, ProgressItem, ResultItem, ServerReport, WorkItem, task_key};
use super::{Connection, Names, NatsError, RETRY_EVERY, valid_token};
use crate::embedded::{Executor, Shared};
use crate::{ClusterConfig, EmbeddedCluster, Registry, TaskContext, TaskError, TaskId, now_ms};

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
    /// Tasks handed to NATS per worker thread. 1 keeps admission exact: a task waits in this
    /// server's fair queue, never in JetStream behind another session's. More hides the
    /// network's round trip for streams of tiny tasks, at the cost of that fairness.
    pub in_flight_per_thread: usize,
}

/// Tasks expected to take at most this long all together travel to a worker in one message:
/// a flood of tiny tasks costs JetStream a message per batch, not per task. A task expected to
/// take longer, or that cannot say, travels alone, so a batch never keeps real work waiting
/// on one worker while another is idle.
const BATCH_COST: Duration = Duration::from_millis(20);
/// Tasks per work message, at most.
const BATCH_MAX: usize = 64;

/// How often the workers' heartbeats are read and the dashboard's report is sent.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Recent tasks sent in each report.
const REPORTED_RECENT: usize = 300;

/// An app server's cluster whose workers are NATS workers. Its [`crate::Client`] behaves as
/// the embedded one does: same admission, same events, same errors.
pub struct NatsCluster {
    scheduler: EmbeddedCluster,
    dispatch: Arc<Dispatch>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the scheduler's threads use to run a task remotely.
pub(crate) struct Dispatch {
    runtime: tokio::runtime::Handle,
    conn: Connection,
    server: String,
    /// This start of the server: results of an earlier one are ignored.
    boot: u64,
    catalogue: String,
    time_limit_ms: Option<u64>,
    waiting: Mutex<HashMap<TaskId, mpsc::Sender<Note>>>,
    closed: AtomicBool,
    /// To the task that publishes work ([`Dispatch::publish_work`]).
    outbox: UnboundedSender<Outgoing>,
}

/// Gathers `first` and the tasks already waiting behind it that may travel with it: only
/// tasks that say they are quick, [`BATCH_MAX`] at most, expected to take [`BATCH_COST`] at
/// most all together. The first that may not is returned, to start the next batch.
fn gather<T>(
    first: T,
    expected: impl Fn(&T) -> Option<Duration>,
    mut waiting: impl FnMut() -> Option<T>,
) -> (Vec<T>, Option<T>) {
    let Some(mut cost) = expected(&first).filter(|cost| *cost <= BATCH_COST) else {
        return (vec![first], None);
    };
    let mut batch = vec![first];
    while batch.len() < BATCH_MAX {
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
    item: WorkItem,
    expected: Option<Duration>,
    cancel: Arc<AtomicBool>,
    tx: mpsc::Sender<Note>,
}

/// What a scheduler thread waiting on a remote task hears.
enum Note {
    Progress(f64),
    Interrupt,
    Done(Result<Value, TaskError>),
}

impl NatsCluster {
    /// Connects and starts following the workers; tasks start once a worker has joined.
    pub async fn connect(
        nats: NatsConfig,
        config: ClusterConfig,
        registry: Registry,
    ) -> Result<Self, NatsError> {
        if !valid_token(&nats.server) {
            return Err(NatsError::ServerId(nats.server));
        }
        let names = Names::new(&nats.prefix)?;
        let conn = Connection::open(&nats.url, names, "app server").await?;
        let results = conn
            .js
            .get_stream(conn.names.results_stream())
            .await
            .map_err(|e| super::setup_error(conn.names.results_stream(), e))?
            .get_or_create_consumer(
                &format!("results-{}", nats.server),
                consumer::pull::Config {
                    durable_name: Some(format!("results-{}", nats.server)),
                    filter_subject: conn.names.results_subject(&nats.server),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| super::setup_error("this server's results consumer".into(), e))?;
        let progress = conn
            .client
            .subscribe(conn.names.progress_subject(&nats.server))
            .await
            .map_err(|e| super::setup_error("the progress subscription".into(), e))?;
        let (outbox, outgoing) = unbounded_channel();
        let dispatch = Arc::new(Dispatch {
            runtime: tokio::runtime::Handle::current(),
            conn,
            server: nats.server,
            boot: now_ms(),
            catalogue: registry.catalogue(),
            time_limit_ms: config.task_time_limit.map(|l| l.as_millis() as u64),
            waiting: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            outbox,
        });
        // Workers drop what an earlier start of this server left running or queued: it runs
        // those tasks again itself.
        let restarted = CancelItem::Restarted {
            server: dispatch.server.clone(),
            boot: dispatch.boot,
        };
        if let Ok(payload) = serde_json::to_vec(&restarted) {
            let _ = dispatch
                .conn
                .client
                .publish(dispatch.conn.names.cancel_subject(), payload.into())
                .await;
        }
        let scheduler = EmbeddedCluster::scheduler(
            &config,
            registry,
            Executor::Remote(dispatch.clone()),
            "nats",
        );
        let shared = Arc::downgrade(scheduler.shared());
        let per_thread = nats.in_flight_per_thread.max(1);
        let tasks = vec![
            tokio::spawn(dispatch.clone().publish_work(outgoing)),
            tokio::spawn(dispatch.clone().listen_results(results)),
            tokio::spawn(dispatch.clone().listen_progress(progress)),
            tokio::spawn(dispatch.clone().follow_workers(shared, per_thread)),
        ];
        tracing::info!(
            url = %super::redacted(&nats.url),
            server = %dispatch.server,
            prefix = %nats.prefix,
            "connected to the NATS cluster"
        );
        Ok(Self {
            scheduler,
            dispatch,
            tasks,
        })
    }

    /// The scheduler, which is the embedded cluster's: its client, drain and wait.
    pub fn scheduler(&self) -> &EmbeddedCluster {
        &self.scheduler
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // The scheduler's threads wait for remote results: release them before it joins them.
        self.dispatch.close();
    }
}

impl Dispatch {
    /// Runs a task on a remote worker: blocks this scheduler thread until its result comes.
    pub(crate) fn run(
        self: &Arc<Self>,
        id: TaskId,
        name: &str,
        input: Value,
        expected: Option<Duration>,
        cancel: &Arc<AtomicBool>,
        ctx: &TaskContext<'_>,
    ) -> Result<Value, TaskError> {
        let (tx, rx) = mpsc::channel();
        self.waiting.lock().insert(id, tx.clone());
        if self.closed.load(Ordering::Acquire) {
            self.waiting.lock().remove(&id);
            return Err(stopped());
        }
        let item = WorkItem {
            server: self.server.clone(),
            boot: self.boot,
            task: id,
            name: name.to_owned(),
            input,
            catalogue: self.catalogue.clone(),
            time_limit_ms: self.time_limit_ms,
        };
        let outgoing = Outgoing {
            item,
            expected,
            cancel: cancel.clone(),
            tx,
        };
        if self.outbox.send(outgoing).is_err() {
            self.waiting.lock().remove(&id);
            return Err(stopped());
        }
        let outcome = loop {
            match rx.recv() {
                Ok(Note::Progress(fraction)) => ctx.report_progress(fraction),
                Ok(Note::Interrupt) => {
                    let key = task_key(&self.server, self.boot, id);
                    self.runtime.spawn(self.clone().send_cancel(key));
                }
                Ok(Note::Done(outcome)) => break outcome,
                // Every sender is in `waiting` or on its way to NATS: not reached.
                Err(_) => break Err(stopped()),
            }
        };
        self.waiting.lock().remove(&id);
        outcome
    }

    /// A running task's cancel flag was set: tell its worker.
    pub(crate) fn interrupt(&self, id: TaskId) {
        if let Some(tx) = self.waiting.lock().get(&id) {
            let _ = tx.send(Note::Interrupt);
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for (_, tx) in self.waiting.lock().drain() {
            let _ = tx.send(Note::Done(Err(stopped())));
        }
    }

    /// Gathers the tasks the scheduler lets start into work messages and publishes them, one
    /// message at a time: while one is on its way, the next batch forms.
    async fn publish_work(self: Arc<Self>, mut outbox: UnboundedReceiver<Outgoing>) {
        let mut next = None;
        loop {
            let first = match next.take() {
                Some(first) => first,
                None => match outbox.recv().await {
                    Some(first) => first,
                    None => return,
                },
            };
            let (batch, rest) = gather(first, |o| o.expected, || outbox.try_recv().ok());
            next = rest;
            self.hand_over(batch).await;
        }
    }

    /// Publishes a batch on the work queue, retrying while NATS is away (the message id makes
    /// a retry count once); a task cancelled before it got there ends here.
    async fn hand_over(&self, mut batch: Vec<Outgoing>) {
        let subject = self.conn.names.work_subject();
        let mut warned = false;
        loop {
            batch.retain(|outgoing| {
                let cancelled = outgoing.cancel.load(Ordering::Relaxed);
                if cancelled {
                    let _ = outgoing.tx.send(Note::Done(Err(TaskError::Cancelled)));
                }
                !cancelled
            });
            let Some(first) = batch.first() else {
                return;
            };
            let items: Vec<&WorkItem> = batch.iter().map(|outgoing| &outgoing.item).collect();
            let payload: bytes::Bytes = match serde_json::to_vec(&items) {
                Ok(payload) => payload.into(),
                Err(error) => {
                    for outgoing in &batch {
                        let _ = outgoing.tx.send(Note::Done(Err(TaskError::Failed(format!(
                            "encoding: {error}"
                        )))));
                    }
                    return;
                }
            };
            let Err(error) = self
                .conn
                .store(subject.clone(), payload, &first.item.key())
                .await
            else {
                return;
            };
            if !warned {
                tracing::warn!(%error, tasks = batch.len(), "NATS did not take a task: retrying");
                warned = true;
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    async fn send_cancel(self: Arc<Self>, key: String) {
        let Ok(payload) = serde_json::to_vec(&CancelItem::Task { key }) else {
            return;
        };
        if let Err(error) = self
            .conn
            .client
            .publish(self.conn.names.cancel_subject(), payload.into())
            .await
        {
            tracing::warn!(%error, "a cancel was not sent");
        }
    }

    fn deliver(&self, task: TaskId, note: Note) {
        if let Some(tx) = self.waiting.lock().get(&task) {
            let _ = tx.send(note);
        }
    }

    async fn listen_results(self: Arc<Self>, consumer: consumer::PullConsumer) {
        loop {
            let mut messages = match consumer.messages().await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::debug!(%error, "results not reachable; retrying");
                    tokio::time::sleep(RETRY_EVERY).await;
                    continue;
                }
            };
            while let Some(next) = messages.next().await {
                let message = match next {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::debug!(%error, "results stream interrupted");
                        break;
                    }
                };
                match serde_json::from_slice::<Vec<ResultItem>>(&message.payload) {
                    // A task that ran twice (its first worker was slow to ack) is answered
                    // once: the second result finds nobody waiting.
                    Ok(results) => {
                        for result in results.into_iter().filter(|r| r.boot == self.boot) {
                            tracing::debug!(task = %result.task, worker = %result.worker, "result");
                            self.deliver(result.task, Note::Done(result.outcome));
                        }
                    }
                    Err(error) => tracing::warn!(%error, "results that do not decode"),
                }
                let _ = message.ack().await;
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    async fn listen_progress(self: Arc<Self>, mut progress: async_nats::Subscriber) {
        while let Some(message) = progress.next().await {
            if let Ok(update) = serde_json::from_slice::<ProgressItem>(&message.payload)
                && update.boot == self.boot
            {
                self.deliver(update.task, Note::Progress(update.fraction));
            }
        }
    }

    /// Once a second: as many tasks may run as the live workers have threads, and the
    /// cluster's dashboard gets this server's figures.
    async fn follow_workers(self: Arc<Self>, scheduler: Weak<Shared>, per_thread: usize) {
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        loop {
            tick.tick().await;
            let Some(shared) = scheduler.upgrade() else {
                return;
            };
            match self.conn.read_workers().await {
                Ok(workers) => {
                    let threads: usize = workers.iter().map(|w| w.threads.len()).sum();
                    shared.set_capacity(threads * per_thread);
                }
                // Keep the last figure: the workers are probably still there.
                Err(error) => tracing::debug!(%error, "worker list not read"),
            }
            let stats = shared.stats();
            drop(shared);
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
            let (batch, rest) = gather(first, |t| *t, || queue.next());
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
    fn long_and_unknown_tasks_travel_alone() {
        assert_eq!(gather_all(vec![ms(0), ms(21), ms(0), ms(0)]), vec![1, 1, 2]);
        assert_eq!(gather_all(vec![None, ms(0), None, ms(0)]), vec![1, 1, 1, 1]);
        assert_eq!(gather_all(vec![ms(500), ms(0), ms(0)]), vec![1, 2]);
    }
}
