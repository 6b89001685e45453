//! The watchdog thread: it stops tasks that run past the time limit, for both ways of running
//! them (worker threads here, NATS workers elsewhere), through the same flag as a cancel; the
//! task then reports the time limit.

use std::time::Duration;

/// Asks `stop_overdue` to stop what ran past `limit`, a few times a second, until it answers
/// false (its scheduler is gone or stopping). Scanning the running tasks that often costs
/// nothing measurable and needs no wake-up on every task start.
pub(crate) fn watch(limit: Duration, stop_overdue: impl Fn(Duration) -> bool) {
    let tick = (limit / 10).clamp(Duration::from_millis(10), Duration::from_millis(100));
    loop {
        std::thread::sleep(tick);
        if !stop_overdue(limit) {
            return;
        }
    }
}
