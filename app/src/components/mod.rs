//! Reusable pieces of the pages, named as the user sees them.

mod footer;
mod results_terminal;
mod task_queue;

pub use footer::Footer;
pub use results_terminal::ResultsTerminal;
pub use task_queue::TaskQueue;
