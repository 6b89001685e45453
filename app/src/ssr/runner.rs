//! One task's journey on the server side: admitted by the cluster, recorded as accepted (durable)
//! before the caller hears of it, followed while it runs, and its result recorded, then shown,
//! exactly once. Tasks accepted before a restart are run again through the same path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::{Binary, Ended, Handle, Ran, Submitter, TaskError, TaskType};
use serde_json::Value;

use tokio::sync::OwnedSemaphorePermit;

use crate::AppError;
use crate::ssr::batches::BatchRun;
use crate::ssr::sessions::Session;
use crate::ssr::store::{Member, SavedTask, Write};
use crate::ssr::{AppState, SessionId};
use model::page::{Outcome, QueuedTask, Submitted, TaskStatus, TerminalLine, secs};

/// The task type called `name`, or an error that names the ones there are.
pub fn task_type(state: &AppState, name: &str) -> Result<Arc<TaskType>, AppError> {
    let registry = state
        .cluster
        .registry()
        .ok_or_else(|| AppError::Unavailable("this server does not run tasks".into()))?;
    registry.get(name).cloned().ok_or_else(|| {
        let names: Vec<&str> = registry.types().iter().map(|t| t.name()).collect();
        AppError::invalid(format!(
            "there is no task type {name:?}: choose one of {}",
            names.join(", ")
        ))
    })
}

/// The type called `task`, or the registry's first for an empty name.
pub fn chosen_type(
    state: &AppState,
    task: &str,
) -> Result<std::sync::Arc<cluster::TaskType>, AppError> {
    if task.is_empty() {
        state
            .cluster
            .registry()
            .and_then(|r| r.first().cloned())
            .ok_or_else(|| AppError::Unavailable("this server runs no task type".into()))
    } else {
        task_type(state, task)
    }
}

/// Queues a task of type `kind` with `input` (checked by the cluster) for the session `id`,
/// creating the session if this is its first task.
pub async fn submit(
    state: &AppState,
    id: &SessionId,
    kind: &Arc<TaskType>,
    input: Value,
    links: Links,
) -> Result<Submitted, AppError> {
    refuse_while_stopping(state)?;
    let session = state
        .sessions
        .get_or_create(id)
        .map_err(|full| AppError::Unavailable(full.to_string()))?;
    let task = enqueue(state, kind, input.clone(), links, Watcher::Session(session)).await?;
    let offered = kind.form(Some(&kind.next_input(&input)));
    let next = offered
        .fields
        .into_iter()
        .map(|field| field.name)
        .zip(offered.values)
        .collect();
    Ok(Submitted {
        task,
        next: Some(next),
    })
}

fn refuse_while_stopping(state: &AppState) -> Result<(), AppError> {
    if state.shutdown.has_begun() {
        return Err(AppError::Unavailable(
            "the server is restarting: submit again in a few seconds".into(),
        ));
    }
    Ok(())
}

/// Admits a task to the cluster, records it as accepted (durable before anyone hears of it),
/// tells `watcher` and follows it to its end.
pub(crate) async fn enqueue(
    state: &AppState,
    kind: &Arc<TaskType>,
    input: Value,
    links: Links,
    watcher: Watcher,
) -> Result<QueuedTask, AppError> {
    let admitted = admit(state, kind, input, watcher.owner()).await?;
    let recorded = state
        .sessions
        .store()
        .write(admitted.accepted(watcher.owner(), links))
        .await;
    if let Err(error) = recorded {
        // Not durable, so not accepted: the person is told, and the work does not run.
        let _ = state.cluster.cancel(admitted.handle.id()).await;
        tracing::error!(%error, "could not record a submission");
        return Err(AppError::Unavailable(
            "the server could not record your task: try again in a moment".into(),
        ));
    }
    let task = admitted.task.clone();
    start_following(state, kind, admitted, watcher);
    Ok(task)
}

/// A task the cluster took, not on record yet: nobody hears of it before it is.
pub(crate) struct Admitted {
    handle: Handle,
    task: QueuedTask,
    input: Value,
    next_input: Value,
    /// What it computes ([`TaskType::reuse_key`]).
    reuse_key: i64,
}

