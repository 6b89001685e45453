//! The views of the workers and the machine: CPU, memory, network and disk, each now and over
//! time, and the workers' table.

use super::*;

#[component]
pub(super) fn Cpu(frame: Frame) -> impl IntoView {
    chart("CPU: busy share of each worker", frame, |f| {
        worker_bars(f, "busy %", Some(100.0), |w| w.busy_percent)
    })
}

#[component]
pub(super) fn WorkersCpuTimeseries(frame: Frame) -> impl IntoView {
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
pub(super) fn WorkersMemory(frame: Frame) -> impl IntoView {
    view! {
        <Note text=Signal::derive(move || shared_process_note(frame)) />
        {chart("Workers memory", frame, |f| worker_bars(f, "bytes", None, |w| w.memory_bytes as f64))}
    }
}

pub(super) fn shared_process_note(frame: Frame) -> String {
    frame.with(|f| match f {
        Some(f) if f.in_process => {
            "Embedded workers are threads of the server process: each shows the process's memory."
                .into()
        }
        _ => String::new(),
    })
}

#[component]
pub(super) fn WorkersMemoryTimeseries(frame: Frame) -> impl IntoView {
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
pub(super) fn ClusterMemory(frame: Frame) -> impl IntoView {
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
pub(super) fn WorkersNetwork(frame: Frame) -> impl IntoView {
    chart("Workers network: host bytes per second now", frame, |f| {
        latest_bars(
            f,
            "bytes/s",
            &[("received", |s| s.net_rx), ("sent", |s| s.net_tx)],
        )
    })
}

#[component]
pub(super) fn WorkersNetworkTimeseries(frame: Frame) -> impl IntoView {
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
pub(super) fn WorkersDisk(frame: Frame) -> impl IntoView {
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
pub(super) fn WorkersDiskTimeseries(frame: Frame) -> impl IntoView {
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
pub(super) fn Workers(frame: Frame) -> impl IntoView {
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
