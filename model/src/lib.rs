//! What Offload's browser code, server and cluster share, written once: task types' forms,
//! their fields' rules and messages ([`form`]), task and worker states as enums with their
//! serde names ([`states`]), the dashboard's 27 views ([`views::View`]), and the wire types of
//! the task page's live stream ([`page`]) and of the dashboard's frame ([`frame`]).
//!
//! It builds for wasm32 and native and depends on serde alone, so that the browser's bundle
//! pays for nothing here but what it uses. Its `browser` feature adds the one piece of browser
//! code both bundles share: [`stream::follow`], the reconnecting event-stream follower.

pub mod batch;
pub mod form;
pub mod frame;
pub mod page;
pub mod states;
pub mod stream;
pub mod views;

pub use states::{Backend, TaskState, Totals, WorkerState};
pub use views::View;

/// `n` and the noun that agrees with it: "1 task", "0 tasks", "3 tasks".
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(super::count(1u64, "task", "tasks"), "1 task");
        assert_eq!(super::count(0u64, "task", "tasks"), "0 tasks");
        assert_eq!(super::count(27u32, "worker", "workers"), "27 workers");
    }
}