impl Admitted {
    /// The write that records it as `owner`'s.
    pub(crate) fn accepted(&self, owner: &SessionId, links: Links) -> Write {
        Write::Accepted {
            session: owner.0.clone(),
            task: self.task.clone(),
            input: self.input.clone(),
            // A batch's member leaves the form's next input as it was.
            next_input: links.member.is_none().then(|| self.next_input.clone()),
            retry_of: links.retry_of,
            idempotency: links.idempotency,
            member: links.member,
            reuse_key: Some(self.reuse_key),
        }
    }

    /// Takes it back from the cluster (it was not recorded).
    pub(crate) async fn withdraw(self, state: &AppState) {
        let _ = state.cluster.cancel(self.handle.id()).await;
    }
}

/// Hands a task of `owner`'s to the cluster, as admission allows.
pub(crate) async fn admit(
    state: &AppState,
    kind: &Arc<TaskType>,
    input: Value,
    owner: &SessionId,
) -> Result<Admitted, AppError> {
    refuse_while_stopping(state)?;
    // Stamped before the cluster hears of it: a worker may start it before the submit returns.
    let submitted_at_ms = cluster::now_ms();
    let handle = state
        .cluster
        .submit_value(
            kind.name(),
            input.clone(),
            &Submitter::new(owner.0.as_str()),
        )
        .await?;
    let task = QueuedTask {
        id: state.sessions.next_task_id(),
        task: kind.name().to_owned(),
        args: kind.brief(&input),
        status: TaskStatus::Queued,
        progress: 0.0,
        submitted_at_ms,
        batch: None,
    };
    let next_input = kind.next_input(&input);
    Ok(Admitted {
        handle,
        task,
        reuse_key: kind.reuse_key(&input),
        input,
        next_input,
    })
}

/// Once `admitted` is on record: tells `watcher`, and follows it to its end.
pub(crate) fn start_following(
    state: &AppState,
    kind: &Arc<TaskType>,
    admitted: Admitted,
    watcher: Watcher,
) {
    let Admitted {
        handle,
        task,
        input,
        next_input,
        ..
    } = admitted;
    watcher.accepted(task.clone(), handle.id().0, Some(next_input));
    tokio::spawn(follow(
        state.clone(),
        watcher,
        Followed {
            kind: kind.clone(),
            task,
            input,
            rerun: false,
        },
        handle,
    ));
}

/// What a submission is tied to besides its input.
#[derive(Debug, Default)]
pub struct Links {
    /// The task it runs again.
    pub retry_of: Option<u64>,
    /// The API's `Idempotency-Key`, and the SHA-256 of the request.
    pub idempotency: Option<(String, Vec<u8>)>,
    /// The batch it is a member of.
    pub member: Option<Member>,
}

/// Who hears of a task's progress and its end: the session whose queue and terminal show it,
/// or the batch it is a member of.
pub enum Watcher {
    Session(Arc<Session>),
    /// The member's index, and its place in the owner's window of members in the cluster
    /// (given back when the cluster is done with it).
    Member(Arc<BatchRun>, u64, Option<OwnedSemaphorePermit>),
}

impl Watcher {
    fn owner(&self) -> &SessionId {
        match self {
            Self::Session(session) => session.id(),
            Self::Member(run, ..) => run.owner(),
        }
    }

    fn accepted(&self, task: QueuedTask, cluster: u64, next_input: Option<Value>) {
        match self {
            Self::Session(session) => session.accepted(task, cluster, next_input),
            Self::Member(run, index, _) => run.accepted(*index, cluster),
        }
    }

    fn running(&self, task: u64, progress: f64) {
        match self {
            Self::Session(session) => session.running(task, progress),
            Self::Member(run, index, _) => run.running(*index, progress),
        }
    }

    /// The cluster is done with the task (its result is still to be recorded).
    fn left_cluster(&mut self) {
        if let Self::Member(_, _, place) = self {
            place.take();
        }
    }

    fn done(&self, line: TerminalLine) {
        match self {
            Self::Session(session) => session.done(line),
            Self::Member(run, index, _) => run.ended(*index, line.outcome),
        }
    }
}

