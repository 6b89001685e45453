//! The routers of the three listeners `offload` can run, each with its guards, outermost last:
//! the app's (pages, server functions, the live stream, the JSON API), the cluster dashboard's,
//! and the ops endpoints alone (a NATS app server's or worker's `/metrics`).

use std::sync::Arc;

use app::ssr::status::error_status;
use app::ssr::{
    AllowedHosts, AppState, CookiePolicy, Policy, allowed_host, output, refuse_cross_site,
    security_headers, session_cookie, stream,
};
use app::{App, shell};
use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use dashboard::ssr::{DashboardState, OpsState, count_requests};
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower_http::compression::CompressionLayer;

/// The app's listener. Innermost first: the error statuses are read back before anything
/// compresses them; the host check comes before anything else runs, and even its refusals
/// carry the security headers.
pub fn app_router(
    state: &AppState,
    hosts: AllowedHosts,
    cookies: CookiePolicy,
    policy: Arc<Policy>,
) -> Router {
    let page = {
        let policy = policy.clone();
        move |options| shell(options, &policy)
    };
    Router::new()
        .leptos_routes(state, generate_route_list(App), {
            let options = state.leptos_options.clone();
            let page = page.clone();
            move || page(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(page))
        .route("/api/events", get(stream::events))
        .route("/tasks/{id}/output", get(output::task_output))
        .merge(app::ssr::api::router(state).0)
        .layer(from_fn(error_status))
        .layer(from_fn_with_state(hosts.clone(), refuse_cross_site))
        .layer(from_fn_with_state(cookies, session_cookie))
        .layer(CompressionLayer::new())
        .layer(from_fn(count_requests))
        .layer(from_fn_with_state(hosts, allowed_host))
        .layer(from_fn_with_state(policy, security_headers))
        .with_state(state.clone())
}

/// `/metrics`, `/health` and `/json/*.json` alone, behind the host check.
pub fn ops_router(ops: OpsState, hosts: AllowedHosts) -> Router {
    guarded_ops(dashboard::ssr::ops::routes(), ops, hosts)
}

/// `/health` alone, behind the host check.
pub fn health_router(ops: OpsState, hosts: AllowedHosts) -> Router {
    guarded_ops(dashboard::ssr::ops::health_route(), ops, hosts)
}

fn guarded_ops(routes: Router<OpsState>, ops: OpsState, hosts: AllowedHosts) -> Router {
    let policy = Arc::new(Policy::dashboard("'self'"));
    routes
        .with_state(ops)
        .layer(CompressionLayer::new())
        .layer(from_fn(count_requests))
        .layer(from_fn_with_state(hosts, allowed_host))
        .layer(from_fn_with_state(policy, security_headers))
}

/// The cluster dashboard's listener: its own routes, behind the same host check as the app's;
/// its pages may be framed by the pages of the allowed hosts (the viewer page) only.
pub fn dashboard_router(state: &DashboardState, hosts: AllowedHosts) -> Router {
    let policy = Arc::new(Policy::dashboard(&hosts.frame_ancestors()));
    let page = {
        let policy = policy.clone();
        move |options| app::document(options, &policy, dashboard::Dashboard)
    };
    dashboard::ssr::routes(state, page)
        .layer(CompressionLayer::new())
        .layer(from_fn(count_requests))
        .layer(from_fn_with_state(hosts, allowed_host))
        .layer(from_fn_with_state(policy, security_headers))
}
