//! "Results": a terminal-like log of finished tasks that follows the newest line.

use leptos::html::Div;
use leptos::prelude::*;

use crate::live::LiveStore;
use model::page::Outcome;

#[component]
pub fn ResultsTerminal(store: LiveStore) -> impl IntoView {
    let terminal = NodeRef::<Div>::new();
    Effect::new(move |_| {
        store.lines.track();
        if let Some(el) = terminal.get() {
            el.set_scroll_top(el.scroll_height());
        }
    });
    view! {
        <section class="results">
            <h2 id="results-heading">"Results"</h2>
            <div
                class="terminal"
                role="log"
                aria-live="polite"
                aria-labelledby="results-heading"
                node_ref=terminal
            >
                <For
                    each=move || store.lines.get().into_iter().enumerate()
                    key=|(i, line)| (*i, line.task)
                    let:((_, line))
                >
                    <div class=match line.outcome {
                        Outcome::Finished => "line finished",
                        Outcome::Failed => "line failed",
                        Outcome::Cancelled => "line cancelled",
                        Outcome::Lost => "line lost",
                    }>
                        // Each line opens its task's detail, or its batch's page.
                        <a href=line.href()>{line.text.clone()}</a>
                        {line.image.then(|| view! {
                            <a href=format!("/tasks/{}", line.task) tabindex="-1">
                                <img
                                    class="thumbnail"
                                    src=format!("/tasks/{}/output", line.task)
                                    alt=format!("The picture of task {}", line.task)
                                    loading="lazy"
                                />
                            </a>
                        })}
                    </div>
                </For>
            </div>
        </section>
    }
}
