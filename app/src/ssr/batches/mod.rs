//! Batches: one task type, many inputs, one owner, followed as one.
//!
//! A batch's members wait in their batch, not in the cluster's queue: each owner has a window
//! of members in the queue at once (its running cap plus half its queued cap, shared by its
//! open batches), and a member is handed over as an earlier one ends. So a 10,000-member batch
//! neither meets the per-owner queued cap nor holds the cluster from other owners (the fair
//! queue takes owners in turn), and every cap, lane and time limit applies to each member as
//! to a single task. Each member is a task on record that names its batch and index; the
//! batch records how many were handed over, so after a restart the members in the queue run
//! again and the rest follow ([`Batches::resume`]).

pub mod page;
pub mod results;
mod run;
mod spec;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use cluster::TaskType;

pub use run::{BatchRun, COALESCE, Snapshot};
pub use spec::BatchSpec;

use crate::AppError;
use crate::ssr::runner::{self, Watcher};
use crate::ssr::store::{NewBatch, SavedBatch, Write};
use crate::ssr::{AppState, SessionId};
use run::{Open, Start, Window};

/// How large batches may be, and how many one owner may have open.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most members in one batch.
    pub max_members: usize,
    /// Most batches one owner may have open (not finished) at once.
    pub max_open_per_owner: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_members: 10_000,
            max_open_per_owner: 10,
        }
    }
}

/// What a batch is tied to besides its members.
#[derive(Debug, Default)]
pub struct BatchLinks {
    /// The API's `Idempotency-Key`, and the SHA-256 of the request.
    pub idempotency: Option<(String, Vec<u8>)>,
    /// The batch whose failed and cancelled members it runs again.
    pub retry_of: Option<u64>,
    /// A member whose computation (type, schema, version and input) finished before for the
    /// same owner, and is still on record, takes that result instead of running.
    pub reuse: bool,
}

/// The open batches, and each owner's window of members in the queue.
pub struct Batches {
    config: BatchConfig,
    open: Arc<Open>,
    /// Each owner's window, while a batch of its is open, and its size.
    windows: Mutex<HashMap<SessionId, (Weak<Semaphore>, usize)>>,
    next_id: AtomicU64,
}

impl Batches {
    /// No batch open; the next batch is `last_id + 1` (ids are never reused).
    pub fn new(config: BatchConfig, last_id: u64) -> Self {
        Self {
            config,
            open: Arc::default(),
            windows: Mutex::default(),
            next_id: AtomicU64::new(last_id + 1),
        }
    }

    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// The open batches, oldest first, as the dashboard's progress view shows them: `batch 7 ·
    /// square` and its members by state (those waiting in the batch count as queued).
    pub fn bars(&self) -> Vec<(String, model::Totals)> {
        let open: Vec<Arc<BatchRun>> = self.open.lock().values().cloned().collect();
        open.iter()
            .map(|run| {
                let at = run.snapshot();
                let [finished, failed, cancelled, lost] = at.ended;
                let totals = model::Totals {
                    submitted: at.members,
                    queued: at.waiting + at.queued,
                    running: at.running,
                    finished,
                    // The dashboard's failed include the lost.
                    failed: failed + lost,
                    cancelled,
                    lost,
                };
                (
                    format!("batch {} · {}", run.id(), run.kind().name()),
                    totals,
                )
            })
            .collect()
    }

    /// Open batch `id`, if it is `owner`'s.
    pub fn get(&self, owner: &SessionId, id: u64) -> Option<Arc<BatchRun>> {
        self.open
            .lock()
            .get(&id)
            .filter(|run| run.owner() == owner)
            .cloned()
    }

