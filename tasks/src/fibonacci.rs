//! `fibonacci(n)` by the seed's naive recursion: the stand-in for heavy CPU work.
//!
//! The recursion stays naive (every one of its 2·F(n+1)−1 calls really happens), but only the
//! top of the call tree is instrumented: subtrees of `n <= PLAIN_BELOW` run as bare recursion and
//! their exact call count is added from a table afterwards. So progress is exact, cancellation is
//! noticed every few tens of microseconds, and the hot path pays nothing for either.

use offload_task::{Task, TaskContext, TaskError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The seed's `fibonacci` task.
pub struct Fibonacci;

/// Largest n accepted: F(94) no longer fits in the `u64` result, and long before that the
/// naive recursion's running time (×1.618 with every +1) puts the answer out of reach.
pub const MAX_N: i64 = 93;

/// Which Fibonacci number to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// n
    ///
    /// At most 93: fibonacci(94) does not fit in 64 bits, and the naive recursion's time
    /// grows about 1.6× with every +1.
    #[schemars(range(min = 0, max = MAX_N), example = 0)]
    pub n: i64,
}

impl Fibonacci {
    /// The input for n.
    pub fn n(n: i64) -> Input {
        Input { n }
    }
}

/// Calls of the naive recursion a worker is assumed to make per second, for admission's
/// estimate: a third of the 1.2 billion measured on this project's 2-core CI machine (release
/// build), so that a slower machine still gets an estimate on the long side.
const CALLS_PER_SECOND: f64 = 4.0e8;

/// Subtrees this small run uninstrumented (F(21)·2−1 = 21,891 calls, some tens of µs).
const PLAIN_BELOW: u32 = 20;

impl Task for Fibonacci {
    const NAME: &'static str = "fibonacci";
    const TITLE: &'static str = "Fibonacci";
    const DESCRIPTION: &'static str = "fibonacci(n) by the seed's naive recursion: every one of \
        its 2·F(n+1)−1 calls really happens, so the time grows about 1.6× with every +1 \
        (n = 32 takes a few milliseconds, n = 45 some seconds). The stand-in for heavy CPU work.";
    type Input = Input;
    type Output = u64;

    /// Exact in calls (2·F(n+1)−1), converted at [`CALLS_PER_SECOND`].
    fn expected_duration(input: &Input) -> Option<std::time::Duration> {
        let n = u32::try_from(input.n).ok()?;
        Some(std::time::Duration::from_secs_f64(
            calls(n) as f64 / CALLS_PER_SECOND,
        ))
    }

    /// The seed's line: `fibonacci(20)=6765`.
    fn summary(input: &Input, value: &u64) -> String {
        format!("fibonacci({})={value}", input.n)
    }

    /// The seed's form offers n + 1 after each submit.
    fn next_input(input: &Input) -> Option<Input> {
        Some(Input {
            n: input.n.saturating_add(1),
        })
    }

    fn run(input: Input, ctx: &TaskContext<'_>) -> Result<u64, TaskError> {
        let n = input.n;
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
    use offload_task::testing::Recorder;

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
        assert!(iterative(MAX_N as u32) <= u64::MAX as u128);
        assert!(iterative(MAX_N as u32 + 1) > u64::MAX as u128);
        assert!(
            calls(MAX_N as u32) > u64::MAX as u128,
            "why totals are u128"
        );
    }

    #[test]
    fn expected_durations_grow_with_the_call_count() {
        let secs = |n| {
            Fibonacci::expected_duration(&Fibonacci::n(n))
                .unwrap()
                .as_secs_f64()
        };
        assert!(secs(30) < 0.01, "fibonacci(30) is short work");
        assert!(secs(40) < 1.0, "fibonacci(40) still fits the short lane");
        assert!(secs(45) > 1.0 && secs(93) > 1e9, "long work is long");
        assert_eq!(Fibonacci::expected_duration(&Fibonacci::n(-1)), None);
    }

    #[test]
    fn the_form_states_the_bound_and_the_seed_line_is_kept() {
        let registry = offload_task::Registry::empty().register::<Fibonacci>();
        let fibonacci = registry.first().unwrap();
        let form = fibonacci.form(None);
        assert_eq!(form.fields[0].label, "n");
        assert_eq!(form.values, ["0"], "the seed's form starts at 0");
        assert!(form.fields[0].required);
        assert!(form.fields[0].help.as_deref().unwrap().contains("1.6×"));
        for (raw, message) in [
            ("94", "n must be at most 93 (got 94)."),
            ("-1", "n must be 0 or more (got -1)."),
            ("", "Enter n: a whole number from 0 to 93."),
        ] {
            assert_eq!(
                fibonacci.from_form([("n", raw)]).unwrap_err().message,
                message
            );
        }
        let input = fibonacci.from_form([("n", "20")]).unwrap();
        assert_eq!(
            fibonacci.summary(&input, &6765.into()),
            "fibonacci(20)=6765"
        );
        assert_eq!(fibonacci.brief(&input), "20");
        assert_eq!(fibonacci.next_input(&input), serde_json::json!({"n": 21}));
    }

    #[test]
    fn instrumented_walk_is_exact_and_counts_every_call() {
        let recorder = Recorder::new();
        for n in 0..=30u32 {
            recorder.run(|ctx| {
                let mut walk = Walk {
                    ctx,
                    done: 0,
                    total: calls(n),
                    cancelled: false,
                };
                assert_eq!(walk.fib(n) as u128, iterative(n), "n = {n}");
                assert_eq!(walk.done, walk.total, "n = {n}");
            });
        }
    }
}
