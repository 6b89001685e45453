//! A batch as its owner's task page shows it: one row of the queue while it runs (its bar and
//! counts, not a row per member), then one line of the terminal, linking to its page.

use std::sync::Arc;

use model::batch::counts_text;
use model::page::{Outcome, QueuedTask, TaskStatus, TerminalLine, secs};

use super::{BatchRun, COALESCE, Snapshot};
use crate::ssr::AppState;

/// Shows `run` in its owner's queue until it finishes, then its line: at most ten changes a
/// second, however many members end.
pub async fn show_in_queue(state: AppState, run: Arc<BatchRun>) {
    // A token's owner has a session too: its API event stream and quota are the session's.
    let Ok(session) = state.sessions.get_or_create(run.owner()) else {
        return;
    };
    let mut changes = run.changes();
    loop {
        let snapshot = run.snapshot();
        if snapshot.finished_at_ms.is_some() {
            session.done(line(&run, &snapshot));
            return;
        }
        session.batch_changed(row(&run, &snapshot));
        // The run is held here, so its changes never close.
        if changes.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(COALESCE).await;
    }
}

fn row(run: &BatchRun, snapshot: &Snapshot) -> QueuedTask {
    QueuedTask {
        id: run.id(),
        task: run.kind().name().to_owned(),
        args: run.spec().brief(),
        status: if snapshot.running > 0 {
            TaskStatus::Running
        } else {
            TaskStatus::Queued
        },
        progress: snapshot.progress,
        submitted_at_ms: snapshot.created_at_ms,
        batch: Some(counts_text(snapshot.ended, snapshot.members)),
    }
}

/// `batch 7 square(n=20..40): 21 of 21 done in 3.214sec`: cancelled once it was, failed
/// when a member did not finish, finished otherwise.
fn line(run: &BatchRun, snapshot: &Snapshot) -> TerminalLine {
    let [_, failed, _, lost] = snapshot.ended;
    let outcome = if snapshot.cancelled_at_ms.is_some() {
        Outcome::Cancelled
    } else if failed + lost > 0 {
        Outcome::Failed
    } else {
        Outcome::Finished
    };
    let took = snapshot
        .finished_at_ms
        .unwrap_or_default()
        .saturating_sub(snapshot.created_at_ms);
    TerminalLine {
        task: run.id(),
        outcome,
        text: format!(
            "{}: {} in {}sec",
            row(run, snapshot).call(),
            counts_text(snapshot.ended, snapshot.members),
            secs(took as f64)
        ),
        image: false,
        batch: true,
    }
}
