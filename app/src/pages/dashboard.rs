//! The viewer page (`/dashboard`): the seed's `DaskViewer`. A select of the dashboard's views,
//! an iframe showing the chosen one, a link to the whole dashboard. The choice lives in the URL
//! (`?view=cpu`) so a view can be linked. Nothing a user types reaches the page as markup: the
//! dashboard URL is checked at start-up and a view must be one from the list.

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use serde::{Deserialize, Serialize};

use crate::AppError;
use model::View;

/// What the viewer needs to know about the dashboard it shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewerConfig {
    /// The dashboard's `/status` page.
    pub status_url: String,
    /// Where `individual-*` paths are appended.
    pub base_url: String,
    /// (label, path), in the dashboard's order.
    pub views: Vec<(String, String)>,
    /// True when the list came from the dashboard's own `/individual-plots.json`.
    pub from_dashboard: bool,
}

#[server(endpoint = "dashboard-views")]
pub async fn dashboard_views() -> Result<ViewerConfig, AppError> {
    let state = crate::ssr::AppState::from_context()?;
    let url = &state.dashboard_url;
    let fetched = ssr::fetch_views(&url.base()).await;
    let from_dashboard = fetched.is_some();
    let views = fetched.unwrap_or_else(|| {
        View::ALL
            .iter()
            .map(|view| (view.label().to_owned(), view.path()))
            .collect()
    });
    Ok(ViewerConfig {
        status_url: url.status().to_owned(),
        base_url: url.base(),
        views,
        from_dashboard,
    })
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use std::time::Duration;

    /// The views a dashboard lists in `/individual-plots.json`, or None when it does not answer
    /// with such a list (then the viewer uses the built-in 27).
    pub async fn fetch_views(base: &str) -> Option<Vec<(String, String)>> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        let response = client
            .get(format!("{base}individual-plots.json"))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        parse_plots(&response.text().await.ok()?)
    }

    /// `{"Title": "/individual-name", ...}` → [(name, individual-name)], keeping only paths that
    /// are safe to append to the dashboard URL.
    pub fn parse_plots(json: &str) -> Option<Vec<(String, String)>> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).ok()?;
        let mut views: Vec<(String, String)> = map
            .values()
            .filter_map(|v| v.as_str())
            .filter_map(|p| p.strip_prefix('/'))
            .filter(|p| {
                p.starts_with("individual-")
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
            .map(|p| (p.trim_start_matches("individual-").to_owned(), p.to_owned()))
            .collect();
        views.sort();
        views.dedup();
        (!views.is_empty()).then_some(views)
    }

    #[cfg(test)]
    mod tests {
        use super::parse_plots;

        #[test]
        fn dask_lists_are_read_and_unsafe_paths_dropped() {
            let json = r#"{"Task Stream": "/individual-task-stream", "CPU": "/individual-cpu",
                "Cluster Map": "/statics/individual-cluster-map.html",
                "Evil": "/individual-x\"><script>", "Other": "javascript:alert(1)"}"#;
            assert_eq!(
                parse_plots(json).unwrap(),
                [
                    ("cpu".to_owned(), "individual-cpu".to_owned()),
                    (
                        "task-stream".to_owned(),
                        "individual-task-stream".to_owned()
                    )
                ]
            );
            assert_eq!(parse_plots("{}"), None);
            assert_eq!(parse_plots("not json"), None);
        }
    }
}

#[component]
pub fn DashboardViewer() -> impl IntoView {
    let config = Resource::new(|| (), |_| dashboard_views());
    view! {
        <section class="viewer">
            <h1>"Cluster dashboard"</h1>
            <Suspense fallback=|| view! { <p role="status">"Loading the dashboard's views…"</p> }>
                {move || Suspend::new(async move {
                    match config.await {
                        Ok(config) => view! { <Viewer config /> }.into_any(),
                        Err(e) => view! {
                            <p class="input-error" role="alert">{format!("The dashboard is unavailable: {e}")}</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn Viewer(config: ViewerConfig) -> impl IntoView {
    let query = use_query_map();
    let views = StoredValue::new(config.views.clone());
    let default_label = views.with_value(|v| {
        v.iter()
            .find(|(_, p)| *p == View::DEFAULT.path())
            .or_else(|| v.first())
            .map(|(l, _)| l.clone())
            .unwrap_or_default()
    });
    let requested = move || query.read().get("view");
    // (label, path) of the view to show, and a refusal when the URL asks for an unknown one.
    let chosen = Memo::new(move |_| {
        let wanted = requested().unwrap_or_else(|| default_label.clone());
        views.with_value(|v| match v.iter().find(|(l, _)| *l == wanted) {
            Some(found) => (found.clone(), None),
            None => {
                let fallback = v
                    .iter()
                    .find(|(l, _)| *l == default_label)
                    .cloned()
                    .unwrap_or_default();
                (
                    fallback,
                    Some(format!(
                        "{wanted:?} is not one of the dashboard's views; showing {}.",
                        default_label
                    )),
                )
            }
        })
    });
    let base = config.base_url.clone();
    let src = move || format!("{base}{}", chosen.get().0.1);
    let navigate = use_navigate();
    let on_change = move |ev: leptos::ev::Event| {
        let label = event_target_value(&ev);
        navigate(&format!("/dashboard?view={label}"), Default::default());
    };
    let source = if config.from_dashboard {
        "the dashboard's own list"
    } else {
        "Offload's built-in list"
    };
    view! {
        <p class="input-error" role="alert">{move || chosen.get().1}</p>
        <div class="viewer-body">
            <iframe class="viewer-frame" title="Dashboard view" src=src></iframe>
            <label class="viewer-select">
                <span class="field-label">"View"</span>
                <select size="25" on:change=on_change prop:value=move || chosen.get().0.0>
                    {views.with_value(|v| v.iter().map(|(label, _)| {
                        let label = label.clone();
                        view! { <option value=label.clone()>{label.clone()}</option> }
                    }).collect_view())}
                </select>
            </label>
        </div>
        <p class="viewer-link">
            <a href=config.status_url.clone() target="_blank" rel="noopener">"Cluster dashboard"</a>
            <span class="muted">{format!(" · {} views from {source}", config.views.len())}</span>
        </p>
    }
}