    /// Accepts a batch of `spec` for `owner` (every member checked first; the batch is on
    /// record before this returns) and starts handing its members to the queue.
    pub async fn submit(
        &self,
        state: &AppState,
        owner: &SessionId,
        kind: &Arc<TaskType>,
        spec: BatchSpec,
        links: BatchLinks,
    ) -> Result<Arc<BatchRun>, AppError> {
        if state.shutdown.has_begun() {
            return Err(AppError::Unavailable(
                "the server is restarting: submit again in a few seconds".into(),
            ));
        }
        spec.check(kind)?;
        let open = self
            .open
            .lock()
            .values()
            .filter(|run| run.owner() == owner)
            .count();
        let max = self.config.max_open_per_owner;
        if open >= max {
            return Err(AppError::LimitReached(format!(
                "you have {open} batches running, the most allowed: wait for one to finish, \
                 or cancel one"
            )));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let created_at_ms = cluster::now_ms();
        state
            .sessions
            .store()
            .write(Write::Batch(NewBatch {
                id,
                session: owner.0.clone(),
                task_type: kind.name().to_owned(),
                spec: serde_json::to_value(&spec).map_err(|e| AppError::internal(&e))?,
                members: spec.len() as u64,
                created_at_ms,
                idempotency: links.idempotency,
                retry_of: links.retry_of,
                reuse: links.reuse,
            }))
            .await?;
        let start = Start {
            id,
            owner: owner.clone(),
            kind: kind.clone(),
            spec,
            created_at_ms,
            fed: 0,
            ended: [0; 4],
            cancelled_at_ms: None,
            reuse: links.reuse,
        };
        let run = BatchRun::new(start, state, &self.open);
        self.open.lock().insert(id, run.clone());
        tokio::spawn(run::show_in_queue(state.clone(), run.clone()));
        tokio::spawn(run::feed(
            state.clone(),
            run.clone(),
            self.window(state, owner),
        ));
        tracing::info!(batch = id, members = run.spec().len(), "batch accepted");
        Ok(run)
    }

    /// Goes on with the batches that were open when the server last stopped: their members
    /// that were in the queue run again (as reruns), the rest are handed over as before; the
    /// members of a cancelled one that had not ended are recorded as cancelled.
    pub async fn resume(&self, state: &AppState, saved: Vec<SavedBatch>) {
        for SavedBatch { batch, unfinished } in saved {
            let spec = serde_json::from_value::<BatchSpec>(batch.spec.clone())
                .ok()
                .filter(|spec| spec.len() as u64 == batch.members);
            let kind = runner::task_type(state, &batch.task_type);
            let (spec, kind) = match (spec, kind) {
                (Some(spec), Ok(kind)) => (spec, kind),
                (spec, kind) => {
                    let why = match kind {
                        Err(error) => error.to_string(),
                        Ok(_) if spec.is_none() => "its record is damaged".to_owned(),
                        Ok(_) => unreachable!("both were found"),
                    };
                    tracing::error!(batch = batch.id, %why, "a batch cannot go on after the restart");
                    state.sessions.store().write_later(Write::BatchCancelled {
                        batch: batch.id,
                        at_ms: cluster::now_ms(),
                    });
                    state.sessions.store().write_later(Write::BatchFinished {
                        batch: batch.id,
                        at_ms: cluster::now_ms(),
                    });
                    continue;
                }
            };
            let owner = SessionId(batch.session.clone());
            let start = Start {
                id: batch.id,
                owner: owner.clone(),
                kind,
                spec,
                created_at_ms: batch.created_at_ms,
                fed: batch.fed,
                ended: batch.ended,
                cancelled_at_ms: batch.cancelled_at_ms,
                reuse: batch.reuse,
            };
            let run = BatchRun::new(start, state, &self.open);
            self.open.lock().insert(batch.id, run.clone());
            tokio::spawn(run::show_in_queue(state.clone(), run.clone()));
            let members: Vec<_> = unfinished
                .into_iter()
                .map(|(index, task)| (Watcher::Member(run.clone(), index, None), task))
                .collect();
            if batch.cancelled_at_ms.is_some() {
                for (watcher, task) in members {
                    runner::cancelled_before_restart(state, watcher, task).await;
                }
                run.fed_all();
            } else {
                runner::rerun(state, members).await;
                tokio::spawn(run::feed(
                    state.clone(),
                    run.clone(),
                    self.window(state, &owner),
                ));
            }
        }
    }

    /// `owner`'s window: members of its batches in the cluster at once.
    fn window(&self, state: &AppState, owner: &SessionId) -> Window {
        let mut windows = self.windows.lock();
        if let Some((places, size)) = windows
            .get(owner)
            .and_then(|(places, size)| Some((places.upgrade()?, *size)))
        {
            return Window { places, size };
        }
        windows.retain(|_, (places, _)| places.strong_count() > 0);
        // Sized when the owner's first open batch starts (a NATS cluster's caps follow its
        // workers).
        let (running, queued) = state.cluster.caps().unwrap_or((1, 2));
        let size = running + (queued / 2).max(1);
        let places = Arc::new(Semaphore::new(size));
        windows.insert(owner.clone(), (Arc::downgrade(&places), size));
        Window { places, size }
    }
}
