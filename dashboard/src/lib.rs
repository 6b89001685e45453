//! Offload's cluster dashboard, as Dask's: the seed's 27 individual views (same paths), the
//! `/status` overview, the frame they all draw from, and the ops endpoints. It has its own
//! router and its own WASM bundle (`dashboard.js`, `dashboard.wasm`), so the task page never
//! downloads its charts, and it is served only on the dashboard listener — by the app server
//! with embedded workers, or by `offload cluster`.
//!
//! Each view is a small component ([`views`]) over the shared [`model::frame::DashboardFrame`]
//! and the chart helpers in [`charts`]; the server side ([`ssr`]) samples the cluster once a
//! second into that frame.

pub mod charts;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod views;

use leptos::prelude::*;
use leptos_meta::{Stylesheet, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{ParamSegment, StaticSegment};

use crate::pages::{IndividualPage, NoSuchView, StatusPage};

/// The name of the dashboard's bundle (`dashboard.js`, `dashboard.wasm`).
pub const BUNDLE: &str = "dashboard";

/// The dashboard listener's own site root, beside the app's: `target/site` →
/// `target/site-dashboard`. `cargo leptos serve` and `watch` empty the app's site root and
/// refill it with the app's bundle alone, so the dashboard's bundle (and its copy of the
/// stylesheet) must live elsewhere.
pub fn site_root(app_site_root: &str) -> String {
    format!("{}-dashboard", app_site_root.trim_end_matches('/'))
}

/// The dashboard's pages: no navigation chrome, they fill their frame.
#[component]
pub fn Dashboard() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/offload.css" />
        <Router>
            <Routes fallback=NoSuchView>
                <Route path=StaticSegment("status") view=StatusPage />
                <Route path=ParamSegment("view") view=IndividualPage />
            </Routes>
        </Router>
    }
}

/// The WASM entry point: attaches the page's islands (its live views) to the server-rendered
/// page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
