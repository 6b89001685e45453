//! What Offload's browser code, server and cluster share, written once: the rules and messages
//! of the task catalogue's inputs ([`fibonacci`]), task and worker states as enums with their
//! serde names ([`states`]), the dashboard's 27 views ([`views::View`]), and the wire types of
//! the task page's live stream ([`page`]) and of the dashboard's frame ([`frame`]).
//!
//! It builds for wasm32 and native and depends on serde alone, so that the browser's bundle
//! pays for nothing here but what it uses. Its `browser` feature adds the one piece of browser
//! code both bundles share: [`stream::follow`], the reconnecting event-stream follower.

pub mod fibonacci;
pub mod frame;
pub mod page;
pub mod states;
pub mod stream;
pub mod views;

pub use states::{Backend, TaskState, Totals, WorkerState};
pub use views::View;
