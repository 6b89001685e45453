//! The cluster dashboard: the seed's 27 individual views (same paths as Dask's), the `/status`
//! overview built from them, and the data they all draw from. Each view is a small component
//! over the shared [`frame::DashboardFrame`] and the chart helpers in [`charts`].

pub mod charts;
pub mod frame;
pub mod pages;
pub mod views;

/// The seed's `VIEWS` table: (label, path). The label is what the viewer's select shows.
pub const VIEWS: [(&str, &str); 27] = [
    (
        "aggregate-time-per-action",
        "individual-aggregate-time-per-action",
    ),
    ("bandwidth-types", "individual-bandwidth-types"),
    ("bandwidth-workers", "individual-bandwidth-workers"),
    ("cluster-memory", "individual-cluster-memory"),
    ("compute-time-per-key", "individual-compute-time-per-key"),
    ("cpu", "individual-cpu"),
    ("exceptions", "individual-exceptions"),
    ("gpu-memory", "individual-gpu-memory"),
    ("gpu-utilization", "individual-gpu-utilization"),
    ("graph", "individual-graph"),
    ("groups", "individual-groups"),
    ("memory-by-key", "individual-memory-by-key"),
    ("nprocessing", "individual-nprocessing"),
    ("occupancy", "individual-occupancy"),
    ("profile-server", "individual-profile-server"),
    ("profile", "individual-profile"),
    ("progress", "individual-progress"),
    ("scheduler-system", "individual-scheduler-system"),
    ("task-stream", "individual-task-stream"),
    (
        "workers-cpu-timeseries",
        "individual-workers-cpu-timeseries",
    ),
    (
        "workers-disk-timeseries",
        "individual-workers-disk-timeseries",
    ),
    ("workers-disk", "individual-workers-disk"),
    (
        "workers-memory-timeseries",
        "individual-workers-memory-timeseries",
    ),
    ("workers-memory", "individual-workers-memory"),
    (
        "workers-network-timeseries",
        "individual-workers-network-timeseries",
    ),
    ("workers-network", "individual-workers-network"),
    ("workers", "individual-workers"),
];

/// The view shown when none is chosen, as in the seed.
pub const DEFAULT_VIEW: &str = "individual-cpu";

/// A view's label from its path (`individual-cpu` → `cpu`), if it is one of ours.
pub fn label_of(path: &str) -> Option<&'static str> {
    VIEWS.iter().find(|(_, p)| *p == path).map(|(l, _)| *l)
}

/// Dask's title for a view: `individual-task-stream` → "Task Stream".
pub fn title_of(label: &str) -> String {
    label
        .split('-')
        .map(|word| match word {
            "cpu" | "gpu" => word.to_uppercase(),
            _ => {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

/// `/individual-plots.json` as Dask serves it: `{"Title": "/individual-name", ...}`.
pub fn plots_json() -> serde_json::Map<String, serde_json::Value> {
    VIEWS
        .iter()
        .map(|(label, path)| (title_of(label), format!("/{path}").into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_27_views_of_the_seed_with_unique_paths() {
        let mut paths: Vec<_> = VIEWS.iter().map(|(_, p)| *p).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), 27);
        assert!(VIEWS.iter().all(|(l, p)| *p == format!("individual-{l}")));
        assert_eq!(label_of(DEFAULT_VIEW), Some("cpu"));
        assert_eq!(label_of("individual-nope"), None);
    }

    #[test]
    fn plots_json_lists_all_27_with_dask_titles() {
        let json = plots_json();
        assert_eq!(json.len(), 27);
        assert_eq!(json["Task Stream"], "/individual-task-stream");
        assert_eq!(json["CPU"], "/individual-cpu");
        assert_eq!(
            json["Workers CPU Timeseries"],
            "/individual-workers-cpu-timeseries"
        );
    }
}
