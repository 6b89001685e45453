//! The history page (`/history`): every task of the caller's, newest first (a batch as one
//! row, its members listed by `?batch=ID` or found by a filter), with filters by type and outcome, a text search over input and summary, and pages that stay put while new
//! tasks arrive (the cursor is the last id shown). Rendered on the server: its filters are a
//! GET form and its pages links, so it works without JavaScript. Once hydrated, the first page
//! is live: a small island follows the session's live stream and offers the tasks submitted
//! or ended since the page was loaded.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::load_history;
use crate::pages::task_detail::utc;
use model::page::{HistoryPage, HistoryQuery, OUTCOME_FILTERS};

#[component]
pub fn History() -> impl IntoView {
    let query = use_query_map();
    let page = Resource::new(
        move || {
            query.with(|q| HistoryQuery {
                kind: q.get("type").filter(|t| !t.is_empty()),
                outcome: q.get("outcome").filter(|o| !o.is_empty()),
                text: q.get("q").filter(|t| !t.is_empty()),
                before: q.get("before"),
                batch: q.get("batch").filter(|b| !b.is_empty()),
            })
        },
        load_history,
    );
    view! {
        <Title text="History · Offload" />
        <section class="history">
            <h1>"History"</h1>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(page) => view! { <Results page /> }.into_any(),
                        Err(error) => {
                            #[cfg(feature = "ssr")]
                            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                                response.set_status(axum::http::StatusCode::BAD_REQUEST);
                            }
                            view! {
                                <p class="input-error" role="alert">{error.to_string()}</p>
                                <p><a href="/history">"All your tasks"</a></p>
                            }
                            .into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn Results(page: HistoryPage) -> impl IntoView {
    let HistoryPage {
        query,
        types,
        rows,
        older,
        newest,
    } = page;
    // A type this server no longer runs, asked for by a link or an older page: still a choice.
    let retired = query
        .kind
        .clone()
        .filter(|kind| !types.iter().any(|(name, _)| name == kind))
        .map(|kind| {
            let label = format!("{kind} (no longer run here)");
            view! { <option value=kind selected=true>{label}</option> }
        });
    let type_options = types
        .into_iter()
        .map(|(name, title)| {
            let selected = query.kind.as_deref() == Some(name.as_str());
            view! { <option value=name selected=selected>{title}</option> }
        })
        .collect_view();
    let outcome_options = OUTCOME_FILTERS
        .iter()
        .map(|(value, label)| {
            let selected = query.outcome.as_deref() == Some(*value);
            view! { <option value=*value selected=selected>{*label}</option> }
        })
        .collect_view();
    let empty = rows.is_empty();
    let batch = query.batch.clone().map(|batch| {
        view! {
            <p class="history-batch">
                {format!("Members of batch {batch} · ")}
                <a href=format!("/batches/{batch}")>"its page"</a>
                " · "
                <a href="/history">"all your tasks"</a>
            </p>
        }
    });
    // Only the first page shows what is newer than it.
    let newest = query.before.is_none().then_some(newest);
    let rows = rows
        .into_iter()
        .map(|row| {
            let submitted = view! {
                <td><time data-ms=row.submitted_at_ms.to_string()>{utc(row.submitted_at_ms)}</time></td>
            };
            // A batch is one row, with its counts, linking to its page.
            if let Some(batch) = row.batch {
                let state = batch.state.clone();
                return view! {
                    <tr class="history-batch-row" data-state=state>
                        <td><a href=format!("/batches/{}", batch.id)>{batch.title}</a></td>
                        <td>{batch.state}</td>
                        <td>{batch.counts}</td>
                        {submitted}
                    </tr>
                }
                .into_any();
            }
            let outcome = row.outcome.map_or("not finished", |o| o.name());
            view! {
                <tr data-outcome=outcome>
                    <td><a href=format!("/tasks/{}", row.id)>{row.call}</a></td>
                    <td>{outcome}</td>
                    <td class="mono">{row.summary}</td>
                    {submitted}
                </tr>
            }
            .into_any()
        })
        .collect_view();
    view! {
        {batch}
        <form class="history-filters" method="get" action="/history" role="search" aria-label="Filter your tasks">
            <label>"Type " <select name="type"><option value="">"All types"</option>{type_options}{retired}</select></label>
            <label>"Outcome " <select name="outcome"><option value="">"Any outcome"</option>{outcome_options}</select></label>
            <label>"Search " <input type="search" name="q" value=query.text.clone().unwrap_or_default() placeholder="input or result" maxlength="200" /></label>
            {query.batch.clone().map(|batch| view! { <input type="hidden" name="batch" value=batch /> })}
            <button type="submit" class="primary">"Filter"</button>
        </form>
        {if empty {
            view! { <p>"No task matches."</p> }.into_any()
        } else {
            view! {
                <table class="history-table" aria-label="Your tasks">
                    <thead><tr><th scope="col">"Task"</th><th scope="col">"Outcome"</th><th scope="col">"Result"</th><th scope="col">"Submitted"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            }.into_any()
        }}
        {older.map(|href| view! { <p><a href=href rel="next">"Older tasks"</a></p> })}
        {newest.map(|newest| view! { <NewerTasks newest /> })}
    }
}

/// How many of the session's tasks are newer than the newest when the page was made
/// (`newest`), live once hydrated, with a link that shows them.
#[island]
fn NewerTasks(newest: u64) -> impl IntoView {
    let store = crate::live::LiveStore::new(Vec::new(), Vec::new());
    #[cfg(feature = "hydrate")]
    crate::live::connect(store);
    let newer = move || {
        let queued = store
            .tasks
            .with(|tasks| tasks.iter().filter(|t| t.id > newest).count());
        let ended = store
            .lines
            .with(|lines| lines.iter().filter(|l| l.task > newest).count());
        queued + ended
    };
    view! {
        <p class="history-newer" aria-live="polite">
            {move || {
                let n = newer();
                (n > 0)
                    .then(|| {
                        view! {
                            <a href="">
                                {format!(
                                    "{} since this page was loaded: show",
                                    model::count(n as u64, "newer task", "newer tasks"),
                                )}
                            </a>
                        }
                    })
            }}
        </p>
    }
}
