//! The task page (`/`): the seed's Fibonacci app. Submit n, watch this session's queue with
//! live progress, cancel, and read results in a terminal. Everything it shows comes from one
//! live stream (see [`crate::live`]); the server functions below only act.

use leptos::prelude::*;

use crate::AppError;
use crate::components::{ResultsTerminal, TaskQueue};
use crate::live::{Connection, LiveStore};
use crate::model::{ClusterInfo, QueuedTask, parse_n};

/// Queues fibonacci(n) for the caller's session.
#[server(endpoint = "submit")]
pub async fn submit_task(n: i64) -> Result<QueuedTask, AppError> {
    use cluster::{Submitter, tasks::Fibonacci};

    use crate::model::{TaskStatus, validate_n};
    use crate::ssr::AppState;

    validate_n(n).map_err(AppError::InvalidInput)?;
    let state = AppState::from_context()?;
    let id = ssr::session_id().await?;
    let session = state.sessions.get_or_create(&id);
    let handle = state
        .cluster
        .submit::<Fibonacci>(n, &Submitter::new(id.0))
        .await?;
    let submitted = std::time::Instant::now();
    let task = QueuedTask {
        id: handle.id().0,
        n,
        status: TaskStatus::Queued,
        progress: 0.0,
        submitted_at_ms: cluster::now_ms(),
    };
    session.queued(task.clone());
    let task_id = task.id;
    // One waiter per task follows its start, progress and result, so the session hears of
    // them even if no page is open, and nothing listens to other sessions' tasks.
    tokio::spawn(async move {
        let mut progress = handle.progress();
        let result = handle.result();
        tokio::pin!(result);
        let outcome = loop {
            tokio::select! {
                outcome = &mut result => break outcome,
                changed = progress.changed() => match changed {
                    Ok(()) => session.running(task_id, *progress.borrow_and_update()),
                    // The worker is done with it: only the result is left to come.
                    Err(_) => break result.await,
                },
            }
        };
        session.done(ssr::terminal_line(task_id, n, outcome, submitted.elapsed()));
    });
    Ok(task)
}

/// Cancels one of the caller's queued or running tasks.
#[server(endpoint = "cancel")]
pub async fn cancel_task(id: u64) -> Result<(), AppError> {
    use crate::ssr::AppState;

    let state = AppState::from_context()?;
    let session = state.sessions.get_or_create(&ssr::session_id().await?);
    if !session.owns(id) {
        return Err(AppError::NotFound(
            "that task is not in your queue any more".into(),
        ));
    }
    state
        .cluster
        .cancel(cluster::TaskId(id))
        .await
        .map_err(|e| AppError::NotFound(e.to_string()))
}

/// The app's version and the cluster's size, for the footer.
#[server(endpoint = "cluster-info")]
pub async fn get_cluster_info() -> Result<ClusterInfo, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    Ok(ClusterInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        workers: state.cluster.workers(),
        backend: state.cluster.backend_name().to_owned(),
    })
}

#[cfg(feature = "ssr")]
mod ssr {
    use std::time::Duration;

    use axum::Extension;
    use cluster::TaskError;

    use crate::AppError;
    use crate::model::{Outcome, TerminalLine, secs};
    use crate::ssr::SessionId;

    pub async fn session_id() -> Result<SessionId, AppError> {
        leptos_axum::extract::<Extension<SessionId>>()
            .await
            .map(|Extension(id)| id)
            .map_err(|_| AppError::NoSession)
    }

    /// The seed's line, with milliseconds: `fibonacci(20)=6765 in 0.004sec`.
    pub fn terminal_line(
        task: u64,
        n: i64,
        outcome: Result<u64, TaskError>,
        took: Duration,
    ) -> TerminalLine {
        let took = secs(took.as_secs_f64() * 1e3);
        let (outcome, text) = match outcome {
            Ok(value) => (
                Outcome::Finished,
                format!("fibonacci({n})={value} in {took}sec"),
            ),
            Err(TaskError::Cancelled) => (
                Outcome::Cancelled,
                format!("fibonacci({n}) cancelled after {took}sec"),
            ),
            Err(TaskError::Lost(why)) => (Outcome::Lost, format!("fibonacci({n}) lost: {why}")),
            Err(error) => (Outcome::Failed, format!("fibonacci({n}) failed: {error}")),
        };
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
                terminal_line(1, 20, Ok(6765), ms).text,
                "fibonacci(20)=6765 in 0.004sec"
            );
            assert_eq!(
                terminal_line(
                    1,
                    60,
                    Err(TaskError::Cancelled),
                    Duration::from_millis(1500)
                )
                .text,
                "fibonacci(60) cancelled after 1.500sec"
            );
            let failed = terminal_line(1, 5, Err(TaskError::Panicked("boom".into())), ms);
            assert_eq!(
                (failed.outcome, failed.text.as_str()),
                (Outcome::Failed, "fibonacci(5) failed: panicked: boom")
            );
        }

        #[test]
        fn the_page_and_the_cluster_agree_on_the_bound() {
            assert_eq!(crate::model::MAX_N, cluster::tasks::Fibonacci::MAX_N);
        }
    }
}

#[component]
pub fn TaskPage() -> impl IntoView {
    let store = LiveStore::new();
    #[cfg(feature = "hydrate")]
    crate::live::connect(store);

    let n = RwSignal::new("0".to_owned());
    let error = RwSignal::new(None::<String>);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match parse_n(&n.get_untracked()) {
            Err(message) => error.set(Some(message)),
            Ok(value) => {
                error.set(None);
                // Like the seed: the next submit is for n + 1, even before this one returns.
                n.set((value + 1).to_string());
                leptos::task::spawn_local(async move {
                    match submit_task(value).await {
                        Ok(task) => store.apply(crate::model::PageUpdate::Task(task), 0.0),
                        Err(e) => error.set(Some(e.to_string())),
                    }
                });
            }
        }
    };

    view! {
        <section class="task-page">
            <div class="page-head">
                <h1>"Fibonacci Tasks"</h1>
                <ConnectionBadge connection=store.connection />
            </div>
            <form class="submit-row" novalidate on:submit=on_submit>
                <label class="field">
                    <span class="field-label">"n"</span>
                    <input
                        type="number"
                        name="n"
                        min="0"
                        max=crate::model::MAX_N
                        step="1"
                        inputmode="numeric"
                        autocomplete="off"
                        aria-invalid=move || error.with(Option::is_some).to_string()
                        aria-describedby="n-error"
                        bind:value=n
                    />
                </label>
                <button type="submit" class="primary">"SUBMIT"</button>
            </form>
            <p id="n-error" class="input-error" role="alert">
                {move || error.get()}
            </p>
            <TaskQueue store />
            <ResultsTerminal store />
        </section>
    }
}

#[component]
fn ConnectionBadge(connection: RwSignal<Connection>) -> impl IntoView {
    let label = move || match connection.get() {
        Connection::Connecting => "Connecting…".to_owned(),
        Connection::Live => "Live".to_owned(),
        Connection::Retrying(secs) => format!("Disconnected: retrying in {secs}s"),
    };
    let class = move || match connection.get() {
        Connection::Live => "connection live",
        Connection::Connecting => "connection connecting",
        Connection::Retrying(_) => "connection down",
    };
    view! {
        <span class=class role="status" aria-live="polite">
            {label}
        </span>
    }
}
