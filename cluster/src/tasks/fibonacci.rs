//! `fibonacci(n)` by the seed's naive recursion: the stand-in for heavy CPU work.
//!
//! The recursion stays naive (every one of its 2·F(n+1)−1 calls really happens), but only the
//! top of the call tree is instrumented: subtrees of `n <= PLAIN_BELOW` run as bare recursion and
//! their exact call count is added from a table afterwards. So progress is exact, cancellation is
//! noticed every few tens of microseconds, and the hot path pays nothing for either.

use crate::{Task, TaskContext, TaskError};

/// The seed's `fibonacci` task.
pub struct Fibonacci;

impl Fibonacci {
    /// Largest n accepted: F(94) no longer fits in the `u64` result, and long before that the
    /// naive recursion's running time (×1.618 with every +1) puts the answer out of reach.
    pub const MAX_N: i64 = model::fibonacci::MAX_N;
}

/// Calls of the naive recursion a worker is assumed to make per second, for admission's
/// estimate: a third of the 1.2 billion measured on this project's 2-core CI machine (release
/// build), so that a slower machine still gets an estimate on the long side.
const CALLS_PER_SECOND: f64 = 4.0e8;

/// Subtrees this small run uninstrumented (F(21)·2−1 = 21,891 calls, some tens of µs).
const PLAIN_BELOW: u32 = 20;

impl Task for Fibonacci {
    const NAME: &'static str = "fibonacci";
    type Input = i64;
    type Output = u64;

    /// The page's own check, with its words.
    fn validate(n: &i64) -> Result<(), String> {
        model::fibonacci::validate_n(*n)
    }

    /// Exact in calls (2·F(n+1)−1), converted at [`CALLS_PER_SECOND`].
    fn expected_duration(n: &i64) -> Option<std::time::Duration> {
        let n = u32::try_from(*n).ok()?;
        Some(std::time::Duration::from_secs_f64(
            calls(n) as f64 / CALLS_PER_SECOND,
        ))
    }

    fn run(n: i64, ctx: &TaskContext<'_>) -> Result<u64, TaskError> {
        let n = u32::try_from(n).map_err(|_| TaskError::InvalidInput(format!("n = {n}")))?;
        let mut walk = Walk {
            ctx,
            done: 0,
            total: calls(n),
            cancelled: false,
        };
        let value = walk.fib(n);
        if walk.cancelled {
            return Err(TaskError::Cancelled);
        }
        ctx.report_progress(1.0);
        Ok(value)
    }
}

/// The seed's `_fib`, untouched.
fn naive(n: u32) -> u64 {
    if n < 2 {
        n as u64
    } else {
        naive(n - 1) + naive(n - 2)
    }
}

/// Calls `naive(n)` makes: 2·F(n+1) − 1 (u128: for n = 92 it exceeds u64).
fn calls(n: u32) -> u128 {
    let (mut a, mut b) = (0u128, 1u128);
    for _ in 0..=n {
        (a, b) = (b, a + b);
    }
    2 * a - 1
}

struct Walk<'a, 'c> {
    ctx: &'a TaskContext<'c>,
    done: u128,
    total: u128,
    cancelled: bool,
}

impl Walk<'_, '_> {
    fn fib(&mut self, n: u32) -> u64 {
        if self.cancelled {
            return 0;
        }
        if n <= PLAIN_BELOW {
            let value = naive(n);
            self.done += calls(n);
            self.checkpoint();
            return value;
        }
        self.done += 1;
        let a = self.fib(n - 1);
        let b = self.fib(n - 2);
        // Wrapping only matters after a cancellation, when the partial sums are discarded.
        a.wrapping_add(b)
    }

    fn checkpoint(&mut self) {
        if self.ctx.is_cancelled() {
            self.cancelled = true;
        } else {
            self.ctx
                .report_progress(self.done as f64 / self.total as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    fn iterative(n: u32) -> u128 {
        let (mut a, mut b) = (0u128, 1u128);
        for _ in 0..n {
            (a, b) = (b, a + b);
        }
        a
    }

    #[test]
    fn call_counts_match_the_recursion() {
        fn count(n: u32) -> u128 {
            if n < 2 {
                1
            } else {
                1 + count(n - 1) + count(n - 2)
            }
        }
        for n in 0..=25 {
            assert_eq!(calls(n), count(n), "n = {n}");
        }
    }

    #[test]
    fn the_bound_is_where_u64_ends() {
        assert!(iterative(Fibonacci::MAX_N as u32) <= u64::MAX as u128);
        assert!(iterative(Fibonacci::MAX_N as u32 + 1) > u64::MAX as u128);
        assert!(
            calls(Fibonacci::MAX_N as u32) > u64::MAX as u128,
            "why totals are u128"
        );
    }

    #[test]
    fn expected_durations_grow_with_the_call_count() {
        let secs = |n| Fibonacci::expected_duration(&n).unwrap().as_secs_f64();
        assert!(secs(30) < 0.01, "fibonacci(30) is short work");
        assert!(secs(40) < 1.0, "fibonacci(40) still fits the short lane");
        assert!(secs(45) > 1.0 && secs(93) > 1e9, "long work is long");
        assert_eq!(Fibonacci::expected_duration(&-1), None);
    }

    #[test]
    fn validation_explains_the_bound() {
        assert!(Fibonacci::validate(&0).is_ok());
        assert!(Fibonacci::validate(&93).is_ok());
        let err = Fibonacci::validate(&94).unwrap_err();
        assert!(err.contains("at most 93") && err.contains("1.6×"), "{err}");
        assert!(Fibonacci::validate(&-1).unwrap_err().contains("0 or more"));
    }

    #[test]
    fn instrumented_walk_is_exact_and_counts_every_call() {
        let flag = AtomicBool::new(false);
        let seen = Mutex::new(Vec::new());
        let publish = |f: f64| seen.lock().unwrap().push(f);
        for n in 0..=30u32 {
            let ctx = TaskContext::new(&flag, &publish);
            let mut walk = Walk {
                ctx: &ctx,
                done: 0,
                total: calls(n),
                cancelled: false,
            };
            assert_eq!(walk.fib(n) as u128, iterative(n), "n = {n}");
            assert_eq!(walk.done, walk.total, "n = {n}");
        }
    }
}
