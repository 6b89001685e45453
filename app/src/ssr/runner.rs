//! One task's journey on the server side: admitted by the cluster, recorded as accepted (durable)
//! before the caller hears of it, followed while it runs, and its result recorded, then shown,
//! exactly once. Tasks accepted before a restart are run again through the same path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::{Submitter, TaskError, TaskHandle, tasks::Fibonacci};

use crate::AppError;
use crate::ssr::sessions::Session;
use crate::ssr::store::Write;
use crate::ssr::{AppState, SessionId};
use model::page::{Outcome, QueuedTask, TaskStatus, TerminalLine, secs};

/// Queues fibonacci(n) for the session `id`, creating the session if this is its first task.
pub async fn submit(state: &AppState, id: &SessionId, n: i64) -> Result<QueuedTask, AppError> {
    if state.shutdown.has_begun() {
        return Err(AppError::Unavailable(
            "the server is restarting: submit again in a few seconds".into(),
        ));
    }
    let session = state
        .sessions
        .get_or_create(id)
        .map_err(|full| AppError::Unavailable(full.to_string()))?;
    let handle = state
        .cluster
        .submit::<Fibonacci>(n, &Submitter::new(id.0.as_str()))
        .await?;
    let task = QueuedTask {
        id: state.sessions.next_task_id(),
        n,
        status: TaskStatus::Queued,
        progress: 0.0,
        submitted_at_ms: cluster::now_ms(),
    };
    let next_n = n.saturating_add(1);
    let recorded = state
        .sessions
        .store()
        .write(Write::Accepted {
            session: id.0.clone(),
            task: task.clone(),
            next_n,
        })
        .await;
    if let Err(error) = recorded {
        // Not durable, so not accepted: the person is told, and the work does not run.
        let _ = state.cluster.cancel(handle.id()).await;
        tracing::error!(%error, "could not record a submission");
        return Err(AppError::Unavailable(
            "the server could not record your task: try again in a moment".into(),
        ));
    }
    session.accepted(task.clone(), handle.id().0, Some(next_n));
    tokio::spawn(follow(
        state.clone(),
        session,
        task.clone(),
        handle,
        Instant::now(),
        false,
    ));
    Ok(task)
}

/// Runs again the tasks that were accepted but had not finished when the server last stopped.
pub async fn rerun(state: &AppState, tasks: Vec<(Arc<Session>, QueuedTask)>) {
    let count = tasks.len();
    for (session, task) in tasks {
        let submitter = Submitter::new(session.id().0.as_str());
        match state
            .cluster
            .resubmit::<Fibonacci>(task.n, &submitter)
            .await
        {
            Ok(handle) => {
                session.accepted(task.clone(), handle.id().0, None);
                tokio::spawn(follow(
                    state.clone(),
                    session,
                    task,
                    handle,
                    Instant::now(),
                    true,
                ));
            }
            Err(error) => {
                // Recorded as failed so that it is reported, not retried for ever.
                session.accepted(task.clone(), 0, None);
                let line = terminal_line(
                    task.id,
                    task.n,
                    Err(TaskError::Failed(error.to_string())),
                    Duration::ZERO,
                    true,
                );
                record(state, &session, line).await;
            }
        }
    }
    if count > 0 {
        tracing::info!(count, "running again the tasks accepted before the restart");
    }
}

/// Follows one task to its end: progress to the session's pages, then its line, recorded first.
async fn follow(
    state: AppState,
    session: Arc<Session>,
    task: QueuedTask,
    handle: TaskHandle<Fibonacci>,
    started: Instant,
    rerun: bool,
) {
    let mut progress = handle.progress();
    let result = handle.result();
    tokio::pin!(result);
    let outcome = loop {
        tokio::select! {
            outcome = &mut result => break outcome,
            changed = progress.changed() => match changed {
                Ok(()) => session.running(task.id, *progress.borrow_and_update()),
                // The worker is done with it: only the result is left to come.
                Err(_) => break result.await,
            },
        }
    };
    if matches!(outcome, Err(TaskError::Lost(_))) && state.shutdown.has_begun() {
        // Stopped by this server's shutdown: it stays recorded as accepted and runs again
        // after the next start.
        return;
    }
    let line = terminal_line(task.id, task.n, outcome, started.elapsed(), rerun);
    record(&state, &session, line).await;
}

async fn record(state: &AppState, session: &Session, line: TerminalLine) {
    let write = Write::Done {
        session: session.id().0.clone(),
        line: line.clone(),
        keep_lines: state.sessions.config().max_lines,
    };
    if let Err(error) = state.sessions.store().write(write).await {
        // Shown all the same; unrecorded, the task runs again after a restart.
        tracing::error!(%error, task = line.task, "could not record a result");
    }
    session.done(line);
}

/// The seed's line, with milliseconds: `fibonacci(20)=6765 in 0.004sec`.
pub fn terminal_line(
    task: u64,
    n: i64,
    outcome: Result<u64, TaskError>,
    took: Duration,
    rerun: bool,
) -> TerminalLine {
    let took = secs(took.as_secs_f64() * 1e3);
    let (outcome, mut text) = match outcome {
        Ok(value) => (
            Outcome::Finished,
            format!("fibonacci({n})={value} in {took}sec"),
        ),
        Err(TaskError::Cancelled) => (
            Outcome::Cancelled,
            format!("fibonacci({n}) cancelled after {took}sec"),
        ),
        Err(error @ TaskError::TimeLimit { .. }) => {
            (Outcome::Failed, format!("fibonacci({n}) stopped: {error}"))
        }
        Err(TaskError::Lost(why)) => (Outcome::Lost, format!("fibonacci({n}) lost: {why}")),
        Err(error) => (Outcome::Failed, format!("fibonacci({n}) failed: {error}")),
    };
    if rerun {
        text.push_str(" (rerun after a restart)");
    }
    TerminalLine {
        task,
        outcome,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_like_the_seeds_with_milliseconds() {
        let ms = Duration::from_micros(4_321);
        assert_eq!(
            terminal_line(1, 20, Ok(6765), ms, false).text,
            "fibonacci(20)=6765 in 0.004sec"
        );
        assert_eq!(
            terminal_line(1, 20, Ok(6765), ms, true).text,
            "fibonacci(20)=6765 in 0.004sec (rerun after a restart)"
        );
        assert_eq!(
            terminal_line(
                1,
                60,
                Err(TaskError::Cancelled),
                Duration::from_millis(1500),
                false
            )
            .text,
            "fibonacci(60) cancelled after 1.500sec"
        );
        assert_eq!(
            terminal_line(
                1,
                60,
                Err(TaskError::TimeLimit { limit_ms: 300_000 }),
                ms,
                false
            )
            .text,
            "fibonacci(60) stopped: it ran past the 300 s limit"
        );
        let failed = terminal_line(1, 5, Err(TaskError::Panicked("boom".into())), ms, false);
        assert_eq!(
            (failed.outcome, failed.text.as_str()),
            (Outcome::Failed, "fibonacci(5) failed: panicked: boom")
        );
    }
}
