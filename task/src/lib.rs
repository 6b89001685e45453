//! What a task author compiles against, and nothing more: a task type is a Rust type that
//! implements [`Task`] (its input and output derive `serde` and `schemars::JsonSchema`), runs
//! with a [`TaskContext`] (progress, cancellation), fails with a [`TaskError`], and may return a
//! picture or any bytes as a [`Binary`]. The [`Registry`] lists the types a process runs and
//! turns each input schema into the page's form and its checks ([`TaskType`]).
//!
//! No async runtime, no NATS client, no GPU probe: `cargo test -p tasks` compiles this crate,
//! `model` and the serde stack, not the cluster. With the `testing` feature, [`testing`] has a
//! recording context for a type's own tests. `docs/your-own-task.md` walks through a new type;
//! its example is compiled and run with this crate's doctests.

mod binary;
mod registry;
mod schema;
mod task;
#[cfg(feature = "testing")]
pub mod testing;

pub use binary::Binary;
pub use registry::{Registry, TaskType};
pub use schema::input_from_fields;
pub use task::{Task, TaskContext, TaskError};

/// The largest result a task may return by default, in bytes of JSON (4 MiB): a cluster fails a
/// larger one, saying so. Results are kept in memory, sent and stored.
pub const MAX_OUTPUT_BYTES: usize = 4 << 20;

// The guide's example type, compiled and its test run as a doctest, so that it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../docs/your-own-task.md")]
pub struct YourOwnTaskGuide;
