//! The first way to run a released task: on a worker OS thread of this process, never on
//! tokio's threads.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

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
