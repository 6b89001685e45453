//! One open batch: its members handed to the queue a window at a time as the owner's earlier
//! members end ([`feed`]), followed to their ends through the same path as single tasks,
//! counted, and the batch finished (on record) once its last member ended.

mod feed;
mod row;

pub(super) use feed::{Window, feed};
pub(super) use row::show_in_queue;

/// How often a batch's followers hear of it at most: a change waits this long for the next
/// ones, so a 10,000-member batch costs ten updates a second, not one per member.
pub const COALESCE: std::time::Duration = std::time::Duration::from_millis(100);

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use cluster::TaskType;
use model::page::Outcome;

use super::spec::BatchSpec;
use crate::AppError;
use crate::ssr::store::{BatchRecord, Store, Write};
use crate::ssr::{AppState, SessionId};

/// The open batches by id, shared with each run so that a finished one leaves.
pub(super) type Open = Mutex<BTreeMap<u64, Arc<BatchRun>>>;

/// A batch while some of its members are still to be handed over or to end.
pub struct BatchRun {
    id: u64,
    owner: SessionId,
    kind: Arc<TaskType>,
    spec: BatchSpec,
    members: u64,
    created_at_ms: u64,
    /// Members take earlier results of the same computations instead of running.
    reuse: bool,
    live: Mutex<Live>,
    /// Turns true once it is cancelled.
    cancelled: watch::Sender<bool>,
    /// A member ended: a feeder waiting for room looks again.
    member_ended: Notify,
    /// Counts its changes (a member queued, started, progressed or ended; cancelled;
    /// finished), for its event streams.
    changes: watch::Sender<u64>,
    store: Store,
    cluster: cluster::Client,
    open: Weak<Open>,
}

/// What changes while it runs.
#[derive(Debug, Default)]
struct Live {
    /// Members handed to the queue so far: the next one's index.
    fed: u64,
    /// Members in the queue or running, by index.
    in_queue: BTreeMap<u64, InQueue>,
    /// Ended members by outcome, in [`Outcome::ALL`]'s order.
    ended: [u64; 4],
    /// No member is handed over any more: all were, or the batch was cancelled.
    fed_all: bool,
    cancelled_at_ms: Option<u64>,
    finished_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct InQueue {
    /// The cluster's id, for cancelling (0: not in the cluster).
    cluster: u64,
    started: bool,
    progress: f64,
}

/// A batch's counts and progress at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub members: u64,
    /// Not handed to the queue yet (and never to be, once cancelled: counted as cancelled).
    pub waiting: u64,
    pub queued: u64,
    pub running: u64,
    /// Ended members by outcome, in [`Outcome::ALL`]'s order; a cancelled batch's members
    /// that were never handed over count as cancelled.
    pub ended: [u64; 4],
    /// From 0 to 1: ended members and the running ones' progress, over all members.
    pub progress: f64,
    pub created_at_ms: u64,
    pub cancelled_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
}

impl Snapshot {
    /// A batch that no server runs any more, from its record.
    pub fn of_record(record: &BatchRecord) -> Self {
        let (ended, _) = never_fed(
            record.ended,
            record.members.saturating_sub(record.fed),
            record.cancelled_at_ms.is_some(),
        );
        let ended_all: u64 = ended.iter().sum();
        Self {
            members: record.members,
            // Not handed over yet, or handed over before a stop and to run again after the
            // next start.
            waiting: record.members.saturating_sub(ended_all),
            queued: 0,
            running: 0,
            progress: ratio(ended_all, record.members),
            ended,
            created_at_ms: record.created_at_ms,
            cancelled_at_ms: record.cancelled_at_ms,
            finished_at_ms: record.finished_at_ms,
        }
    }
}

/// `ended` and the members waiting, `unfed` of them not handed over: once the batch was
/// cancelled, they never will be, and count as cancelled.
fn never_fed(mut ended: [u64; 4], unfed: u64, cancelled: bool) -> ([u64; 4], u64) {
    if cancelled {
        ended[2] += unfed;
        (ended, 0)
    } else {
        (ended, unfed)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        1.0
    } else {
        (part as f64 / whole as f64).min(1.0)
    }
}

/// Where a run starts from: a new batch, or one on record before a restart.
pub(super) struct Start {
    pub id: u64,
    pub owner: SessionId,
    pub kind: Arc<TaskType>,
    pub spec: BatchSpec,
    pub created_at_ms: u64,
    pub fed: u64,
    pub ended: [u64; 4],
    pub cancelled_at_ms: Option<u64>,
    pub reuse: bool,
}

