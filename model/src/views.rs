//! The cluster dashboard's views: the seed's 27 `individual-*` pages, with Dask's paths and
//! titles. A page is chosen by parsing its path into a [`View`] once; everything after that
//! matches on the enum, so a view added here without a page fails to compile.

use serde::{Deserialize, Serialize};

/// One of the dashboard's views, in the seed's `VIEWS` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum View {
    AggregateTimePerAction,
    BandwidthTypes,
    BandwidthWorkers,
    ClusterMemory,
    ComputeTimePerKey,
    Cpu,
    Exceptions,
    GpuMemory,
    GpuUtilization,
    Graph,
    Groups,
    MemoryByKey,
    Nprocessing,
    Occupancy,
    ProfileServer,
    Profile,
    Progress,
    SchedulerSystem,
    TaskStream,
    WorkersCpuTimeseries,
    WorkersDiskTimeseries,
    WorkersDisk,
    WorkersMemoryTimeseries,
    WorkersMemory,
    WorkersNetworkTimeseries,
    WorkersNetwork,
    Workers,
}

impl View {
    /// Every view, in the seed's order (the viewer's select lists them so).
    pub const ALL: [View; 27] = [
        View::AggregateTimePerAction,
        View::BandwidthTypes,
        View::BandwidthWorkers,
        View::ClusterMemory,
        View::ComputeTimePerKey,
        View::Cpu,
        View::Exceptions,
        View::GpuMemory,
        View::GpuUtilization,
        View::Graph,
        View::Groups,
        View::MemoryByKey,
        View::Nprocessing,
        View::Occupancy,
        View::ProfileServer,
        View::Profile,
        View::Progress,
        View::SchedulerSystem,
        View::TaskStream,
        View::WorkersCpuTimeseries,
        View::WorkersDiskTimeseries,
        View::WorkersDisk,
        View::WorkersMemoryTimeseries,
        View::WorkersMemory,
        View::WorkersNetworkTimeseries,
        View::WorkersNetwork,
        View::Workers,
    ];

    /// The view shown when none is chosen, as in the seed.
    pub const DEFAULT: View = View::Cpu;

    /// What the viewer's select shows: `task-stream`.
    pub fn label(self) -> &'static str {
        match self {
            View::AggregateTimePerAction => "aggregate-time-per-action",
            View::BandwidthTypes => "bandwidth-types",
            View::BandwidthWorkers => "bandwidth-workers",
            View::ClusterMemory => "cluster-memory",
            View::ComputeTimePerKey => "compute-time-per-key",
            View::Cpu => "cpu",
            View::Exceptions => "exceptions",
            View::GpuMemory => "gpu-memory",
            View::GpuUtilization => "gpu-utilization",
            View::Graph => "graph",
            View::Groups => "groups",
            View::MemoryByKey => "memory-by-key",
            View::Nprocessing => "nprocessing",
            View::Occupancy => "occupancy",
            View::ProfileServer => "profile-server",
            View::Profile => "profile",
            View::Progress => "progress",
            View::SchedulerSystem => "scheduler-system",
            View::TaskStream => "task-stream",
            View::WorkersCpuTimeseries => "workers-cpu-timeseries",
            View::WorkersDiskTimeseries => "workers-disk-timeseries",
            View::WorkersDisk => "workers-disk",
            View::WorkersMemoryTimeseries => "workers-memory-timeseries",
            View::WorkersMemory => "workers-memory",
            View::WorkersNetworkTimeseries => "workers-network-timeseries",
            View::WorkersNetwork => "workers-network",
            View::Workers => "workers",
        }
    }

    /// Dask's title: "Task Stream".
    pub fn title(self) -> &'static str {
        match self {
            View::AggregateTimePerAction => "Aggregate Time Per Action",
            View::BandwidthTypes => "Bandwidth Types",
            View::BandwidthWorkers => "Bandwidth Workers",
            View::ClusterMemory => "Cluster Memory",
            View::ComputeTimePerKey => "Compute Time Per Key",
            View::Cpu => "CPU",
            View::Exceptions => "Exceptions",
            View::GpuMemory => "GPU Memory",
            View::GpuUtilization => "GPU Utilization",
            View::Graph => "Graph",
            View::Groups => "Groups",
            View::MemoryByKey => "Memory By Key",
            View::Nprocessing => "Nprocessing",
            View::Occupancy => "Occupancy",
            View::ProfileServer => "Profile Server",
            View::Profile => "Profile",
            View::Progress => "Progress",
            View::SchedulerSystem => "Scheduler System",
            View::TaskStream => "Task Stream",
            View::WorkersCpuTimeseries => "Workers CPU Timeseries",
            View::WorkersDiskTimeseries => "Workers Disk Timeseries",
            View::WorkersDisk => "Workers Disk",
            View::WorkersMemoryTimeseries => "Workers Memory Timeseries",
            View::WorkersMemory => "Workers Memory",
            View::WorkersNetworkTimeseries => "Workers Network Timeseries",
            View::WorkersNetwork => "Workers Network",
            View::Workers => "Workers",
        }
    }

    /// Its page's path, without the leading slash: `individual-task-stream`.
    pub fn path(self) -> String {
        format!("individual-{}", self.label())
    }

    /// The view whose page is at `path` (with or without its leading slash).
    pub fn from_path(path: &str) -> Option<View> {
        let label = path.trim_start_matches('/').strip_prefix("individual-")?;
        Self::from_label(label)
    }

    /// The view with this label.
    pub fn from_label(label: &str) -> Option<View> {
        Self::ALL.into_iter().find(|view| view.label() == label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_27_views_of_the_seed_with_unique_labels_and_paths() {
        let mut labels: Vec<_> = View::ALL.iter().map(|v| v.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), 27);
        for view in View::ALL {
            assert_eq!(View::from_path(&view.path()), Some(view));
            assert_eq!(View::from_path(&format!("/{}", view.path())), Some(view));
            assert_eq!(serde_json::to_value(view).unwrap(), view.label());
        }
        assert_eq!(View::DEFAULT.path(), "individual-cpu");
        assert_eq!(View::from_path("individual-nope"), None);
        assert_eq!(View::from_path("cpu"), None);
    }

    #[test]
    fn titles_are_dasks() {
        assert_eq!(View::TaskStream.title(), "Task Stream");
        assert_eq!(View::Cpu.title(), "CPU");
        assert_eq!(View::WorkersCpuTimeseries.title(), "Workers CPU Timeseries");
        assert_eq!(View::GpuMemory.title(), "GPU Memory");
    }
}
