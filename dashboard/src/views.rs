//! The 27 individual views, one small component each, over the shared frame and charts.

use leptos::prelude::*;

use super::charts::{
    BLUE, Chart, ChartSpec, GREEN, GREY, ORANGE, PALETTE, RED, Series, Span, flame, state_colour,
};
use model::frame::{DashboardFrame, Sample};
use model::{TaskState, View};

/// The latest frame, or None until the first arrives.
pub type Frame = Signal<Option<DashboardFrame>>;

/// The component that draws `view`.
pub fn view_for(view: View, frame: Frame) -> AnyView {
    match view {
        View::AggregateTimePerAction => view! { <AggregateTimePerAction frame /> }.into_any(),
        View::BandwidthTypes => view! { <BandwidthTypes frame /> }.into_any(),
        View::BandwidthWorkers => view! { <BandwidthWorkers frame /> }.into_any(),
        View::ClusterMemory => view! { <ClusterMemory frame /> }.into_any(),
        View::ComputeTimePerKey => view! { <ComputeTimePerKey frame /> }.into_any(),
        View::Cpu => view! { <Cpu frame /> }.into_any(),
        View::Exceptions => view! { <Exceptions frame /> }.into_any(),
        View::GpuMemory => view! { <Gpu frame metric=GpuMetric::Memory /> }.into_any(),
        View::GpuUtilization => view! { <Gpu frame metric=GpuMetric::Utilization /> }.into_any(),
        View::Graph => view! { <Graph frame /> }.into_any(),
        View::Groups => view! { <Groups frame /> }.into_any(),
        View::MemoryByKey => view! { <MemoryByKey frame /> }.into_any(),
        View::Nprocessing => view! { <NProcessing frame /> }.into_any(),
        View::Occupancy => view! { <Occupancy frame /> }.into_any(),
        View::ProfileServer => view! { <Profile frame server=true /> }.into_any(),
        View::Profile => view! { <Profile frame server=false /> }.into_any(),
        View::Progress => view! { <Progress frame /> }.into_any(),
        View::SchedulerSystem => view! { <SchedulerSystem frame /> }.into_any(),
        View::TaskStream => view! { <TaskStream frame /> }.into_any(),
        View::WorkersCpuTimeseries => view! { <WorkersCpuTimeseries frame /> }.into_any(),
        View::WorkersDiskTimeseries => view! { <WorkersDiskTimeseries frame /> }.into_any(),
        View::WorkersDisk => view! { <WorkersDisk frame /> }.into_any(),
        View::WorkersMemoryTimeseries => view! { <WorkersMemoryTimeseries frame /> }.into_any(),
        View::WorkersMemory => view! { <WorkersMemory frame /> }.into_any(),
        View::WorkersNetworkTimeseries => view! { <WorkersNetworkTimeseries frame /> }.into_any(),
        View::WorkersNetwork => view! { <WorkersNetwork frame /> }.into_any(),
        View::Workers => view! { <Workers frame /> }.into_any(),
    }
}

/// A chart of `frame`, described by `spec`.
fn chart(label: &str, frame: Frame, spec: fn(&DashboardFrame) -> ChartSpec) -> impl IntoView {
    let spec = Signal::derive(move || frame.with(|f| f.as_ref().map(spec)));
    view! { <Chart label=label.to_owned() spec /> }
}

/// A chart with a line of text under it that says what it shows now.
fn chart_with_caption(
    label: &str,
    frame: Frame,
    spec: fn(&DashboardFrame) -> ChartSpec,
    caption: fn(&DashboardFrame) -> String,
) -> impl IntoView {
    let spec = Signal::derive(move || frame.with(|f| f.as_ref().map(spec)));
    let caption =
        Signal::derive(move || frame.with(|f| f.as_ref().map(caption).unwrap_or_default()));
    view! { <Chart label=label.to_owned() spec caption /> }
}

