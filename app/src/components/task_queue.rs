//! "Task queue": the seed's one-line list of inputs, then one row per task with its state, a live
//! progress bar, elapsed time and a Cancel button.

use leptos::either::Either;
use leptos::prelude::*;

use crate::live::LiveStore;
use model::page::{QueuedTask, Quota, TaskStatus, one_decimal, queue_label};

/// `caps`: the session's caps; the counts come from the live queue.
#[component]
pub fn TaskQueue(store: LiveStore, #[prop(name = "quota")] caps: Quota) -> impl IntoView {
    let now_ms = clock(store);
    let quota = Memo::new(move |_| store.tasks.with(|tasks| caps.of(tasks)));
    view! {
        <section class="queue" aria-labelledby="queue-heading">
            <h2 id="queue-heading">{move || store.tasks.with(|t| queue_label(t))}</h2>
            <p class="quota" aria-label="Your quota">
                {move || store.tasks.with(|tasks| quota.get().line_with_batches(tasks))}
            </p>
            <ul class="task-rows" aria-label="Unfinished tasks">
                <For each=move || store.tasks.get() key=|task| (task.id, task.batch.is_some()) let:task>
                    <TaskRow
                        id=task.id
                        batch=task.batch.is_some()
                        label=task.call()
                        submitted_at_ms=task.submitted_at_ms
                        store
                        now_ms
                        quota
                    />
                </For>
            </ul>
        </section>
    }
}

/// The server's "now" in ms, ticking ten times a second in the browser while the page shows
/// the live stream (a page the app's in-page navigation left is no longer shown: its timer
/// fires to no effect).
fn clock(store: LiveStore) -> Signal<f64> {
    let now = RwSignal::new(0.0);
    #[cfg(feature = "hydrate")]
    {
        let set =
            move || now.set(crate::live::js_sys_now() + store.clock_offset_ms.get_untracked());
        set();
        let tick = move || {
            if store.connection.get_untracked() != crate::live::Connection::AsLoaded {
                set();
            }
        };
        if let Ok(handle) = set_interval_with_handle(tick, std::time::Duration::from_millis(100)) {
            on_cleanup(move || handle.clear());
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = store;
    now.into()
}

#[component]
fn TaskRow(
    id: u64,
    /// It is a batch's row, `id` the batch's.
    batch: bool,
    /// `primes(1000000)`: its type and input.
    label: String,
    submitted_at_ms: u64,
    store: LiveStore,
    now_ms: Signal<f64>,
    quota: Memo<Quota>,
) -> impl IntoView {
    let current = move || {
        store.tasks.with(|tasks| {
            tasks
                .iter()
                .find(|t| t.id == id && t.batch.is_some() == batch)
                .cloned()
        })
    };
    let status = move || current().map_or(TaskStatus::Queued, |t: QueuedTask| t.status);
    let percent = move || current().map_or(0.0, |t| t.progress * 100.0);
    let elapsed = move || {
        let ms = (now_ms.get() - submitted_at_ms as f64).max(0.0);
        format!("{}s", one_decimal(ms / 1e3))
    };
    let cancelling = RwSignal::new(false);
    let problem = RwSignal::new(None::<String>);
    // A form, so that Cancel works before hydration too (the browser posts it); once
    // hydrated it is posted in place.
    let cancel = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let Some(form) = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok())
            else {
                return;
            };
            cancelling.set(true);
            leptos::task::spawn_local(async move {
                if let Err(refused) = crate::form_dom::post(&form).await {
                    problem.set(Some(refused.message));
                    cancelling.set(false);
                }
            });
        }
    };
    view! {
        <li class="task-row" data-status=move || status().name()>
            <span class="task-name">
                {if batch {
                    Either::Left(view! { <a href=format!("/batches/{id}")>{label.clone()}</a> })
                } else {
                    Either::Right(label.clone())
                }}
            </span>
            <span class="task-status">{move || status().name()}</span>
            <span class="task-waiting">
                {move || match current().and_then(|t| t.batch) {
                    Some(counts) => Some(counts),
                    None => (status() == TaskStatus::Queued).then(|| quota.get().waiting()),
                }}
            </span>
            // A `<progress>`, not a styled div: a width set in a `style` attribute is an inline
            // style, which the pages' content security policy refuses.
            <progress
                class="bar"
                aria-label=format!("{label} progress")
                max="100"
                value=move || one_decimal(percent())
                aria-valuenow=move || one_decimal(percent())
            ></progress>
            <span class="task-percent">{move || format!("{}%", one_decimal(percent()))}</span>
            <span class="task-elapsed">{elapsed}</span>
            <form
                class="cancel-form"
                method="post"
                action=if batch { "/api/cancel-batch" } else { "/api/cancel" }
                on:submit=cancel
            >
                <input type="hidden" name="id" value=id.to_string() />
                <button
                    type="submit"
                    class="cancel"
                    aria-label=format!("Cancel {label}")
                    disabled=move || cancelling.get()
                >
                    {move || if cancelling.get() { "Cancelling…" } else { "Cancel" }}
                </button>
            </form>
            <span class="row-error" role="alert">{move || problem.get()}</span>
        </li>
    }
}
