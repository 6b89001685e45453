//! Server-only parts of the app: the state server functions share, the per-browser sessions and
//! their durable store, each task's journey, the live update stream and the request guards.
//! None of it runs CPU work: that is the cluster's, reached only through [`cluster::Client`].

pub mod api;
pub mod batches;
pub mod commands;
pub mod guard;
pub mod history;
pub mod output;
pub mod request;
pub mod runner;
pub mod security;
pub mod sessions;
pub mod state;
pub mod status;
pub mod store;
pub mod stream;
pub mod viewer;
pub use store::tokens;

pub use guard::{
    AllowedHosts, CookiePolicy, SessionId, allowed_host, refuse_cross_site, session_cookie,
    url_host,
};
pub use security::{Policy, security_headers};
pub use sessions::{SessionConfig, Sessions};
pub use state::{AppState, Shutdown};
