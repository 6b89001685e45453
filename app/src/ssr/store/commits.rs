//! How both writers turn the queue of writes into commits (group commit): whatever queued up
//! while the previous transaction ran goes into the next one, so a burst of submissions costs
//! one commit, not one each; under load commits are paced, so that each gathers more writes.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::figures::Figures;
use super::records::Op;

/// Writes that may wait for the writer before submitters are slowed down.
pub(super) const CHANNEL: usize = 4_096;
/// A commit that takes longer than this holds up submissions: it is logged as a warning.
pub(super) const SLOW: Duration = Duration::from_millis(50);
/// Least time from the end of one commit to the start of the next: what a write waits at
/// most, under load.
const PACE: Duration = Duration::from_millis(2);
/// Most writes in one transaction.
const BATCH: usize = 1_024;
/// Most rows one pruning transaction deletes: writes that arrive meanwhile wait at most that
/// long.
pub(super) const PRUNE_CHUNK: usize = 1_000;

/// How long the next commit waits after the last one. Load shows as writes that arrived while
/// the last commit was made: a commit writes every page it touched (the row and its indexes),
/// nearly as much for one write as for fifty, so back-to-back commits of a write or two each
/// wrote tens of kilobytes a task. After a commit of one write the next is made at once, so a
/// lone task's two writes (accepted, then ended) never wait.
pub(super) fn pause(last_commit: Instant, last_writes: usize) -> Option<Duration> {
    if last_writes > 1 {
        PACE.checked_sub(last_commit.elapsed())
    } else {
        None
    }
}

/// `first` and whatever else is queued, up to a transaction's worth.
pub(super) fn gather(first: Op, rx: &mut mpsc::Receiver<Op>) -> Vec<Op> {
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
    batch
}

/// Logs a slow or failed commit, then tells each waiting caller how its write went.
pub(super) fn acknowledge(batch: Vec<Op>, result: Result<(), String>, took: Duration) {
    if took > SLOW {
        tracing::warn!(
            took_ms = took.as_secs_f64() * 1e3,
            writes = batch.len(),
            "a commit of session records was slow"
        );
    }
    if let Err(error) = &result {
        tracing::error!(%error, writes = batch.len(), "could not commit session records");
    }
    for op in batch {
        if let Some(ack) = op.ack {
            let _ = ack.send(result.clone());
        }
    }
}

/// What a pruning chunk's outcome means for the writer that ran it, whichever it is: the
/// deleted tasks counted, and whether to go on pruning (only while chunks come back full).
pub(super) fn chunk_pruned<E: std::fmt::Display>(
    pruned: Result<usize, E>,
    figures: &Figures,
) -> bool {
    match pruned {
        Ok(gone) => {
            figures.count_pruned(gone);
            if gone > 0 {
                tracing::debug!(tasks = gone, "pruned tasks past the retention");
            }
            gone == PRUNE_CHUNK
        }
        Err(error) => {
            tracing::error!(%error, "could not prune old tasks");
            false
        }
    }
}
