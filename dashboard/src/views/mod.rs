//! The 27 individual views, one small component each, over the shared frame and charts:
//! [`view_for`] picks one, and the helpers here draw what several share. The views themselves
//! are grouped by what they show: the workers and the machine ([`workers`]), the tasks
//! ([`tasks`]), the GPUs and profiles ([`devices`]).

mod devices;
mod tasks;
mod workers;

use leptos::prelude::*;

use super::charts::{
    BLUE, Chart, ChartSpec, GREEN, GREY, ORANGE, PALETTE, RED, Series, Span, flame, state_colour,
};
use model::frame::{DashboardFrame, Sample};
use model::{TaskState, View};

use devices::*;
use tasks::*;
use workers::*;

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
        rows: (f.groups.iter().map(|g| (g.name.clone(), state(g.counts))))
            .chain(f.batches.iter().map(|(name, c)| (name.clone(), state(*c))))
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

#[derive(Clone, Copy, PartialEq)]
enum GpuMetric {
    Memory,
    Utilization,
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
                // The app's open batches, a row each (their times are their types').
                {move || frame.with(|f| f.as_ref().map(|f| f.batches.clone()).unwrap_or_default()).into_iter().map(|(name, c)| view! {
                    <tr class="batch">
                        <td>{name}</td><td>{c.queued}</td><td>{c.running}</td><td>{c.finished}</td>
                        <td>{c.failed}</td><td>{c.cancelled}</td><td></td><td></td><td></td><td></td>
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
    fn progress_shows_a_bar_per_type_then_one_per_batch() {
        let counts = |queued, running, finished| model::Totals {
            queued,
            running,
            finished,
            ..model::Totals::default()
        };
        let frame = DashboardFrame {
            groups: vec![model::frame::TaskGroup {
                name: "square".into(),
                counts: counts(0, 1, 4),
                wait_ms: 0.0,
                compute_ms: 0.0,
                output_bytes: 0,
                p50_ms: None,
                p99_ms: None,
            }],
            batches: vec![("batch 7 · square".into(), counts(17, 2, 2))],
            ..DashboardFrame::default()
        };
        let ChartSpec::Stacked { rows } = groups_by_state(&frame) else {
            panic!("a stacked chart");
        };
        let names: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["square", "batch 7 · square"]);
        let segments: Vec<f64> = rows[1].1.iter().map(|(n, _)| *n).collect();
        assert_eq!(segments, [2.0, 0.0, 0.0, 2.0, 17.0], "finished … queued");
    }

    #[test]
    fn byte_sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
