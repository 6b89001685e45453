//! Handing a batch's members to the cluster: in order, in chunks the owner's window has room
//! for, each chunk recorded in one commit; a member that takes an earlier result is recorded
//! as ended instead; a member the cluster refuses waits for room, or is recorded as failed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use model::page::{Outcome, QueuedTask, TaskStatus, TerminalLine};

use super::BatchRun;
use crate::AppError;
use crate::ssr::AppState;
use crate::ssr::runner::{self, Links, Watcher};
use crate::ssr::store::{Member, Write};

/// Most members handed over with one commit.
const CHUNK: usize = 256;

/// An owner's places for batch members in the cluster, shared by its open batches.
#[derive(Clone)]
pub(in crate::ssr::batches) struct Window {
    pub places: Arc<Semaphore>,
    pub size: usize,
}

/// Hands `run`'s members to the queue in order, each once a place in the owner's `window`
/// is free, until all were or it is cancelled; on a stop, it leaves the rest for the next
/// start. Members go over in chunks, as many as the window has room for: the cluster admits
/// them in order, up to the first it refuses, and their records go in one commit (in order,
/// so the batch's count of members handed over never passes a member not on record).
pub(in crate::ssr::batches) async fn feed(state: AppState, run: Arc<BatchRun>, window: Window) {
    let mut cancelled = run.cancelled.subscribe();
    loop {
        let next = run.live.lock().fed;
        if next >= run.members || *cancelled.borrow() {
            break;
        }
        let left = ((run.members - next) as usize).min(CHUNK);
        // A quarter of the window at least (or what is left): members go over in chunks, not
        // one per commit as each place frees, and the queue still never runs dry.
        let least = left.min((window.size / 4).max(1));
        let mut first: OwnedSemaphorePermit = tokio::select! {
            biased;
            _ = state.shutdown.begun() => return,
            _ = cancelled.wait_for(|c| *c) => break,
            permit = window.places.clone().acquire_many_owned(least as u32) => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let mut permits = Vec::with_capacity(left);
        while first.num_permits() > 1 {
            permits.extend(first.split(1));
        }
        permits.push(first);
        while permits.len() < left {
            match window.places.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let mut chunk = Vec::with_capacity(permits.len());
        let mut refused = None;
        for index in next..next + permits.len() as u64 {
            let input = run.spec.member(&run.kind, index as usize);
            if let Some(from) = run.reusable(&state, &input).await {
                chunk.push((
                    index,
                    Handed::Reused(from, reused_task(&state, &run, &input)),
                ));
                continue;
            }
            match runner::admit(&state, &run.kind, input.clone(), &run.owner).await {
                Ok(member) => chunk.push((index, Handed::Admitted(member))),
                Err(error) => {
                    refused = Some((index, input, error));
                    break;
                }
            }
        }
        let last = chunk.last().map(|(index, _)| *index);
        let writes = chunk
            .iter()
            .map(|(index, handed)| {
                let member = Member {
                    batch: run.id,
                    index: *index,
                    last: Some(*index) == last,
                };
                match handed {
                    Handed::Admitted(admitted) => {
                        let links = Links {
                            member: Some(member),
                            ..Links::default()
                        };
                        admitted.accepted(&run.owner, links)
                    }
                    Handed::Reused(from, task) => Write::Reused {
                        session: run.owner.0.clone(),
                        task: task.clone(),
                        member,
                        from: *from,
                    },
                }
            })
            .collect::<Vec<_>>();
        if !writes.is_empty()
            && let Err(error) = state.sessions.store().write_many(writes).await
        {
            // What was committed runs again after the next start, the rest is handed over
            // then: nothing is run twice in the meantime.
            tracing::error!(batch = run.id, %error, "could not record a batch's members: the batch waits for the next start");
            for (_, handed) in chunk {
                if let Handed::Admitted(admitted) = handed {
                    admitted.withdraw(&state).await;
                }
            }
            return;
        }
        let mut permits = permits.into_iter();
        for (index, handed) in chunk {
            let place = permits.next();
            match handed {
                Handed::Admitted(admitted) => {
                    let watcher = Watcher::Member(run.clone(), index, place);
                    runner::start_following(&state, &run.kind, admitted, watcher);
                }
                Handed::Reused(..) => {
                    run.accepted(index, 0);
                    run.ended(index, Outcome::Finished);
                }
            }
        }
        drop(permits);
        match refused {
            None => {}
            Some(_) if state.shutdown.has_begun() => return,
            Some((_, _, AppError::LimitReached(_) | AppError::Busy(_))) => {
                // The owner's single tasks (or other owners) fill what the window left: wait
                // for room, then hand the same member over.
                wait_for_room(&state, &run).await;
            }
            Some((_, _, AppError::Unavailable(why))) => {
                // No worker for the type yet, say.
                tracing::warn!(batch = run.id, %why, "a batch member waits to be queued");
                wait_for_room(&state, &run).await;
            }
            Some((index, input, error)) => refuse(&state, &run, index, input, error).await,
        }
    }
    run.fed_all();
}

/// A member as it goes over: to the cluster, or taking an earlier task's result.
enum Handed {
    Admitted(runner::Admitted),
    Reused(u64, QueuedTask),
}

/// The task a member that takes an earlier result is recorded as.
fn reused_task(state: &AppState, run: &BatchRun, input: &Value) -> QueuedTask {
    QueuedTask {
        id: state.sessions.next_task_id(),
        task: run.kind.name().to_owned(),
        args: run.kind.brief(input),
        status: TaskStatus::Queued,
        progress: 0.0,
        submitted_at_ms: cluster::now_ms(),
        batch: None,
    }
}

impl BatchRun {
    /// With reuse, the owner's newest finished task that computed the same as `input`.
    async fn reusable(&self, state: &AppState, input: &Value) -> Option<u64> {
        if !self.reuse {
            return None;
        }
        let key = self.kind.reuse_key(input);
        match state.sessions.store().reusable(&self.owner.0, key).await {
            Ok(found) => found,
            Err(error) => {
                // Run it rather than wait: reuse saves work, it never changes a result.
                tracing::warn!(batch = self.id, %error, "could not look an earlier result up");
                None
            }
        }
    }
}

async fn wait_for_room(state: &AppState, run: &BatchRun) {
    tokio::select! {
        _ = run.member_ended.notified() => {}
        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        _ = state.shutdown.begun() => {}
    }
}

/// Member `index`'s input is refused now (its type changed since the batch was accepted):
/// it is recorded as failed, saying why, and the batch goes on.
async fn refuse(state: &AppState, run: &Arc<BatchRun>, index: u64, input: Value, error: AppError) {
    let task = QueuedTask {
        id: state.sessions.next_task_id(),
        task: run.kind.name().to_owned(),
        args: run.kind.brief(&input),
        status: TaskStatus::Queued,
        progress: 0.0,
        submitted_at_ms: cluster::now_ms(),
        batch: None,
    };
    let accepted = state
        .sessions
        .store()
        .write(Write::Accepted {
            session: run.owner.0.clone(),
            task: task.clone(),
            input: input.clone(),
            next_input: None,
            retry_of: None,
            idempotency: None,
            member: Some(Member {
                batch: run.id,
                index,
                last: true,
            }),
            reuse_key: None,
        })
        .await;
    if accepted.is_err() {
        // Not on record: tried again, once the record takes writes again.
        wait_for_room(state, run).await;
        return;
    }
    run.accepted(index, 0);
    let line = TerminalLine {
        task: task.id,
        outcome: Outcome::Failed,
        text: format!("{} was refused: {error}", task.call()),
        image: false,
        batch: false,
    };
    let watcher = Watcher::Member(run.clone(), index, None);
    runner::record(state, &watcher, line, None, None, None).await;
}
