//! The viewer page (`/dashboard`): the seed's `DaskViewer`. A select of the dashboard's views,
//! an iframe showing the chosen one, a link to the whole dashboard. The choice lives in the URL
//! (`?view=cpu`) so a view can be linked. Nothing a user types reaches the page as markup: the
//! dashboard URL is checked at start-up and a view must be one from the list.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use model::View;

use crate::api::{ViewerConfig, dashboard_views};

#[component]
pub fn DashboardViewer() -> impl IntoView {
    let config = Resource::new(|| (), |_| dashboard_views());
    let requested = use_query_map().read_untracked().get("view");
    view! {
        <leptos_meta::Title text="Dashboard · Offload" />
        <section class="viewer">
            <h1>"Cluster dashboard"</h1>
            <Suspense fallback=|| view! { <p role="status">"Loading the dashboard's views…"</p> }>
                {move || {
                    let requested = requested.clone();
                    Suspend::new(async move {
                        match config.await {
                            Ok(config) => view! { <Viewer config requested /> }.into_any(),
                            Err(e) => view! {
                                <p class="input-error" role="alert">
                                    {format!("The dashboard is unavailable: {e}")}
                                </p>
                            }
                            .into_any(),
                        }
                    })
                }}
            </Suspense>
        </section>
    }
}

/// The view to show (the one asked for, or the default) and, for a view the dashboard does
/// not have, why another is shown.
fn choose(views: &[(String, String)], requested: Option<String>) -> (String, Option<String>) {
    let default = views
        .iter()
        .find(|(_, path)| *path == View::DEFAULT.path())
        .or_else(|| views.first())
        .map(|(label, _)| label.clone())
        .unwrap_or_default();
    match requested {
        None => (default, None),
        Some(wanted) if views.iter().any(|(label, _)| *label == wanted) => (wanted, None),
        Some(wanted) => {
            let refusal =
                format!("\"{wanted}\" is not one of the dashboard's views; showing {default}.");
            (default, Some(refusal))
        }
    }
}

#[component]
fn Viewer(config: ViewerConfig, requested: Option<String>) -> impl IntoView {
    let (chosen, refusal) = choose(&config.views, requested);
    let source = if config.from_dashboard {
        "the dashboard's own list"
    } else {
        "Offload's built-in list"
    };
    let count = config.views.len();
    let labels = config.views.into_iter().map(|(label, _)| label).collect();
    view! {
        // The picker's form for a browser that runs no script: the select names it, and its
        // button exists only then. It stays outside the island, whose hydration would not
        // find a `<noscript>`'s children where scripts run.
        <form id=PICKER_FORM method="get" action="/dashboard">
            <noscript>
                <button type="submit" class="primary">"Show"</button>
            </noscript>
        </form>
        <ViewPicker base=config.base_url labels chosen refusal />
        <p class="viewer-link">
            <a href=config.status_url target="_blank" rel="noopener">"Cluster dashboard"</a>
            <span class="muted">{format!(" · {count} views from {source}")}</span>
        </p>
        <p class="muted" aria-label="Task database">{format!("Task database: {}", config.database)}</p>
    }
}

/// The `id` of the picker's form (`/dashboard?view=…`), which works without JavaScript.
const PICKER_FORM: &str = "view-picker";

/// The select and the iframe: the page's island, so choosing a view needs no page load. The
/// choice is kept in the URL (`?view=`) without leaving the page. A view's page is
/// `individual-<label>` on every dashboard (see `parse_plots`). The select is never set from
/// the island's state: what it holds is the person's, so a view chosen before the WASM had
/// loaded is still there at hydration, and shown then.
#[island]
fn ViewPicker(
    base: String,
    labels: Vec<String>,
    chosen: String,
    refusal: Option<String>,
) -> impl IntoView {
    let label = RwSignal::new(chosen.clone());
    let refusal = RwSignal::new(refusal);
    let show = move |chosen: String| {
        #[cfg(feature = "hydrate")]
        replace_url(&format!("/dashboard?view={chosen}"));
        refusal.set(None);
        label.set(chosen);
    };
    let select = NodeRef::<leptos::html::Select>::new();
    // Runs once hydrated (effects never run on the server): a choice made before is applied.
    Effect::new(move || {
        if let Some(select) = select.get() {
            let held = select.value();
            if held != label.get_untracked() {
                show(held);
            }
        }
    });
    view! {
        <p class="input-error" role="alert">{move || refusal.get()}</p>
        <div class="viewer-body">
            <iframe
                class="viewer-frame"
                title="Dashboard view"
                src=move || format!("{base}individual-{}", label.get())
            ></iframe>
            <label class="viewer-select">
                <span class="field-label">"View"</span>
                <select
                    name="view"
                    form=PICKER_FORM
                    size="25"
                    node_ref=select
                    on:change=move |ev| show(event_target_value(&ev))
                >
                    {labels
                        .into_iter()
                        .map(|l| {
                            let selected = l == chosen;
                            let text = l.clone();
                            view! { <option value=l selected=selected>{text}</option> }
                        })
                        .collect_view()}
                </select>
            </label>
        </div>
    }
}

/// Puts `url` in the address bar without a navigation, so the chosen view can be linked.
#[cfg(feature = "hydrate")]
fn replace_url(url: &str) {
    if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(url));
    }
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn the_default_view_the_asked_one_or_the_default_with_a_reason() {
        let views: Vec<(String, String)> = ["cpu", "workers"]
            .map(|l| (l.to_owned(), format!("individual-{l}")))
            .into();
        assert_eq!(choose(&views, None), ("cpu".to_owned(), None));
        assert_eq!(
            choose(&views, Some("workers".into())),
            ("workers".to_owned(), None)
        );
        let (shown, refusal) = choose(&views, Some("nope".into()));
        assert_eq!(shown, "cpu");
        assert_eq!(
            refusal.unwrap(),
            "\"nope\" is not one of the dashboard's views; showing cpu."
        );
    }
}
