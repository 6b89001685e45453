//! The dashboard listener's pages: `/individual-<name>` (one view filling its frame, no
//! navigation) and `/status` (an overview of the main views). Each page opens one stream.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use model::View;
use model::frame::DashboardFrame;
use model::stream::Connection;

use crate::views::{Frame, view_for};

/// The page's one dashboard stream, as a signal of the newest frame. A page showing a profile
/// asks the server to sample while it is open.
fn use_frame(profile: bool) -> (Frame, RwSignal<Connection>) {
    let frame = RwSignal::new(None::<DashboardFrame>);
    let connection = RwSignal::new(Connection::Connecting);
    #[cfg(feature = "hydrate")]
    {
        let follower = model::stream::follow(
            if profile {
                "/dashboard/stream?profile=true"
            } else {
                "/dashboard/stream"
            },
            move |state| connection.set(state),
            move |text| match serde_json::from_str::<DashboardFrame>(&text) {
                Ok(next) => frame.set(Some(next)),
                Err(error) => leptos::logging::warn!("unreadable dashboard frame: {error}"),
            },
        );
        let follower = send_wrapper::SendWrapper::new(follower);
        on_cleanup(move || drop(follower));
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = profile;
    (frame.into(), connection)
}

#[component]
fn StreamState(connection: RwSignal<Connection>) -> impl IntoView {
    let text = move || match connection.get() {
        Connection::Live => None,
        Connection::AsLoaded | Connection::Connecting => Some("Connecting…".to_owned()),
        Connection::Retrying(s) => Some(format!("Disconnected: retrying in {s}s")),
        Connection::Restarting => Some("The server is restarting: reconnecting…".to_owned()),
    };
    move || text().map(|text| view! { <p class="stream-state" role="status">{text}</p> })
}

/// `/individual-<name>`.
#[component]
pub fn IndividualPage() -> impl IntoView {
    let params = use_params_map();
    let path = params.read_untracked().get("view").unwrap_or_default();
    let Some(view) = View::from_path(&path) else {
        return view! { <NoSuchView /> }.into_any();
    };
    view! {
        <Title text=view.title() />
        <div class="individual" data-view=view.label()>
            <h1 class="view-title">{view.title()}</h1>
            <LiveView view />
        </div>
    }
    .into_any()
}

/// One view and its stream: the page's island, the only part of it the browser runs.
#[island]
fn LiveView(view: View) -> impl IntoView {
    let (frame, connection) = use_frame(matches!(view, View::Profile | View::ProfileServer));
    view! {
        <StreamState connection />
        {view_for(view, frame)}
    }
}

/// The views `/status` shows together, as Dask's status page does.
const STATUS_VIEWS: [View; 6] = [
    View::TaskStream,
    View::Progress,
    View::Cpu,
    View::Nprocessing,
    View::ClusterMemory,
    View::Workers,
];

/// `/status`.
#[component]
pub fn StatusPage() -> impl IntoView {
    view! {
        <Title text="Offload cluster status" />
        <StatusBody />
    }
}

/// The cluster in one line, as `/status` heads it.
fn status_line(f: &model::frame::DashboardFrame) -> String {
    let t = f.totals;
    // Lost tasks (no worker answered) are failures worth naming apart.
    let lost = if t.lost > 0 {
        format!(", {} lost", t.lost)
    } else {
        String::new()
    };
    format!(
        "{} ({}) · {} queued (room for {}) · {} running · {} done · {} failed{lost} · {} cancelled",
        model::count(f.workers.len() as u64, "worker", "workers"),
        f.backend.name(),
        t.queued,
        f.queue_capacity,
        t.running,
        t.finished,
        t.failed,
        t.cancelled
    )
}

/// Everything on `/status` follows the one stream: the whole body is the page's island.
#[island]
fn StatusBody() -> impl IntoView {
    let (frame, connection) = use_frame(false);
    let totals = move || frame.with(|f| f.as_ref().map(status_line));
    view! {
        <div class="status-page">
            <header class="status-head">
                <h1>"Cluster status"</h1>
                <p class="totals" role="status">{totals}</p>
                <StreamState connection />
            </header>
            <div class="status-grid">
                {STATUS_VIEWS
                    .into_iter()
                    .map(|view| view! {
                        <section class="status-cell" aria-label=view.title()>
                            <h2>
                                <a href=format!("/{}", view.path())>{view.title()}</a>
                            </h2>
                            {view_for(view, frame)}
                        </section>
                    })
                    .collect_view()}
            </div>
        </div>
    }
}

/// A path that is not one of the views: a real 404.
#[component]
pub fn NoSuchView() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! { <p class="not-found">"No such dashboard view."</p> }
}

#[cfg(test)]
mod tests {
    use model::frame::DashboardFrame;
    use model::{Backend, Totals};

    #[test]
    fn the_status_line_names_lost_tasks_and_agrees_with_its_counts() {
        let mut frame = DashboardFrame {
            backend: Backend::Nats,
            queue_capacity: 10,
            totals: Totals {
                finished: 5,
                failed: 2,
                lost: 1,
                ..Totals::default()
            },
            ..DashboardFrame::default()
        };
        assert_eq!(
            super::status_line(&frame),
            "0 workers (nats) · 0 queued (room for 10) · 0 running · 5 done · 2 failed, 1 lost · 0 cancelled"
        );
        frame.totals.lost = 0;
        frame.workers = vec![model::frame::WorkerRow {
            id: 0,
            process: None,
            state: model::WorkerState::Idle,
            current: None,
            tasks_done: 0,
            busy_percent: 0.0,
            processing: 0,
            cpu_percent: 0.0,
            memory_bytes: 0,
        }];
        assert!(super::status_line(&frame).starts_with("1 worker (nats)"));
        assert!(super::status_line(&frame).contains("2 failed · "));
    }
}
