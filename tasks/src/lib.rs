//! The work Offload ships, one task type per file, and [`registry`]: the one list of them that
//! every process of a cluster (app servers and NATS workers) is built with.
//!
//! Adding a type is a file here and a line in [`registry`]; the page's picker and form, the
//! cluster, the workers, the database and the dashboard take it from there. See
//! `docs/your-own-task.md`.

mod fibonacci;
mod hash_chain;
mod mandelbrot;
mod primes;

pub use fibonacci::Fibonacci;
pub use hash_chain::HashChain;
pub use mandelbrot::Mandelbrot;
pub use primes::Primes;

use offload_task::{Registry, Task};

/// The task type of every task the first release recorded (it ran no other): a database it
/// wrote opens with its rows of this type. Fixed for good, whatever [`registry`]'s order: the
/// first registered type is only the page's default, and may change.
pub const FIRST_RELEASE: &str = Fibonacci::NAME;

/// Every task type this build runs; the first is the task page's default.
pub fn registry() -> Registry {
    Registry::empty()
        .register::<Fibonacci>()
        .register::<HashChain>()
        .register::<Primes>()
        .register::<Mandelbrot>()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_releases_rows_are_fibonacci_whatever_the_default() {
        assert_eq!(super::FIRST_RELEASE, "fibonacci");
        assert!(super::registry().get(super::FIRST_RELEASE).is_some());
    }

    #[test]
    fn every_type_registers_with_a_form_a_title_and_a_description() {
        let registry = super::registry();
        assert!(!registry.types().is_empty());
        for task in registry.types() {
            assert!(!task.fields().is_empty(), "{}", task.name());
            assert!(!task.title().is_empty() && task.description().len() > 40);
            assert!(
                task.name()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}: names go into URLs and subjects",
                task.name()
            );
        }
    }
}
