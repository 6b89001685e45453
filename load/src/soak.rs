//! The soak: rounds of new visitors, one after another, for minutes, with the server's memory
//! read each minute and every round's latency kept, judged against [`Bounds`]: memory must
//! level off (what a server holds may depend on what is live, never on how many visitors it
//! has met) and no round may stall.

use std::time::{Duration, Instant};

use crate::{LoadConfig, LoadError, Round, Target, mb, ms, round};

/// What a soak must stay within.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most the memory after the last minute may exceed the first minute's, in percent.
    pub max_growth_percent: f64,
    /// Most any round's p99 (submit → result) may be.
    pub max_p99: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_growth_percent: 15.0,
            max_p99: Duration::from_millis(50),
        }
    }
}

/// A soak's figures.
#[derive(Debug, Clone, Default)]
pub struct Soak {
    pub rounds: usize,
    pub results: usize,
    pub errors: usize,
    /// The server's resident memory after each minute, in kB.
    pub minutes_kb: Vec<u64>,
    /// The worst round's p99, and which round (from 1).
    pub worst_p99: (Duration, usize),
    /// Rounds whose p99 was over the bound.
    pub slow_rounds: usize,
    /// Every round's p99, in order.
    pub p99s: Vec<Duration>,
}

impl Soak {
    /// How much the last minute's memory exceeds the first's, in percent.
    pub fn growth_percent(&self) -> Option<f64> {
        let (first, last) = (*self.minutes_kb.first()?, *self.minutes_kb.last()?);
        Some((last as f64 - first as f64) / first.max(1) as f64 * 100.0)
    }

    /// Each bound the soak broke, said as a sentence; empty when it held.
    pub fn breaches(&self, bounds: &Bounds) -> Vec<String> {
        let mut broke = Vec::new();
        if let Some(growth) = self.growth_percent()
            && growth > bounds.max_growth_percent
        {
            broke.push(format!(
                "memory grew {growth:.1} % from the first minute to the last (bound {} %)",
                bounds.max_growth_percent
            ));
        }
        if self.worst_p99.0 > bounds.max_p99 {
            broke.push(format!(
                "{} of {} rounds had a p99 over {}, the worst {} (round {})",
                self.slow_rounds,
                self.rounds,
                ms(bounds.max_p99),
                ms(self.worst_p99.0),
                self.worst_p99.1
            ));
        }
        if self.errors > 0 {
            broke.push(format!("{} tasks got no result", self.errors));
        }
        broke
    }

    fn add(&mut self, r: &Round, bounds: &Bounds) {
        self.rounds += 1;
        self.results += r.results;
        self.errors += r.errors;
        let p99 = r.percentile(0.99);
        self.p99s.push(p99);
        if p99 > self.worst_p99.0 {
            self.worst_p99 = (p99, self.rounds);
        }
        self.slow_rounds += usize::from(p99 > bounds.max_p99);
    }
}

/// Runs rounds against `target` for `minutes` (at least one round), printing each round and
/// the memory each minute.
pub async fn soak(
    target: &Target,
    config: &LoadConfig,
    tokens: &[String],
    minutes: u64,
    bounds: &Bounds,
) -> Result<Soak, LoadError> {
    let mut soak = Soak::default();
    let started = Instant::now();
    let until = started + Duration::from_secs(minutes * 60);
    loop {
        let r = round(target, config, tokens).await;
        soak.add(&r, bounds);
        println!("round {}: {}", soak.rounds, r.summary());
        let minute = soak.minutes_kb.len() as u64 + 1;
        if started.elapsed() >= Duration::from_secs(minute * 60) {
            let rss = target.rss_kb()?;
            soak.minutes_kb.push(rss);
            println!("minute {minute}: RSS {}", mb(rss));
        }
        if Instant::now() >= until {
            return Ok(soak);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soak_breaks_its_bounds_by_growth_by_a_slow_round_or_a_lost_result() {
        let bounds = Bounds::default();
        let level = Soak {
            rounds: 3,
            minutes_kb: vec![30_000, 33_000, 34_000],
            worst_p99: (Duration::from_millis(20), 2),
            ..Soak::default()
        };
        assert!(level.breaches(&bounds).is_empty());
        let growing = Soak {
            minutes_kb: vec![30_000, 40_000],
            ..level.clone()
        };
        assert!(growing.breaches(&bounds)[0].starts_with("memory grew 33.3 %"));
        let stalled = Soak {
            worst_p99: (Duration::from_millis(452), 14),
            slow_rounds: 1,
            ..level.clone()
        };
        assert_eq!(
            stalled.breaches(&bounds),
            ["1 of 3 rounds had a p99 over 50.0 ms, the worst 452.0 ms (round 14)"]
        );
        let lossy = Soak { errors: 2, ..level };
        assert_eq!(lossy.breaches(&bounds), ["2 tasks got no result"]);
    }
}
