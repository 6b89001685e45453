//! A task's detail page (`/tasks/{id}`): its input and output as JSON, its times and how it
//! ended, with "Run again". Rendered on the server only: it has no island, and "Run again" is a
//! plain form that lands on the task page of its type.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::load_task_detail;
use model::page::{Outcome, TaskDetail, secs};

#[component]
pub fn TaskDetailPage() -> impl IntoView {
    let params = use_params_map();
    let detail = Resource::new(
        move || params.with(|p| p.get("id").and_then(|id| id.parse::<u64>().ok())),
        |id| async move {
            match id {
                Some(id) => load_task_detail(id).await.map_err(|e| e.to_string()),
                None => Err("a task's address is /tasks/ and its number".to_owned()),
            }
        },
    );
    view! {
        <section class="task-detail">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match detail.await {
                        Ok(detail) => view! { <Detail detail /> }.into_any(),
                        Err(error) => {
                            #[cfg(feature = "ssr")]
                            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                                response.set_status(axum::http::StatusCode::NOT_FOUND);
                            }
                            view! {
                                <leptos_meta::Title text="Task not found · Offload" />
                                <h1>"Task not found"</h1>
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

#[component]
fn Detail(detail: TaskDetail) -> impl IntoView {
    let outcome = detail.outcome.map_or("not finished", Outcome::name);
    let took = detail.finished_at_ms.map(|done| {
        format!(
            "{} s",
            secs(done.saturating_sub(detail.submitted_at_ms) as f64)
        )
    });
    view! {
        <leptos_meta::Title text=format!("Task {} · Offload", detail.id) />
        <h1>{format!("Task {}: {}", detail.id, detail.call)}</h1>
        <p>
            <a href=format!("/?task={}", detail.task)>{format!("{} tasks", detail.title)}</a>
        </p>
        <dl class="facts">
            <dt>"Outcome"</dt>
            <dd data-outcome=outcome>{outcome}</dd>
            {detail.line.map(|line| view! { <dt>"Result"</dt><dd class="mono">{line}</dd> })}
            <dt>"Submitted"</dt>
            <dd>
                <time data-ms=detail.submitted_at_ms.to_string()>
                    {utc(detail.submitted_at_ms)}
                </time>
            </dd>
            {detail.started_at_ms.map(|ms| view! {
                <dt>"Started"</dt>
                <dd><time data-ms=ms.to_string()>{utc(ms)}</time></dd>
            })}
            {took.map(|took| view! { <dt>"Submit to end"</dt><dd>{took}</dd> })}
            {detail.worker.map(|worker| view! { <dt>"Worker"</dt><dd class="mono">{worker}</dd> })}
            {detail.attempts.map(|attempts| view! { <dt>"Attempts"</dt><dd>{attempts}</dd> })}
        </dl>
        <h2>"Input"</h2>
        <pre class="json" aria-label="Input">{detail.input}</pre>
        <h2>"Output"</h2>
        {detail.output_media.map(|media| {
            let href = format!("/tasks/{}/output", detail.id);
            if media.starts_with("image/") {
                view! {
                    <figure class="output-picture">
                        <img src=href.clone() alt=format!("The picture task {} made", detail.id) />
                        <figcaption><a href=href download>{format!("Download ({media})")}</a></figcaption>
                    </figure>
                }
                .into_any()
            } else {
                view! { <p><a href=href download>{format!("Download the output ({media})")}</a></p> }
                    .into_any()
            }
        })}
        {match detail.output {
            Some(output) => view! { <pre class="json" aria-label="Output">{output}</pre> }.into_any(),
            None => view! { <p>"No output: the task has not finished, or it ended without one."</p> }.into_any(),
        }}
        <form method="post" action="/api/run-again">
            <input type="hidden" name="id" value=detail.id.to_string() />
            <button type="submit" class="primary">"Run again"</button>
        </form>
        <h2>"As a command"</h2>
        <p>"The same task from a shell, with a token in OFFLOAD_TOKEN ("<code>"offload token create NAME"</code>" on the server's machine):"</p>
        <pre class="command" aria-label="Command line">{detail.command}</pre>
        <pre class="command" aria-label="curl">{detail.curl}</pre>
    }
}

/// `2026-11-30 04:03:10 UTC`, without a date crate: the days-to-civil conversion of
/// Howard Hinnant's `chrono`-compatible algorithm.
pub(crate) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_utc() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(1_796_011_389_917), "2026-11-30 04:03:09 UTC");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