/// Runs again the tasks that were accepted but had not finished when the server last stopped.
pub async fn rerun(state: &AppState, tasks: Vec<(Watcher, SavedTask)>) {
    let count = tasks.len();
    for (watcher, SavedTask { task, input }) in tasks {
        let submitter = Submitter::new(watcher.owner().0.as_str());
        let resubmitted = match task_type(state, &task.task) {
            Ok(kind) => state
                .cluster
                .resubmit_value(kind.name(), input.clone(), &submitter)
                .await
                .map(|handle| (kind, handle))
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match resubmitted {
            Ok((kind, handle)) => {
                watcher.accepted(task.clone(), handle.id().0, None);
                let followed = Followed {
                    kind,
                    task,
                    input,
                    rerun: true,
                };
                tokio::spawn(follow(state.clone(), watcher, followed, handle));
            }
            Err(error) => {
                // Recorded as failed so that it is reported, not retried for ever.
                watcher.accepted(task.clone(), 0, None);
                let line = TerminalLine {
                    task: task.id,
                    outcome: Outcome::Failed,
                    text: format!(
                        "{} could not run again after a restart: {error}",
                        task.call()
                    ),
                    image: false,
                    batch: false,
                };
                record(state, &watcher, line, None, None, None).await;
            }
        }
    }
    if count > 0 {
        tracing::info!(count, "running again the tasks accepted before the restart");
    }
}

/// Records a task that had not ended when the server stopped as cancelled, without running
/// it: it was cancelled meanwhile (with its batch).
pub(crate) async fn cancelled_before_restart(state: &AppState, watcher: Watcher, saved: SavedTask) {
    watcher.accepted(saved.task.clone(), 0, None);
    let line = TerminalLine {
        task: saved.task.id,
        outcome: Outcome::Cancelled,
        text: format!("{} cancelled with its batch", saved.task.call()),
        image: false,
        batch: false,
    };
    record(state, &watcher, line, None, None, None).await;
}

/// A task being followed to its end.
struct Followed {
    kind: Arc<TaskType>,
    task: QueuedTask,
    input: Value,
    /// It was accepted before a restart.
    rerun: bool,
}

/// Follows one task to its end: progress to its watcher, then its line, recorded first.
async fn follow(state: AppState, mut watcher: Watcher, followed: Followed, handle: Handle) {
    let started = Instant::now();
    let id = followed.task.id;
    let mut progress = handle.progress();
    let result = handle.ended();
    tokio::pin!(result);
    let Ended { outcome, ran } = loop {
        tokio::select! {
            outcome = &mut result => break outcome,
            changed = progress.changed() => match changed {
                Ok(()) => watcher.running(id, *progress.borrow_and_update()),
                // The worker is done with it: only the result is left to come.
                Err(_) => break result.await,
            },
        }
    };
    // Out of the cluster: a batch's next member may take its place while its result is
    // being recorded.
    watcher.left_cluster();
    if matches!(outcome, Err(TaskError::Lost(_))) && state.shutdown.has_begun() {
        // Stopped by this server's shutdown: it stays recorded as accepted and runs again
        // after the next start.
        return;
    }
    let mut line = terminal_line(&followed, outcome.as_ref(), started.elapsed());
    let (output, binary) = match outcome {
        Ok(mut output) => match followed.kind.take_binary(&mut output) {
            Ok(binary) => (Some(output), binary),
            Err(why) => {
                // The worker's output is not what its type says: a bug in the task, or a
                // worker of another build. Reported as such, not stored half.
                line.outcome = Outcome::Failed;
                line.text = format!(
                    "{} failed: its output is damaged: {why}",
                    followed.task.call()
                );
                (None, None)
            }
        },
        Err(_) => (None, None),
    };
    line.image = binary
        .as_ref()
        .is_some_and(|binary| binary.media_type().starts_with("image/"));
    let ran = ran.map(|ran| Ran {
        // The run before the restart was an attempt too.
        attempt: ran.attempt + u32::from(followed.rerun),
        ..ran
    });
    record(&state, &watcher, line, output, binary, ran).await;
}

pub(crate) async fn record(
    state: &AppState,
    watcher: &Watcher,
    line: TerminalLine,
    output: Option<Value>,
    binary: Option<Binary>,
    ran: Option<Ran>,
) {
    let write = Write::Done {
        session: watcher.owner().0.clone(),
        line: line.clone(),
        output,
        binary,
        ran,
        finished_at_ms: cluster::now_ms(),
    };
    let store = state.sessions.store();
    // Kept for a second try: the database may be restarting.
    let again = write.clone();
    if let Err(error) = store.write(write).await {
        // Shown all the same; recorded once the record is back, or, unrecorded, run again
        // after a restart.
        if store.write_when_back(again) {
            tracing::warn!(%error, task = line.task, "a result waits for the record to be back");
        } else {
            tracing::error!(%error, task = line.task, "could not record a result");
        }
    }
    watcher.done(line);
}

/// The task's summary and the time it took, as the seed's line: `square(20)=400 in
/// 0.004sec`; or how it ended otherwise.
fn terminal_line(
    followed: &Followed,
    outcome: Result<&Value, &TaskError>,
    took: Duration,
) -> TerminalLine {
    let took = secs(took.as_secs_f64() * 1e3);
    let call = followed.task.call();
    let (outcome, mut text) = match outcome {
        Ok(output) => (
            Outcome::Finished,
            format!(
                "{} in {took}sec",
                followed.kind.summary(&followed.input, output)
            ),
        ),
        Err(TaskError::Cancelled) => (
            Outcome::Cancelled,
            format!("{call} cancelled after {took}sec"),
        ),
        Err(error @ TaskError::TimeLimit { .. }) => {
            (Outcome::Failed, format!("{call} stopped: {error}"))
        }
        Err(TaskError::Lost(why)) => (Outcome::Lost, format!("{call} lost: {why}")),
        Err(error) => (Outcome::Failed, format!("{call} failed: {error}")),
    };
    if followed.rerun {
        text.push_str(" (rerun after a restart)");
    }
    TerminalLine {
        task: followed.task.id,
        outcome,
        text,
        image: false,
        batch: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::{Registry, Task, TaskContext};
    use serde_json::json;

    struct Square;

    /// What to square.
    #[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Number {
        x: u64,
    }

    impl Task for Square {
        const NAME: &'static str = "square";
        const TITLE: &'static str = "Square";
        const DESCRIPTION: &'static str = "x times x.";
        type Input = Number;
        type Output = u64;
        fn summary(input: &Number, output: &u64) -> String {
            format!("square({})={output}", input.x)
        }
        fn run(input: Number, _: &TaskContext<'_>) -> Result<u64, TaskError> {
            Ok(input.x * input.x)
        }
    }

    fn followed(rerun: bool) -> Followed {
        let kind = Registry::empty()
            .register::<Square>()
            .first()
            .unwrap()
            .clone();
        let input = json!({"x": 20});
        Followed {
            task: QueuedTask {
                id: 1,
                task: "square".into(),
                args: kind.brief(&input),
                status: TaskStatus::Running,
                progress: 0.0,
                submitted_at_ms: 0,
                batch: None,
            },
            kind,
            input,
            rerun,
        }
    }

    #[test]
    fn lines_are_the_summary_with_the_seeds_seconds_or_how_the_task_ended() {
        let ms = Duration::from_micros(4_321);
        let line = |rerun, outcome: Result<&Value, &TaskError>, took| {
            let line = terminal_line(&followed(rerun), outcome, took);
            (line.outcome, line.text)
        };
        assert_eq!(
            line(false, Ok(&json!(400)), ms),
            (Outcome::Finished, "square(20)=400 in 0.004sec".into())
        );
        assert_eq!(
            line(true, Ok(&json!(400)), ms).1,
            "square(20)=400 in 0.004sec (rerun after a restart)"
        );
        assert_eq!(
            line(
                false,
                Err(&TaskError::Cancelled),
                Duration::from_millis(1500)
            ),
            (
                Outcome::Cancelled,
                "square(20) cancelled after 1.500sec".into()
            )
        );
        assert_eq!(
            line(false, Err(&TaskError::TimeLimit { limit_ms: 300_000 }), ms).1,
            "square(20) stopped: it ran past the 300 s limit"
        );
        assert_eq!(
            line(false, Err(&TaskError::Panicked("boom".into())), ms),
            (Outcome::Failed, "square(20) failed: panicked: boom".into())
        );
        assert_eq!(
            line(false, Err(&TaskError::Lost("gone".into())), ms),
            (Outcome::Lost, "square(20) lost: gone".into())
        );
    }
}
