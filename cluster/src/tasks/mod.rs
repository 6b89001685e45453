//! The tasks Offload ships, one per file.

mod fibonacci;

pub use fibonacci::Fibonacci;