/// A named value read from each history sample.
type Metric<'a> = (&'a str, fn(&Sample) -> f64);

/// A line per series over the frame's history.
fn timeseries(
    f: &DashboardFrame,
    y_label: &str,
    y_max: Option<f64>,
    series: &[Metric<'_>],
) -> ChartSpec {
    let series: Vec<Series> = series
        .iter()
        .zip(PALETTE.iter().cycle())
        .map(|((name, value), colour)| Series {
            name: (*name).to_owned(),
            colour: *colour,
            points: f
                .history
                .iter()
                .map(|s| (seconds_ago(s.at_ms, f.at_ms), value(s)))
                .collect(),
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    ChartSpec::Lines {
        y_label: y_label.to_owned(),
        y_max: y_max.unwrap_or(top * 1.15).max(1.0),
        series,
    }
}

/// A bar per task group, split by the states of its tasks.
fn groups_by_state(f: &DashboardFrame) -> ChartSpec {
    let state = |c: model::Totals| {
        vec![
            (c.finished as f64, GREEN),
            (c.failed as f64, RED),
            (c.cancelled as f64, ORANGE),
            (c.running as f64, BLUE),
            (c.queued as f64, GREY),
        ]
    };
    ChartSpec::Stacked {
        rows: f
            .groups
            .iter()
            .map(|g| (g.name.clone(), state(g.counts)))
            .collect(),
    }
}

/// A bar per metric, from the newest sample.
fn latest_bars(f: &DashboardFrame, y_label: &str, metrics: &[Metric<'_>]) -> ChartSpec {
    let last = f.history.last().cloned().unwrap_or_default();
    bars(
        y_label,
        None,
        metrics
            .iter()
            .zip(PALETTE.iter().cycle())
            .map(|((name, value), colour)| ((*name).to_owned(), value(&last), *colour))
            .collect(),
    )
}

fn seconds_ago(at_ms: u64, now_ms: u64) -> f64 {
    (at_ms as f64 - now_ms as f64) / 1e3
}

fn bars(y_label: &str, y_max: Option<f64>, bars: Vec<(String, f64, (u8, u8, u8))>) -> ChartSpec {
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    ChartSpec::Bars {
        y_label: y_label.to_owned(),
        y_max: y_max.unwrap_or(top * 1.15).max(1.0),
        bars,
    }
}

fn worker_bars(
    f: &DashboardFrame,
    y_label: &str,
    y_max: Option<f64>,
    value: fn(&model::frame::WorkerRow) -> f64,
) -> ChartSpec {
    bars(
        y_label,
        y_max,
        f.workers
            .iter()
            .map(|w| (format!("worker {}", w.id), value(w), BLUE))
            .collect(),
    )
}

/// Shown where a view has nothing to draw yet, so an empty frame is never mistaken for a fault.
#[component]
fn Note(#[prop(into)] text: Signal<String>) -> impl IntoView {
    view! { <p class="view-note" role="note">{text}</p> }
}

#[component]
fn Cpu(frame: Frame) -> impl IntoView {
    chart("CPU: busy share of each worker", frame, |f| {
        worker_bars(f, "busy %", Some(100.0), |w| w.busy_percent)
    })
}

#[component]
fn WorkersCpuTimeseries(frame: Frame) -> impl IntoView {
    chart(
        "Workers CPU timeseries: busy share of each worker",
        frame,
        |f| {
            let workers = f.workers.len();
            let series = (0..workers)
                .zip(PALETTE.iter().cycle())
                .map(|(i, colour)| Series {
                    name: format!("worker {i}"),
                    colour: *colour,
                    points: f
                        .history
                        .iter()
                        .map(|s| {
                            (
                                seconds_ago(s.at_ms, f.at_ms),
                                s.worker_busy.get(i).copied().unwrap_or(0.0),
                            )
                        })
                        .collect(),
                })
                .collect();
            ChartSpec::Lines {
                y_label: "busy %".into(),
                y_max: 100.0,
                series,
            }
        },
    )
}

#[component]
fn WorkersMemory(frame: Frame) -> impl IntoView {
    view! {
        <Note text=Signal::derive(move || shared_process_note(frame)) />
        {chart("Workers memory", frame, |f| worker_bars(f, "bytes", None, |w| w.memory_bytes as f64))}
    }
}

fn shared_process_note(frame: Frame) -> String {
    frame.with(|f| match f {
        Some(f) if f.in_process => {
            "Embedded workers are threads of the server process: each shows the process's memory."
                .into()
        }
        _ => String::new(),
    })
}

#[component]
fn WorkersMemoryTimeseries(frame: Frame) -> impl IntoView {
    chart("Workers memory timeseries", frame, |f| {
        timeseries(
            f,
            "bytes",
            None,
            &[("process memory", |s| s.process_memory as f64)],
        )
    })
}

#[component]
fn ClusterMemory(frame: Frame) -> impl IntoView {
    chart(
        "Cluster memory: the workers' process and the host",
        frame,
        |f| {
            timeseries(
                f,
                "bytes",
                f.history.last().map(|s| s.host_memory_total as f64),
                &[
                    ("workers' process", |s| s.process_memory as f64),
                    ("host used", |s| s.host_memory_used as f64),
                ],
            )
        },
    )
}

#[component]
fn WorkersNetwork(frame: Frame) -> impl IntoView {
    chart("Workers network: host bytes per second now", frame, |f| {
        latest_bars(
            f,
            "bytes/s",
            &[("received", |s| s.net_rx), ("sent", |s| s.net_tx)],
        )
    })
}

#[component]
fn WorkersNetworkTimeseries(frame: Frame) -> impl IntoView {
    chart(
        "Workers network timeseries: host bytes per second",
        frame,
        |f| {
            timeseries(
                f,
                "bytes/s",
                None,
                &[("received", |s| s.net_rx), ("sent", |s| s.net_tx)],
            )
        },
    )
}

#[component]
fn WorkersDisk(frame: Frame) -> impl IntoView {
    chart(
        "Workers disk: the process's bytes per second now",
        frame,
        |f| {
            latest_bars(
                f,
                "bytes/s",
                &[("read", |s| s.disk_read), ("written", |s| s.disk_write)],
            )
        },
    )
}

#[component]
fn WorkersDiskTimeseries(frame: Frame) -> impl IntoView {
    chart(
        "Workers disk timeseries: the process's bytes per second",
        frame,
        |f| {
            timeseries(
                f,
                "bytes/s",
                None,
                &[("read", |s| s.disk_read), ("written", |s| s.disk_write)],
            )
        },
    )
}

#[component]
fn SchedulerSystem(frame: Frame) -> impl IntoView {
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
fn NProcessing(frame: Frame) -> impl IntoView {
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
fn Occupancy(frame: Frame) -> impl IntoView {
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
fn TaskStream(frame: Frame) -> impl IntoView {
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
fn Progress(frame: Frame) -> impl IntoView {
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
fn ComputeTimePerKey(frame: Frame) -> impl IntoView {
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
fn AggregateTimePerAction(frame: Frame) -> impl IntoView {
    view! {
        <Note text="Workers never fetch data from each other (a task's input and result travel with it), so unlike Dask's there is no transfer time to show." />
        {chart("Aggregate time per action: summed queue wait and compute, all tasks", frame, |f| {
            let wait: f64 = f.groups.iter().map(|g| g.wait_ms).sum();
            let compute: f64 = f.groups.iter().map(|g| g.compute_ms).sum();
            bars("ms", None, vec![("queue wait".into(), wait, GREY), ("compute".into(), compute, BLUE)])
        })}
    }
}

fn transfer_note(frame: Frame) -> String {
    frame.with(|f| match f {
        Some(f) if f.in_process => {
            "Embedded cluster: all transfers are in-process, so no time is spent moving data."
                .into()
        }
        _ => String::new(),
    })
}

#[component]
fn MemoryByKey(frame: Frame) -> impl IntoView {
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
fn BandwidthTypes(frame: Frame) -> impl IntoView {
    view! {
        <Note text=Signal::derive(move || transfer_note(frame)) />
        {chart("Bandwidth by type: bytes of task inputs and results moved since start", frame, |f| {
            bars("bytes", None, f.bandwidth.iter().zip(PALETTE.iter().cycle()).map(|(t, c)| (t.kind.clone(), t.bytes as f64, *c)).collect())
        })}
    }
}

#[component]
fn BandwidthWorkers(frame: Frame) -> impl IntoView {
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

#[derive(Clone, Copy, PartialEq)]
enum GpuMetric {
    Memory,
    Utilization,
}

#[component]
fn Gpu(frame: Frame, metric: GpuMetric) -> impl IntoView {
    let spec = Signal::derive(move || {
        frame.with(|f| {
            let gpus = f.as_ref()?.gpus.as_ref()?;
            Some(bars(
                match metric {
                    GpuMetric::Memory => "bytes",
                    GpuMetric::Utilization => "%",
                },
                None,
                gpus.iter()
                    .map(|g| {
                        let v = match metric {
                            GpuMetric::Memory => g.memory_used as f64,
                            GpuMetric::Utilization => g.utilization,
                        };
                        (g.name.clone(), v, GREEN)
                    })
                    .collect(),
            ))
        })
    });
    move || match frame.with(|f| f.as_ref().map(|f| f.gpus.is_some())) {
        Some(false) => view! {
            <p class="view-empty" role="status">"No GPU on any worker."</p>
        }
        .into_any(),
        _ => {
            let label = match metric {
                GpuMetric::Memory => "GPU memory",
                GpuMetric::Utilization => "GPU utilization",
            };
            view! { <Chart label spec /> }.into_any()
        }
    }
}

#[component]
fn Profile(frame: Frame, server: bool) -> impl IntoView {
    let stacks = move || {
        frame.with(|f| {
            f.as_ref().map(|f| {
                let stacks = if server {
                    &f.profiles.server
                } else {
                    &f.profiles.workers
                };
                let stacks: Vec<(Vec<String>, u64)> = stacks
                    .iter()
                    .map(|s| (s.frames.clone(), s.samples))
                    .collect();
                (stacks, f.profiles.hz)
            })
        })
    };
    let spec = Signal::derive(move || {
        stacks()
            .filter(|(s, _)| !s.is_empty())
            .map(|(s, _)| flame(&s))
    });
    let caption = Signal::derive(move || {
        stacks()
            .map(|(s, hz)| {
                let samples: u64 = s.iter().map(|s| s.1).sum();
                format!("{samples} samples at {hz} Hz over the last 2 s; wider frames use more CPU")
            })
            .unwrap_or_default()
    });
    let whose = if server {
        "the server's threads"
    } else {
        "the worker threads"
    };
    let label = format!("Profile: a flame graph of {whose}");
    let disabled = move || frame.with(|f| f.as_ref().is_some_and(|f| f.profiles.disabled));
    move || {
        if disabled() {
            view! {
                <p class="view-empty" role="status">
                    "Profiling is off: start the server with --profiler to sample its threads while this view is open."
                </p>
            }
            .into_any()
        } else if spec.with(Option::is_some) {
            view! { <Chart label=label.clone() spec caption /> }.into_any()
        } else {
            view! {
                <p class="view-empty" role="status">
                    {format!("Sampling {whose} while this view is open. Idle threads use no CPU, so they leave no samples.")}
                </p>
            }
            .into_any()
        }
    }
}

#[component]
fn Workers(frame: Frame) -> impl IntoView {
    view! {
        <table class="view-table" aria-label="Workers">
            <thead>
                <tr>
                    <th>"worker"</th><th>"process"</th><th>"state"</th><th>"current task"</th><th>"done"</th>
                    <th>"busy %"</th><th>"CPU %"</th><th>"memory"</th>
                </tr>
            </thead>
            <tbody>
                {move || frame.with(|f| f.as_ref().map(|f| f.workers.clone()).unwrap_or_default()).into_iter().map(|w| view! {
                    <tr>
                        <td>{w.id}</td>
                        <td>{w.process.unwrap_or_else(|| "embedded".into())}</td>
                        <td>{w.state.name()}</td>
                        <td>{w.current.unwrap_or_else(|| "–".into())}</td>
                        <td>{w.tasks_done}</td>
                        <td>{format!("{:.0}", w.busy_percent)}</td>
                        <td>{format!("{:.0}", w.cpu_percent)}</td>
                        <td>{bytes(w.memory_bytes)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn Exceptions(frame: Frame) -> impl IntoView {
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

#[component]
fn GroupTable(frame: Frame) -> impl IntoView {
    view! {
        <table class="view-table" aria-label="Task groups">
            <thead>
                <tr>
                    <th>"group"</th><th>"queued"</th><th>"running"</th><th>"done"</th>
                    <th>"failed"</th><th>"cancelled"</th><th>"compute"</th>
                    <th>"p50"</th><th>"p99"</th><th>"results"</th>
                </tr>
            </thead>
            <tbody>
                {move || frame.with(|f| f.as_ref().map(|f| f.groups.clone()).unwrap_or_default()).into_iter().map(|g| view! {
                    <tr>
                        <td>{g.name}</td>
                        <td>{g.counts.queued}</td>
                        <td>{g.counts.running}</td>
                        <td>{g.counts.finished}</td>
                        <td>{g.counts.failed}</td>
                        <td>{g.counts.cancelled}</td>
                        <td>{format!("{:.1} s", g.compute_ms / 1e3)}</td>
                        <td>{g.p50_ms.map(duration).unwrap_or_default()}</td>
                        <td>{g.p99_ms.map(duration).unwrap_or_default()}</td>
                        <td>{bytes(g.output_bytes)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn Groups(frame: Frame) -> impl IntoView {
    view! {
        <Note text=Signal::derive(move || {
            frame.with(|f| match f {
                Some(f) if f.groups.is_empty() => "No task has been submitted yet.".to_owned(),
                _ => String::new(),
            })
        }) />
        <GroupTable frame />
    }
}

#[component]
fn Graph(frame: Frame) -> impl IntoView {
    // Drawing the progress chart again here would show something other than a graph.
    let tasks = move || {
        frame.with(|f| {
            f.as_ref().map_or(0, |f| {
                f.groups
                    .iter()
                    .map(|g| g.counts.finished + g.counts.running + g.counts.queued)
                    .sum::<u64>()
            })
        })
    };
    view! {
        <p class="view-empty" role="status">
            {move || format!(
                "No graph to draw: Offload's tasks do not depend on one another, so each of the {} seen so far is a node without edges. Progress and Task stream show their states.",
                model::count(tasks(), "task", "tasks")
            )}
        </p>
    }
}

/// A compute time: 0.42 → "0.42 ms", 1234 → "1.23 s".
pub fn duration(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else {
        format!("{ms:.2} ms")
    }
}

/// 1536 → "1.5 KiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod duration_tests {
    #[test]
    fn compute_times_read_in_ms_then_s() {
        assert_eq!(super::duration(0.4213), "0.42 ms");
        assert_eq!(super::duration(1234.0), "1.23 s");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_builds_without_a_frame() {
        let _owner = Owner::new();
        Owner::new().with(|| {
            let frame = Signal::derive(|| None);
            for view in View::ALL {
                let _ = view_for(view, frame);
            }
        });
    }

    #[test]
    fn byte_sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
