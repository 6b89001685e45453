//! Sampling profiles for the `profile` (worker threads) and `profile-server` (the server's own
//! threads) views, taken with `pprof` only while such a view is open, so that nobody pays for
//! profiling they do not look at.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use model::frame::{Profiles, Stack};

/// Samples per second: a prime, so sampling does not beat in step with periodic work.
pub const HZ: i32 = 97;
/// Each profile covers this long; the views then show the newest one.
const WINDOW: Duration = Duration::from_secs(2);
/// Stacks kept per view, the heaviest first.
const STACKS_KEPT: usize = 300;

pub struct Profiler {
    viewers: AtomicUsize,
    latest: Mutex<Profiles>,
}

/// Held by each open profile view; profiling stops when the last one is dropped.
pub struct Watching(Arc<Profiler>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Profiler {
    /// Starts the (idle) sampling thread.
    pub fn start() -> Arc<Self> {
        let profiler = Arc::new(Self {
            viewers: AtomicUsize::new(0),
            latest: Mutex::new(Profiles::default()),
        });
        let sampler = profiler.clone();
        if let Err(error) = std::thread::Builder::new()
            .name("offload-profiler".into())
            .spawn(move || sampler.run())
        {
            tracing::warn!(%error, "no profiler thread: the profile views will stay empty");
        }
        profiler
    }

    pub fn watch(self: &Arc<Self>) -> Watching {
        self.viewers.fetch_add(1, Ordering::Relaxed);
        Watching(self.clone())
    }

    /// The newest profiles (empty while nobody watches).
    pub fn latest(&self) -> Profiles {
        self.latest.lock().clone()
    }

    fn run(&self) {
        loop {
            if self.viewers.load(Ordering::Relaxed) == 0 {
                *self.latest.lock() = Profiles::default();
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
            // Skipping samples that start in libc, libgcc or pthread avoids the known
            // deadlock of unwinding from inside them; vdso's unwind tables are unreliable.
            let guard = match pprof::ProfilerGuardBuilder::default()
                .frequency(HZ)
                .blocklist(&["libc", "libgcc", "pthread", "vdso"])
                .build()
            {
                Ok(guard) => guard,
                Err(error) => {
                    tracing::warn!(%error, "cannot profile; retrying in 10 s");
                    std::thread::sleep(Duration::from_secs(10));
                    continue;
                }
            };
            std::thread::sleep(WINDOW);
            match guard.report().build() {
                Ok(report) => *self.latest.lock() = summarise(&report),
                Err(error) => tracing::warn!(%error, "could not build a profile"),
            }
        }
    }
}

fn summarise(report: &pprof::Report) -> Profiles {
    let mut workers: HashMap<Vec<String>, u64> = HashMap::new();
    let mut server: HashMap<Vec<String>, u64> = HashMap::new();
    for (frames, count) in &report.data {
        let bucket = if frames.thread_name.starts_with("offload-worker") {
            &mut workers
        } else if frames.thread_name.starts_with("offload-profiler") {
            continue;
        } else {
            &mut server
        };
        // pprof lists the innermost frame first; flame graphs grow from the root.
        let stack: Vec<String> = frames
            .frames
            .iter()
            .rev()
            .flat_map(|inlined| inlined.iter().rev().map(|s| short_name(&s.name())))
            .collect();
        *bucket.entry(stack).or_default() += u64::try_from(*count).unwrap_or(0);
    }
    Profiles {
        workers: heaviest(workers),
        server: heaviest(server),
        hz: HZ as u32,
        disabled: false,
    }
}

fn heaviest(stacks: HashMap<Vec<String>, u64>) -> Vec<Stack> {
    let mut stacks: Vec<Stack> = stacks
        .into_iter()
        .map(|(frames, samples)| Stack { frames, samples })
        .collect();
    stacks.sort_by_key(|s| std::cmp::Reverse(s.samples));
    stacks.truncate(STACKS_KEPT);
    stacks
}

/// `tasks::primes::sieve::h0123456789abcdef` → `tasks::primes::sieve`.
fn short_name(name: &str) -> String {
    let name = match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    };
    name.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_hashes_are_dropped() {
        assert_eq!(short_name("a::b::h0123456789abcdef"), "a::b");
        assert_eq!(short_name("a::hello"), "a::hello");
    }

    #[test]
    fn the_heaviest_stacks_come_first() {
        let stacks = HashMap::from([(vec!["a".to_owned()], 1), (vec!["b".to_owned()], 5)]);
        let kept = heaviest(stacks);
        assert_eq!(kept[0].frames, ["b"]);
        assert_eq!(kept[1].samples, 1);
    }
}
