//! The views of the tasks: the task stream, progress by type, time per type and per action,
//! results' sizes, what each worker is doing and how busy it is, and the exceptions.

use super::*;

#[component]
pub(super) fn SchedulerSystem(frame: Frame) -> impl IntoView {
    view! {
        {chart("Scheduler system: CPU of the scheduling process", frame, |f| {
            timeseries(f, "CPU %", Some(100.0 * f.cores.max(1) as f64), &[("CPU", |s| s.process_cpu)])
        })}
        {chart("Scheduler system: memory of the scheduling process", frame, |f| {
            timeseries(f, "bytes", None, &[("memory", |s| s.process_memory as f64)])
        })}
    }
}

#[component]
pub(super) fn NProcessing(frame: Frame) -> impl IntoView {
    chart("Tasks processing on each worker, and waiting", frame, |f| {
        let mut b: Vec<_> = f
            .workers
            .iter()
            .map(|w| (format!("worker {}", w.id), w.processing as f64, BLUE))
            .collect();
        b.push(("queued".into(), f.totals.queued as f64, GREY));
        bars("tasks", None, b)
    })
}

#[component]
pub(super) fn Occupancy(frame: Frame) -> impl IntoView {
    // Dask plots the expected run time of the tasks a worker holds; an Offload worker holds
    // one task at a time, so this is how long that task has run so far.
    chart(
        "Occupancy: seconds each worker has spent on its current task",
        frame,
        |f| {
            bars(
                "seconds",
                None,
                f.workers
                    .iter()
                    .map(|w| {
                        let running = f
                            .recent
                            .iter()
                            .rev()
                            .find(|t| t.worker == w.id && t.state == TaskState::Running)
                            .map_or(0.0, |t| (t.end_ms - t.start_ms) as f64 / 1e3);
                        (format!("worker {}", w.id), running, BLUE)
                    })
                    .collect(),
            )
        },
    )
}

#[component]
pub(super) fn TaskStream(frame: Frame) -> impl IntoView {
    view! {
        <ul class="legend" aria-label="Colours">
            <li class="finished">"finished"</li>
            <li class="running">"running"</li>
            <li class="failed">"failed"</li>
            <li class="cancelled">"cancelled"</li>
        </ul>
        {chart_with_caption("Task stream: recent tasks on each worker", frame, |f| ChartSpec::Spans {
            rows: f.workers.iter().map(|w| format!("worker {}", w.id)).collect(),
            window_s: 60.0,
            spans: f
                .recent
                .iter()
                .map(|t| Span {
                    row: t.worker,
                    start: seconds_ago(t.start_ms, f.at_ms),
                    end: seconds_ago(t.end_ms, f.at_ms),
                    colour: state_colour(t.state),
                })
                .collect(),
        }, |f| {
            let running = f.recent.iter().filter(|t| t.state == TaskState::Running).count();
            format!(
                "{} in the last minute, {running} running (seconds ago on the axis)",
                model::count(f.recent.len() as u64, "task", "tasks")
            )
        })}
    }
}

#[component]
pub(super) fn Progress(frame: Frame) -> impl IntoView {
    view! {
        <ul class="legend" aria-label="Colours">
            <li class="finished">"done"</li>
            <li class="failed">"failed"</li>
            <li class="cancelled">"cancelled"</li>
            <li class="running">"running"</li>
            <li class="queued">"queued"</li>
        </ul>
        {chart("Progress: tasks of each type by state", frame, groups_by_state)}
        <GroupTable frame />
    }
}

#[component]
pub(super) fn ComputeTimePerKey(frame: Frame) -> impl IntoView {
    chart("Compute time per task type", frame, |f| {
        bars(
            "ms",
            None,
            f.groups
                .iter()
                .zip(PALETTE.iter().cycle())
                .map(|(g, c)| (g.name.clone(), g.compute_ms, *c))
                .collect(),
        )
    })
}

#[component]
pub(super) fn AggregateTimePerAction(frame: Frame) -> impl IntoView {
    view! {
        <Note text="Workers never fetch data from each other (a task's input and result travel with it), so unlike Dask's there is no transfer time to show." />
        {chart("Aggregate time per action: summed queue wait and compute, all tasks", frame, |f| {
            let wait: f64 = f.groups.iter().map(|g| g.wait_ms).sum();
            let compute: f64 = f.groups.iter().map(|g| g.compute_ms).sum();
            bars("ms", None, vec![("queue wait".into(), wait, GREY), ("compute".into(), compute, BLUE)])
        })}
    }
}

pub(super) fn transfer_note(frame: Frame) -> String {
    frame.with(|f| match f {
        Some(f) if f.in_process => {
            "Embedded cluster: all transfers are in-process, so no time is spent moving data."
                .into()
        }
        _ => String::new(),
    })
}

#[component]
pub(super) fn MemoryByKey(frame: Frame) -> impl IntoView {
    chart(
        "Memory by key: bytes of results per task type",
        frame,
        |f| {
            bars(
                "bytes",
                None,
                f.groups
                    .iter()
                    .zip(PALETTE.iter().cycle())
                    .map(|(g, c)| (g.name.clone(), g.output_bytes as f64, *c))
                    .collect(),
            )
        },
    )
}

#[component]
pub(super) fn BandwidthTypes(frame: Frame) -> impl IntoView {
    view! {
        <Note text=Signal::derive(move || transfer_note(frame)) />
        {chart("Bandwidth by type: bytes of task inputs and results moved since start", frame, |f| {
            bars("bytes", None, f.bandwidth.iter().zip(PALETTE.iter().cycle()).map(|(t, c)| (t.kind.clone(), t.bytes as f64, *c)).collect())
        })}
    }
}

#[component]
pub(super) fn BandwidthWorkers(frame: Frame) -> impl IntoView {
    view! {
        <Note text=Signal::derive(move || transfer_note(frame)) />
        {chart("Bandwidth by worker: result bytes each worker sent since start", frame, |f| {
            bars(
                "bytes",
                None,
                f.workers
                    .iter()
                    .map(|w| {
                        let bytes = f.bandwidth_by_worker.iter().find(|(id, _)| *id == w.id).map_or(0, |b| b.1);
                        (format!("worker {}", w.id), bytes as f64, BLUE)
                    })
                    .collect(),
            )
        })}
    }
}

#[component]
pub(super) fn Exceptions(frame: Frame) -> impl IntoView {
    let rows = move || frame.with(|f| f.as_ref().map(|f| f.exceptions.clone()).unwrap_or_default());
    view! {
        <Show when=move || !rows().is_empty() fallback=|| view! {
            <p class="view-empty" role="status">"No task has failed."</p>
        }>
            <table class="view-table" aria-label="Exceptions">
                <thead><tr><th>"task"</th><th>"worker"</th><th>"error"</th></tr></thead>
                <tbody>
                    {move || rows().into_iter().rev().map(|e| view! {
                        <tr>
                            <td>{format!("{} #{}", e.name, e.id)}</td>
                            <td>{e.worker.map_or_else(|| "–".into(), |w| w.to_string())}</td>
                            <td class="error">{e.error}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </Show>
    }
}
