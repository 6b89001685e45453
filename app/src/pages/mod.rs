//! One module per route.

pub mod batch;
pub mod dashboard;
pub mod history;
pub mod not_found;
pub mod task_detail;
pub mod tasks;
