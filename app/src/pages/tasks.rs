//! The task page (`/`): the seed's Fibonacci app. Submit n, watch this session's queue with
//! live progress, cancel, and read results in a terminal. The server renders the whole state,
//! so the page works before (and without) its WASM: the form posts to the server function and
//! comes back to the page. Once hydrated, everything it shows comes from one live stream (see
//! [`crate::live`]) and the form is handled in place. The panel is the page's one island: the
//! only part of it whose code the browser downloads.

use leptos::prelude::*;

use crate::api::{load_task_page, submit_task};
use crate::components::{ResultsTerminal, TaskQueue};
use crate::live::{Connection, LiveStore};
use model::fibonacci::{MAX_N, parse_n};
use model::page::TaskPageView;

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

#[island]
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
        Connection::AsLoaded => "As of page load: reload to refresh".to_owned(),
        Connection::Connecting => "Connecting…".to_owned(),
        Connection::Live => "Live".to_owned(),
        Connection::Retrying(secs) => format!("Disconnected: retrying in {secs}s"),
        Connection::Restarting => "Server restarting: reconnecting…".to_owned(),
    };
    let class = move || match connection.get() {
        Connection::Live => "connection live",
        Connection::AsLoaded | Connection::Connecting => "connection connecting",
        Connection::Retrying(_) | Connection::Restarting => "connection down",
    };
    view! {
        <span class=class role="status" aria-live="polite">
            {label}
        </span>
    }
}
