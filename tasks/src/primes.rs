//! `primes`: how many primes there are up to n, and the largest, by a segmented sieve of
//! Eratosthenes. Memory stays at one segment (and the primes up to √n) whatever n is, so n
//! may go to 10^11: tens of seconds of one core.

use std::time::Duration;

use offload_task::{Task, TaskContext, TaskError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `primes` task.
pub struct Primes;

/// Largest n accepted.
const MAX_N: u64 = 100_000_000_000;

/// Odd numbers per segment: 256 KiB of flags, within a core's L2 cache.
const SEGMENT: u64 = 1 << 18;

/// Numbers sieved per second assumed for admission: about a third of one core of this
/// project's CI machine, so that an estimate errs long.
const PER_SECOND: f64 = 4.0e8;

/// The bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// n
    ///
    /// Count the primes up to and including n, at most 100,000,000,000 (10^11).
    #[schemars(range(min = 0, max = MAX_N))]
    #[serde(default = "default_n")]
    pub n: u64,
}

fn default_n() -> u64 {
    10_000_000
}

/// π(n) and the largest prime up to n.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Output {
    /// How many primes are ≤ n.
    pub count: u64,
    /// The largest prime ≤ n (none below 2).
    pub largest: Option<u64>,
}

impl Task for Primes {
    const NAME: &'static str = "primes";
    const TITLE: &'static str = "Prime count";
    const DESCRIPTION: &'static str = "Counts the primes up to n and finds the largest, with a \
        segmented sieve of Eratosthenes: n = 10^9 takes a couple of seconds, n = 10^11 a few \
        minutes of one core. Memory stays at one 256 KiB segment whatever n is.";
    type Input = Input;
    type Output = Output;

    fn expected_duration(input: &Input) -> Option<Duration> {
        Some(Duration::from_secs_f64(input.n as f64 / PER_SECOND))
    }

    /// `primes(1000000)=78498, largest 999983`
    fn summary(input: &Input, output: &Output) -> String {
        match output.largest {
            Some(largest) => format!("primes({})={}, largest {largest}", input.n, output.count),
            None => format!("primes({})=0", input.n),
        }
    }

    fn run(input: Input, ctx: &TaskContext<'_>) -> Result<Output, TaskError> {
        sieve(input.n, ctx)
    }
}

/// The segmented sieve over odd numbers: 2 is counted apart; segment `k` holds the odd
/// numbers from `low + 2i`.
fn sieve(n: u64, ctx: &TaskContext<'_>) -> Result<Output, TaskError> {
    if n < 2 {
        return Ok(Output {
            count: 0,
            largest: None,
        });
    }
    let base = small_primes(n.isqrt());
    let mut count = 1; // 2
    let mut largest = 2;
    let mut flags = vec![true; SEGMENT as usize];
    let mut low = 3;
    while low <= n {
        if ctx.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        // Odd numbers low, low + 2, …, up to n.
        let len = ((n - low) / 2 + 1).min(SEGMENT);
        let high = low + 2 * (len - 1);
        let flags = &mut flags[..len as usize];
        flags.fill(true);
        for &p in base.iter().skip(1) {
            if p * p > high {
                break;
            }
            // The first odd multiple of p in the segment, and not p itself.
            let mut m = (p * p).max(low.div_ceil(p) * p);
            if m % 2 == 0 {
                m += p;
            }
            let mut i = (m - low) / 2;
            while i < len {
                flags[i as usize] = false;
                i += p;
            }
        }
        for (i, &prime) in flags.iter().enumerate() {
            if prime {
                count += 1;
                largest = low + 2 * i as u64;
            }
        }
        low = high + 2;
        ctx.report_progress((high as f64 / n as f64).min(1.0));
    }
    ctx.report_progress(1.0);
    Ok(Output {
        count,
        largest: Some(largest),
    })
}

/// The primes up to `limit` (at most √10^11 ≈ 316,228), by the plain sieve.
fn small_primes(limit: u64) -> Vec<u64> {
    let limit = limit as usize;
    let mut composite = vec![false; limit + 1];
    let mut primes = Vec::new();
    for i in 2..=limit {
        if !composite[i] {
            primes.push(i as u64);
            for m in (i * i..=limit).step_by(i) {
                composite[m] = true;
            }
        }
    }
    primes
}

#[cfg(test)]
mod tests {
    use super::*;
    use offload_task::testing::Recorder;

    fn count(n: u64) -> Output {
        Recorder::new().run(|ctx| sieve(n, ctx)).unwrap()
    }

    #[test]
    fn the_known_prime_counts() {
        // π(10^k), from OEIS A006880, with the largest prime below each power.
        let known = [
            (10, 4, 7),
            (100, 25, 97),
            (1_000, 168, 997),
            (10_000, 1_229, 9_973),
            (100_000, 9_592, 99_991),
            (1_000_000, 78_498, 999_983),
            (10_000_000, 664_579, 9_999_991),
            (100_000_000, 5_761_455, 99_999_989),
            (1_000_000_000, 50_847_534, 999_999_937),
        ];
        for (n, pi, largest) in known {
            assert_eq!(
                count(n),
                Output {
                    count: pi,
                    largest: Some(largest)
                },
                "n = {n}"
            );
        }
    }

    #[test]
    fn small_and_edge_bounds() {
        assert_eq!(
            count(0),
            Output {
                count: 0,
                largest: None
            }
        );
        assert_eq!(
            count(1),
            Output {
                count: 0,
                largest: None
            }
        );
        assert_eq!(
            count(2),
            Output {
                count: 1,
                largest: Some(2)
            }
        );
        assert_eq!(
            count(3),
            Output {
                count: 2,
                largest: Some(3)
            }
        );
        assert_eq!(
            count(4),
            Output {
                count: 2,
                largest: Some(3)
            }
        );
        // Segment edges: n at, just past and well past one segment of odd numbers.
        let naive = |n: u64| {
            (2..=n)
                .filter(|&k| (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0))
                .count() as u64
        };
        for n in [2 * SEGMENT + 1, 2 * SEGMENT + 3, 5 * SEGMENT + 17] {
            assert_eq!(count(n).count, naive(n), "n = {n}");
        }
    }

    #[test]
    fn progress_rises_to_one_and_cancellation_stops_the_sieve() {
        let recorder = Recorder::new();
        recorder.run(|ctx| sieve(50_000_000, ctx)).unwrap();
        let seen = recorder.progress();
        assert_eq!(seen.last(), Some(&1.0));
        assert!(seen.windows(2).all(|w| w[0] < w[1]));

        assert_eq!(
            Recorder::cancelled().run(|ctx| sieve(MAX_N, ctx)),
            Err(TaskError::Cancelled)
        );
    }

    #[test]
    fn the_form_bounds_n_and_the_line_reads_well() {
        let registry = offload_task::Registry::empty().register::<Primes>();
        let primes = registry.first().unwrap();
        assert_eq!(primes.form(None).values, ["10000000"]);
        let too_big = primes.from_form([("n", "100000000001")]).unwrap_err();
        assert_eq!(
            too_big.message,
            "n must be at most 100000000000 (got 100000000001)."
        );
        let input = primes.from_form([("n", "1000000")]).unwrap();
        let output = serde_json::json!({"count": 78498, "largest": 999983});
        assert_eq!(
            primes.summary(&input, &output),
            "primes(1000000)=78498, largest 999983"
        );
        assert_eq!(primes.brief(&input), "1000000");
    }
}
