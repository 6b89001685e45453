//! The first way to run a released task: on a worker OS thread of this process, never on
//! tokio's threads. Also the watchdog thread, which stops tasks past the time limit for
//! either way.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::TaskContext;
use crate::scheduler::{Core, Job, SpawnError, millis, spawn};
use crate::work::{OutputLimit, Ran, record_duration, run_caught};

/// Starts worker threads for slots `0..threads` of `core`; each runs until shutdown.
pub(crate) fn start_threads(
    core: &Arc<Core>,
    threads: usize,
    handles: &mut Vec<JoinHandle<()>>,
) -> Result<(), SpawnError> {
    core.set_capacity(threads, threads);
    for slot in 0..threads {
        let core = core.clone();
        // Named so that the dashboard's profile views find them.
        handles.push(spawn(format!("offload-worker-{slot}"), move || {
            while let Some(job) = core.wait_for_job(slot) {
                run(&core, slot, job);
            }
        })?);
    }
    Ok(())
}

fn run(core: &Core, slot: usize, job: Job) {
    let started = Instant::now();
    let ran = Ran::here(slot, crate::now_ms());
    let (outcome, output_bytes) = {
        let publish = |fraction: f64| core.progress(slot, &job, fraction);
        let ctx = TaskContext::new(job.cancel.as_atomic(), &publish);
        run_caught(
            &core.registry,
            &job.name,
            &job.input,
            &ctx,
            OutputLimit::flag(core.limits.max_output_bytes),
            // Checked by this scheduler when it was submitted.
            true,
        )
    };
    let compute_ms = millis(started.elapsed());
    record_duration(&job.name, compute_ms);
    core.finish(slot, job, outcome, Some(ran), output_bytes, compute_ms);
}

/// Stops tasks that run past `limit`, through the same flag as a cancel; the task then
/// reports the time limit. Scanning the running tasks a few times a second costs nothing
/// measurable and needs no wake-up on every task start.
pub(crate) fn watchdog(core: &Weak<Core>, limit: Duration) {
    let tick = (limit / 10).clamp(Duration::from_millis(10), Duration::from_millis(100));
    loop {
        std::thread::sleep(tick);
        let Some(core) = core.upgrade() else { return };
        if !core.stop_overdue(limit) {
            return;
        }
    }
}
