//! Server-only parts of the app: the state server functions share, the per-browser session
//! store, the live update stream and the request guards. None of it runs CPU work: that is
//! the cluster's, reached only through [`cluster::Client`].

pub mod dashboard;
pub mod guard;
pub mod profiler;
pub mod sessions;
pub mod state;
pub mod stream;

pub use dashboard::DashboardFeed;
pub use guard::{SessionId, refuse_cross_site, session_cookie};
pub use sessions::{SessionConfig, Sessions};
pub use state::AppState;
