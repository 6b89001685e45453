//! A batch's page (`/batches/{id}`): its progress and counts, one row per member with the
//! input's fields and the output's scalar fields as columns (sorted by any column, filtered by
//! outcome, 100 to a page), pictures as thumbnails, a plot drawn on the server, downloads as
//! CSV and JSON, and Cancel. Rendered on the server only: links, a GET form and a plain POST
//! form, so it works without JavaScript; while the batch runs, the page reloads itself every
//! two seconds.

use leptos::prelude::*;
use leptos_meta::{Meta, Title};
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::load_batch;
use model::page::{BatchQuery, BatchView, OUTCOME_FILTERS, secs};

#[component]
pub fn BatchPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let batch = Resource::new(
        move || {
            let id = params.with(|p| p.get("id").and_then(|id| id.parse::<u64>().ok()));
            let query = query.with(|q| BatchQuery {
                sort: q.get("sort"),
                order: q.get("order"),
                outcome: q.get("outcome"),
                page: q.get("page"),
            });
            (id, query)
        },
        |(id, query)| async move {
            match id {
                Some(id) => load_batch(id, query).await.map_err(|e| e.to_string()),
                None => Err("a batch's address is /batches/ and its number".to_owned()),
            }
        },
    );
    view! {
        <section class="batch">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match batch.await {
                        Ok(view) => view! { <Batch view /> }.into_any(),
                        Err(error) => {
                            #[cfg(feature = "ssr")]
                            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                                let status = if error.contains("not one of yours") || error.contains("address") {
                                    axum::http::StatusCode::NOT_FOUND
                                } else {
                                    axum::http::StatusCode::BAD_REQUEST
                                };
                                response.set_status(status);
                            }
                            view! {
                                <Title text="Batch not found · Offload" />
                                <h1>"Batch not shown"</h1>
                                <p class="input-error" role="alert">{error}</p>
                                <p><a href="/">"Back to the tasks"</a></p>
                            }
                            .into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

/// The page's own address with some of its query changed.
fn href(id: u64, query: &BatchQuery) -> String {
    let pairs = [
        ("sort", &query.sort),
        ("order", &query.order),
        ("outcome", &query.outcome),
        ("page", &query.page),
    ];
    let encoded: Vec<String> = pairs
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={}", encode(v))))
        .collect();
    format!("/batches/{id}?{}", encoded.join("&"))
}

/// Column names and outcomes are letters, digits, `_`, `-` and `.`; anything else is encoded.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[component]
fn Batch(view: BatchView) -> impl IntoView {
    let BatchView {
        id,
        task,
        title,
        state,
        members,
        counts,
        progress,
        elapsed_ms,
        remaining_ms,
        columns,
        query,
        rows,
        shown,
        page,
        pages,
        plot,
        pictures,
        editable,
    } = view;
    let running = state == "running";
    let percent = (progress * 100.0).floor();
    let counts = counts
        .into_iter()
        .map(|(label, n)| view! { <li data-count=label.clone()>{format!("{n} {label}")}</li> })
        .collect_view();
    let times = format!(
        "{state} · {} s{}",
        secs(elapsed_ms as f64),
        remaining_ms
            .map(|ms| format!(" · about {} s left", secs(ms as f64)))
            .unwrap_or_default()
    );
    let sorted = query.sort.clone().unwrap_or_default();
    let descending = query.order.as_deref() == Some("desc");
    let headers = columns
        .iter()
        .map(|column| {
            let this = *column == sorted;
            let target = BatchQuery {
                sort: Some(column.clone()),
                order: Some(if this && !descending { "desc" } else { "asc" }.to_owned()),
                page: None,
                ..query.clone()
            };
            let aria = if !this {
                "none"
            } else if descending {
                "descending"
            } else {
                "ascending"
            };
            // Out of the link's name: the header says how it is sorted.
            let arrow = this.then(|| {
                view! { <span aria-hidden="true">{if descending { " ▼" } else { " ▲" }}</span> }
            });
            view! {
                <th scope="col" aria-sort=aria>
                    <a href=href(id, &target)>{column.clone()}{arrow}</a>
                </th>
            }
        })
        .collect_view();
    let thumbnails = pictures.then(|| {
        rows.iter()
            .filter(|row| row.picture)
            .map(|row| {
                let task = row.task;
                view! {
                    <li>
                        <a href=format!("/tasks/{task}")>
                            <img src=format!("/tasks/{task}/output") alt=format!("Task {task}'s picture") loading="lazy" />
                        </a>
                    </li>
                }
            })
            .collect_view()
    });
    let reused_column = columns.iter().position(|c| c == "reused_from");
    let body = rows
        .into_iter()
        .map(|row| {
            let task = row.task;
            let outcome = row.cells.get(2).cloned().unwrap_or_default();
            let cells = row
                .cells
                .into_iter()
                .enumerate()
                .map(|(i, cell)| match i {
                    1 => {
                        view! { <td><a href=format!("/tasks/{task}")>{format!("#{cell}")}</a></td> }
                            .into_any()
                    }
                    i if Some(i) == reused_column && !cell.is_empty() => view! {
                        <td><a href=format!("/tasks/{cell}")>{format!("from #{cell}")}</a></td>
                    }
                    .into_any(),
                    _ => view! { <td>{cell}</td> }.into_any(),
                })
                .collect_view();
            view! { <tr data-outcome=outcome>{cells}</tr> }
        })
        .collect_view();
    let outcome_options = OUTCOME_FILTERS
        .iter()
        .map(|(value, label)| {
            let selected = query.outcome.as_deref() == Some(*value);
            view! { <option value=*value selected=selected>{*label}</option> }
        })
        .collect_view();
    let to_page = |page: u64| {
        href(
            id,
            &BatchQuery {
                page: Some(page.to_string()),
                ..query.clone()
            },
        )
    };
    let previous =
        (page > 1).then(|| view! { <a href=to_page(page - 1) rel="prev">"Previous"</a> });
    let next = (page < pages).then(|| view! { <a href=to_page(page + 1) rel="next">"Next"</a> });
    view! {
        <Title text=format!("Batch {id} · Offload") />
        {running.then(|| view! { <Meta http_equiv="refresh" content="2" /> })}
        <h1>{format!("Batch {id}: {title} × {members}")}</h1>
        <p class="batch-times" data-state=state.clone()>{times}</p>
        <p class="batch-progress">
            <progress max="1" value=progress.to_string() aria-label="Batch progress">{format!("{percent}%")}</progress>
            " " <span>{format!("{percent}%")}</span>
        </p>
        <ul class="batch-counts" aria-label="Members">{counts}</ul>
        <p class="batch-actions">
            <a href=format!("/api/v1/batches/{id}/results.csv") download=format!("batch-{id}.csv")>"Download CSV"</a>
            " · "
            <a href=format!("/api/v1/batches/{id}/results.json") download=format!("batch-{id}.json")>"Download JSON"</a>
            " · "
            <a href=format!("/history?batch={id}")>"Its members in the history"</a>
            " · "
            {if editable {
                view! { <a href=format!("/?task={task}&sweep={id}")>"Edit and submit again"</a> }
                    .into_any()
            } else {
                view! { <a href=format!("/?task={task}")>"New batch of this type"</a> }.into_any()
            }}
        </p>
        {running.then(|| view! {
            <form method="post" action="/api/cancel-batch" class="batch-cancel">
                <input type="hidden" name="id" value=id.to_string() />
                <button type="submit">"Cancel the batch"</button>
            </form>
        })}
        {plot.map(|svg| view! { <figure class="batch-plot" inner_html=svg></figure> })}
        {thumbnails.map(|items| view! { <ul class="thumbnails" aria-label="Pictures">{items}</ul> })}
        <form class="batch-filters" method="get" action=format!("/batches/{id}") aria-label="Filter the members">
            <input type="hidden" name="sort" value=query.sort.clone().unwrap_or_default() />
            <input type="hidden" name="order" value=query.order.clone().unwrap_or_default() />
            <label>"Outcome " <select name="outcome"><option value="">"Any outcome"</option>{outcome_options}</select></label>
            <button type="submit">"Filter"</button>
        </form>
        <table class="batch-table" aria-label="Members of the batch">
            <thead><tr>{headers}</tr></thead>
            <tbody>{body}</tbody>
        </table>
        <p class="batch-pages">
            {previous} " " {format!("Page {page} of {pages} · {shown} shown")} " " {next}
        </p>
    }
}
