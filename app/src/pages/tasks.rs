//! The task page (`/`): the seed's Fibonacci app. Submit n, watch this session's queue with
//! live progress, cancel, and read results in a terminal. The server renders the whole state,
//! so the page works before (and without) its WASM: the form posts to the server function and
//! comes back to the page. Once hydrated, everything it shows comes from one live stream (see
//! [`crate::live`]) and the form is handled in place; the server functions below only act.

use leptos::prelude::*;

use crate::AppError;
use crate::components::{ResultsTerminal, TaskQueue};
use crate::live::{Connection, LiveStore};
use model::fibonacci::{MAX_N, parse_n};
use model::page::{ClusterInfo, QueuedTask, TaskPageView};

/// Queues fibonacci(n) for the caller's session. `n` arrives as typed, so a form post without
/// JavaScript gets the same checks and messages as the page.
#[server(endpoint = "submit")]
pub async fn submit_task(n: String) -> Result<QueuedTask, AppError> {
    let n = parse_n(&n).map_err(AppError::InvalidInput)?;
    let state = crate::ssr::AppState::from_context()?;
    crate::ssr::runner::submit(&state, &ssr::session_id().await?, n).await
}

/// Cancels one of the caller's queued or running tasks.
#[server(endpoint = "cancel")]
pub async fn cancel_task(id: u64) -> Result<(), AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let not_found = || AppError::NotFound("that task is not in your queue any more".into());
    let session = state
        .sessions
        .get(&ssr::session_id().await?)
        .ok_or_else(not_found)?;
    let cluster_id = session.cluster_id(id).ok_or_else(not_found)?;
    state
        .cluster
        .cancel(cluster::TaskId(cluster_id))
        .await
        .map_err(|e| AppError::NotFound(e.to_string()))
}

/// The caller's queue, results and next n, as the page first shows them. Creates nothing.
#[server(endpoint = "task-page")]
pub async fn load_task_page() -> Result<TaskPageView, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let mut view = state
        .sessions
        .get(&ssr::session_id().await?)
        .map(|session| session.view())
        .unwrap_or_default();
    view.error = ssr::form_error().await;
    Ok(view)
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
    use axum::Extension;
    use std::collections::HashMap;

    use axum::extract::Query;
    use base64::Engine;

    use crate::AppError;
    use crate::ssr::SessionId;

    pub async fn session_id() -> Result<SessionId, AppError> {
        leptos_axum::extract::<Extension<SessionId>>()
            .await
            .map(|Extension(id)| id)
            .map_err(|_| AppError::Unavailable("the session layer is missing".into()))
    }

    /// A form posted without JavaScript comes back with its error in the URL (`__err`, as
    /// server functions encode it); this reads it out for the page to show.
    pub async fn form_error() -> Option<String> {
        let Query(query) = leptos_axum::extract::<Query<HashMap<String, String>>>()
            .await
            .ok()?;
        let bytes = base64::engine::general_purpose::URL_SAFE
            .decode(query.get("__err")?)
            .ok()?;
        let error: AppError = serde_json::from_slice(&bytes).ok()?;
        Some(error.to_string())
    }
}

/// The page: its state comes from the server first (rendered into the HTML), then live.
#[component]
pub fn TaskPage() -> impl IntoView {
    let page = Resource::new(|| (), |()| load_task_page());
    view! {
        <section class="task-page">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let view = page.await.unwrap_or_else(|error| TaskPageView {
                        error: Some(error.to_string()),
                        ..TaskPageView::default()
                    });
                    view! { <TaskPanel view /> }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn TaskPanel(view: TaskPageView) -> impl IntoView {
    let store = LiveStore::new(view.tasks, view.lines);
    #[cfg(feature = "hydrate")]
    crate::live::connect(store);

    let n = RwSignal::new(view.next_n.to_string());
    let error = RwSignal::new(view.error);
    // Before hydration this handler does not exist and the browser posts the form itself.
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match parse_n(&n.get_untracked()) {
            Err(message) => error.set(Some(message)),
            Ok(value) => {
                error.set(None);
                // Like the seed: the next submit is for n + 1, even before this one returns.
                n.set((value + 1).to_string());
                leptos::task::spawn_local(async move {
                    match submit_task(value.to_string()).await {
                        Ok(task) => store.apply(model::page::PageUpdate::Task(task), 0.0),
                        Err(e) => error.set(Some(e.to_string())),
                    }
                });
            }
        }
    };

    view! {
        <div class="page-head">
            <h1>"Fibonacci Tasks"</h1>
            <ConnectionBadge connection=store.connection />
        </div>
        <form
            class="submit-row"
            method="post"
            action="/api/submit"
            novalidate
            on:submit=on_submit
        >
            <label class="field">
                <span class="field-label">"n"</span>
                <input
                    type="number"
                    name="n"
                    min="0"
                    max=MAX_N
                    step="1"
                    inputmode="numeric"
                    autocomplete="off"
                    aria-invalid=move || error.with(Option::is_some).to_string()
                    aria-describedby="n-error"
                    // The attribute is for the server-rendered page (no WASM yet, or none at
                    // all); the property follows the signal once hydrated.
                    value=view.next_n.to_string()
                    prop:value=move || n.get()
                    on:input=move |ev| n.set(event_target_value(&ev))
                />
            </label>
            <button type="submit" class="primary">"SUBMIT"</button>
        </form>
        <p id="n-error" class="input-error" role="alert">
            {move || error.get()}
        </p>
        <TaskQueue store />
        <ResultsTerminal store />
    }
}

#[component]
fn ConnectionBadge(connection: RwSignal<Connection>) -> impl IntoView {
    let label = move || match connection.get() {
        Connection::Connecting => "Connecting…".to_owned(),
        Connection::Live => "Live".to_owned(),
        Connection::Retrying(secs) => format!("Disconnected: retrying in {secs}s"),
        Connection::Restarting => "Server restarting: reconnecting…".to_owned(),
    };
    let class = move || match connection.get() {
        Connection::Live => "connection live",
        Connection::Connecting => "connection connecting",
        Connection::Retrying(_) | Connection::Restarting => "connection down",
    };
    view! {
        <span class=class role="status" aria-live="polite">
            {label}
        </span>
    }
}
