//! Offload's web app: pages, components and server functions, rendered on the server and
//! hydrated in the browser. Knows nothing of threads or of where workers run: it talks to the
//! cluster only through `cluster::Client`, and only on the server (`ssr` feature).

pub mod api;
pub mod components;
mod error;
#[cfg(feature = "hydrate")]
mod form_dom;
pub mod live;
mod nav;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;

pub use error::AppError;

use leptos::prelude::*;
#[cfg(feature = "ssr")]
use leptos_meta::MetaTags;
use leptos_meta::{Stylesheet, provide_meta_context};
use leptos_router::components::{A, Outlet, ParentRoute, Route, Router, Routes};
use leptos_router::{ParamSegment, SsrMode, StaticSegment};

use crate::components::Footer;
use crate::pages::batch::BatchPage;
use crate::pages::dashboard::DashboardViewer;
use crate::pages::history::History;
use crate::pages::not_found::NotFound;
use crate::pages::task_detail::TaskDetailPage;
use crate::pages::tasks::TaskPage;

/// The HTML document around the app, sent with the app listener's `policy`.
#[cfg(feature = "ssr")]
pub fn shell(options: LeptosOptions, policy: &ssr::Policy) -> impl IntoView + use<> {
    document(options, policy, App)
}

/// The site's HTML document around `body`: the app's pages here, and the dashboard's (the
/// binary hands this to the dashboard's routes), each with the bundle `options` name and its
/// listener's content security `policy` (its scripts carry the response's nonce).
#[cfg(feature = "ssr")]
pub fn document<V: IntoView + 'static, F: FnOnce() -> V>(
    options: LeptosOptions,
    policy: &ssr::Policy,
    body: F,
) -> impl IntoView + use<V, F> {
    policy.send_with_page();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                // No favicon request, so no 404 in the console.
                <link rel="icon" href="data:," />
                <AutoReload options=options.clone() />
                <HydrationScripts options islands=true />
                <MetaTags />
            </head>
            <body>{body()}</body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/offload.css" />
        <Router>
            <Routes fallback=NotFound>
                <ParentRoute path=StaticSegment("") view=AppLayout>
                    // Each rendered whole before it is sent: the pages must work without WASM
                    // (streamed out of order, what a page awaits needs a script to appear).
                    <Route path=StaticSegment("") view=TaskPage ssr=SsrMode::Async />
                    <Route
                        path=StaticSegment("dashboard")
                        view=DashboardViewer
                        ssr=SsrMode::Async
                    />
                    <Route path=StaticSegment("history") view=History ssr=SsrMode::Async />
                    <Route
                        path=(StaticSegment("batches"), ParamSegment("id"))
                        view=BatchPage
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("tasks"), ParamSegment("id"))
                        view=TaskDetailPage
                        ssr=SsrMode::Async
                    />
                </ParentRoute>
            </Routes>
        </Router>
    }
}

/// The app's pages: navigation bar, page, footer.
#[component]
fn AppLayout() -> impl IntoView {
    view! {
                <header class="topbar">
            <span class="brand">"Offload"</span>
            <nav aria-label="Main">
                <A href="/" exact=true>"Tasks"</A>
                <A href="/history">"History"</A>
                <A href="/dashboard">"Dashboard"</A>
            </nav>
        </header>
        <main>
            <Outlet />
        </main>
        <Footer />
    }
}

/// The WASM entry point: attaches the page's islands (its interactive parts) to the
/// server-rendered page; the rest of the page is plain HTML and costs the bundle nothing.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    nav::install();
    leptos::mount::hydrate_islands();
}