impl BatchRun {
    pub(super) fn new(start: Start, state: &AppState, open: &Arc<Open>) -> Arc<Self> {
        let members = start.spec.len() as u64;
        Arc::new(Self {
            id: start.id,
            owner: start.owner,
            kind: start.kind,
            spec: start.spec,
            members,
            created_at_ms: start.created_at_ms,
            reuse: start.reuse,
            live: Mutex::new(Live {
                fed: start.fed,
                ended: start.ended,
                cancelled_at_ms: start.cancelled_at_ms,
                ..Live::default()
            }),
            cancelled: watch::channel(start.cancelled_at_ms.is_some()).0,
            member_ended: Notify::new(),
            changes: watch::channel(0).0,
            store: state.sessions.store().clone(),
            cluster: state.cluster.clone(),
            open: Arc::downgrade(open),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn owner(&self) -> &SessionId {
        &self.owner
    }

    pub fn kind(&self) -> &Arc<TaskType> {
        &self.kind
    }

    pub fn spec(&self) -> &BatchSpec {
        &self.spec
    }

    /// Its changes so far, counted; changes as it changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Its counts and progress now.
    pub fn snapshot(&self) -> Snapshot {
        let live = self.live.lock();
        let started = live.in_queue.values().filter(|m| m.started).count() as u64;
        let (ended, waiting) = never_fed(
            live.ended,
            self.members.saturating_sub(live.fed),
            live.cancelled_at_ms.is_some(),
        );
        let ended_all: u64 = ended.iter().sum();
        let running_progress: f64 = live.in_queue.values().map(|m| m.progress).sum();
        Snapshot {
            members: self.members,
            waiting,
            queued: live.in_queue.len() as u64 - started,
            running: started,
            ended,
            progress: if self.members == 0 {
                1.0
            } else {
                ((ended_all as f64 + running_progress) / self.members as f64).min(1.0)
            },
            created_at_ms: self.created_at_ms,
            cancelled_at_ms: live.cancelled_at_ms,
            finished_at_ms: live.finished_at_ms,
        }
    }

    /// Whether member `index` has started, and its progress, while it is in the queue.
    pub fn standing(&self, index: u64) -> Option<(bool, f64)> {
        self.live
            .lock()
            .in_queue
            .get(&index)
            .map(|m| (m.started, m.progress))
    }

    /// Member `index` is in the queue, as the cluster's task `cluster` (0: not in the cluster).
    pub(crate) fn accepted(&self, index: u64, cluster: u64) {
        let cancelled = {
            let mut live = self.live.lock();
            live.fed = live.fed.max(index + 1);
            live.in_queue.insert(
                index,
                InQueue {
                    cluster,
                    started: false,
                    progress: 0.0,
                },
            );
            live.cancelled_at_ms.is_some()
        };
        self.changed();
        if cancelled && cluster != 0 {
            // Handed over while the batch was being cancelled: it goes too.
            let client = self.cluster.clone();
            tokio::spawn(async move { client.cancel(cluster::TaskId(cluster)).await });
        }
    }

    pub(crate) fn running(&self, index: u64, progress: f64) {
        if let Some(member) = self.live.lock().in_queue.get_mut(&index) {
            member.started = true;
            member.progress = progress.clamp(0.0, 1.0);
        }
        self.changed();
    }

    /// Member `index` ended (its result is on record).
    pub(crate) fn ended(&self, index: u64, outcome: Outcome) {
        {
            let mut live = self.live.lock();
            if live.in_queue.remove(&index).is_some()
                && let Some(i) = Outcome::ALL.iter().position(|o| *o == outcome)
            {
                live.ended[i] += 1;
            }
        }
        self.member_ended.notify_waiters();
        self.changed();
        self.finish_if_done();
    }

    /// Cancels it: no member is handed over any more, those in the queue or running are
    /// cancelled. False when it had ended or was cancelled already.
    pub async fn cancel(&self) -> Result<bool, AppError> {
        let at_ms = cluster::now_ms();
        let in_queue: Vec<u64> = {
            let mut live = self.live.lock();
            if live.cancelled_at_ms.is_some() || live.finished_at_ms.is_some() {
                return Ok(false);
            }
            live.cancelled_at_ms = Some(at_ms);
            live.in_queue.values().map(|m| m.cluster).collect()
        };
        self.cancelled.send_replace(true);
        self.changed();
        self.store
            .write(Write::BatchCancelled {
                batch: self.id,
                at_ms,
            })
            .await?;
        for cluster in in_queue.into_iter().filter(|id| *id != 0) {
            // Gone meanwhile: it ended on its own.
            let _ = self.cluster.cancel(cluster::TaskId(cluster)).await;
        }
        self.finish_if_done();
        Ok(true)
    }

    /// No member is to be handed over any more: every one was, or the batch was cancelled.
    /// Until then it cannot finish, even with no member in the queue for a moment.
    pub(super) fn fed_all(&self) {
        self.live.lock().fed_all = true;
        self.finish_if_done();
    }

    /// Once nothing is to be handed over and nothing is in the queue: finished, on record,
    /// and no longer open.
    fn finish_if_done(&self) {
        let at_ms = {
            let mut live = self.live.lock();
            if !live.fed_all || !live.in_queue.is_empty() || live.finished_at_ms.is_some() {
                return;
            }
            let at_ms = cluster::now_ms();
            live.finished_at_ms = Some(at_ms);
            at_ms
        };
        // Lost with a crash, it is written again at the next start (nothing left to run).
        self.store.write_later(Write::BatchFinished {
            batch: self.id,
            at_ms,
        });
        self.changed();
        if let Some(open) = self.open.upgrade() {
            open.lock().remove(&self.id);
        }
        tracing::debug!(batch = self.id, "batch finished");
    }
}
