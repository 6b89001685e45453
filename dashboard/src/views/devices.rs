//! The views of what runs the tasks besides the CPU: the GPUs, and the sampled profiles of the
//! worker threads and the server.

use super::*;

#[component]
pub(super) fn Gpu(frame: Frame, metric: GpuMetric) -> impl IntoView {
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
pub(super) fn Profile(frame: Frame, server: bool) -> impl IntoView {
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
