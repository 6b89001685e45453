//! Who this process is, and what it costs: its name in a cluster, its CPU and memory
//! (`sysinfo`) and the host's GPUs (NVML).

/// Who this process is in a cluster, read once (the host name is a file read).
pub(crate) struct ThisProcess {
    pub host: String,
    /// `host-pid`, a valid NATS subject token.
    pub name: String,
    pub pid: u32,
}

pub(crate) fn this_process() -> &'static ThisProcess {
    static THIS: std::sync::OnceLock<ThisProcess> = std::sync::OnceLock::new();
    THIS.get_or_init(|| {
        let host = sysinfo::System::host_name().unwrap_or_else(|| "unknown".into());
        let pid = std::process::id();
        ThisProcess {
            name: token(&format!("{host}-{pid}")),
            host,
            pid,
        }
    })
}

use crate::ProcessStats;

/// Turns any text (a host name, say) into a valid subject token.
pub fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if t.is_empty() { "x".into() } else { t }
}

/// Reads this process's CPU and memory through `sysinfo`, and the host's GPUs through NVML.
pub(crate) struct ProcessProbe {
    system: sysinfo::System,
    pid: Option<sysinfo::Pid>,
    nvml: Option<nvml_wrapper::Nvml>,
}

impl ProcessProbe {
    pub(crate) fn new() -> Self {
        let nvml = match nvml_wrapper::Nvml::init() {
            Ok(nvml) => Some(nvml),
            Err(error) => {
                tracing::debug!(%error, "no NVML: GPU views will say there is no GPU");
                None
            }
        };
        Self {
            system: sysinfo::System::new(),
            pid: sysinfo::get_current_pid().ok(),
            nvml,
        }
    }

    pub(crate) fn gpus(&self) -> Vec<crate::GpuStats> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let count = nvml.device_count().unwrap_or(0);
        (0..count)
            .filter_map(|i| {
                let device = nvml.device_by_index(i).ok()?;
                let memory = device.memory_info().ok()?;
                Some(crate::GpuStats {
                    name: device.name().unwrap_or_else(|_| format!("GPU {i}")),
                    utilization_percent: device
                        .utilization_rates()
                        .map_or(0.0, |u| f64::from(u.gpu)),
                    memory_used_bytes: memory.used,
                    memory_total_bytes: memory.total,
                })
            })
            .collect()
    }

    pub(crate) fn sample(&mut self) -> ProcessStats {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let Some(pid) = self.pid else {
            return ProcessStats {
                cores,
                ..ProcessStats::default()
            };
        };
        self.system.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[pid]),
            true,
            sysinfo::ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory(),
        );
        self.system
            .process(pid)
            .map(|p| ProcessStats {
                cpu_percent: p.cpu_usage(),
                memory_bytes: p.memory(),
                cores,
            })
            .unwrap_or(ProcessStats {
                cores,
                ..ProcessStats::default()
            })
    }
}
