//! One module per route.

pub mod not_found;
pub mod tasks;
