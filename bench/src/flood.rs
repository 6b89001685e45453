//! The NATS stack's flood of tiny tasks taken apart (issue 28): its throughput at each bound on
//! the tasks in flight, the CPU each process spends per task (utime + stime from `/proc`), and
//! the messages that carried the tasks, as the benchmark's own app server counted them.

use std::time::Instant;

use cluster::nats::{NatsCluster, NatsConfig};
use cluster::{Client, Submitter};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tasks::Fibonacci;

use crate::BenchError;
use crate::figures::{cluster_config, wait_for_threads};

/// The bounds on the tasks in flight measured; the app server's default is 256 here (64 per
/// worker thread, 4 threads).
pub const IN_FLIGHT: [usize; 4] = [64, 256, 512, 1_024];
/// The bound whose flood is taken apart.
const DEFAULT_IN_FLIGHT: usize = 256;

/// What one breakdown found.
#[derive(Debug, Clone, Serialize)]
pub struct Breakdown {
    /// Tiny tasks a second, by the bound on the tasks in flight.
    pub tasks_per_s: Vec<(usize, f64)>,
    /// CPU time per task, in µs, by process (the benchmark is the app server).
    pub cpu_us_per_task: Vec<(String, f64)>,
    /// Per task: work messages, results messages taken as requests and from the stream,
    /// progress messages.
    pub messages_per_task: Vec<(&'static str, f64)>,
    /// A lone task's round trip, the mean of [`TRIPS`] one after the other, in ms, by stage:
    /// from its slot to JetStream's ack of its work message, the worker and back, and the
    /// rest (the app server's own work: admission, the slot, handing the result over).
    pub round_trip_ms: Vec<(&'static str, f64)>,
}

/// Round trips one after the other for the breakdown by stage.
const TRIPS: usize = 500;

impl Breakdown {
    /// The figures as lines for the console.
    pub fn lines(&self) -> Vec<String> {
        let stages: Vec<String> = self
            .round_trip_ms
            .iter()
            .map(|(stage, ms)| format!("{stage} {ms:.3} ms"))
            .collect();
        let rates: Vec<String> = self
            .tasks_per_s
            .iter()
            .map(|(bound, rate)| format!("{bound} in flight {rate:.0}/s"))
            .collect();
        let cpu: Vec<String> = self
            .cpu_us_per_task
            .iter()
            .map(|(process, us)| format!("{process} {us:.1} µs"))
            .collect();
        let messages: Vec<String> = self
            .messages_per_task
            .iter()
            .map(|(what, per)| format!("{what} {per:.4}"))
            .collect();
        vec![
            format!(
                "nats flood: tiny tasks/s by tasks in flight: {}",
                rates.join(", ")
            ),
            format!(
                "nats flood: CPU per task (utime + stime): {}",
                cpu.join(", ")
            ),
            format!("nats flood: messages per task: {}", messages.join(", ")),
            format!("nats round trip, mean by stage: {}", stages.join(", ")),
        ]
    }
}

/// The recorder the benchmark's app server counts its messages with.
fn recorder() -> Result<PrometheusHandle, BenchError> {
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| failed(e.to_string()))
}

/// Floods the NATS stack at `url` with `tiny` tiny tasks at each bound of [`IN_FLIGHT`], from a
/// new app server each time; the processes `pids` (with their names) and this one are timed
/// during the default bound's flood.
pub async fn breakdown(
    url: &str,
    pids: &[(String, u32)],
    tiny: usize,
) -> Result<Breakdown, BenchError> {
    let counters = recorder()?;
    let mut tasks_per_s = Vec::new();
    let (mut cpu_us_per_task, mut messages_per_task) = (Vec::new(), Vec::new());
    let mut round_trip_ms = Vec::new();
    for bound in IN_FLIGHT {
        let config = NatsConfig {
            in_flight_per_thread: bound,
            max_in_flight: bound,
            ..NatsConfig::new(
                url,
                "offload",
                format!("bench-{}-{bound}", std::process::id()),
            )
        };
        let cluster = NatsCluster::connect(config, cluster_config(), tasks::registry())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let client = cluster.scheduler().client();
        wait_for_threads(&client, 4).await?;
        // A first flood warms the new app server's consumers up.
        flood(&client, tiny / 10).await?;
        let before = (cpu_ticks(pids), counted(&counters));
        let started = Instant::now();
        flood(&client, tiny).await?;
        tasks_per_s.push((bound, tiny as f64 / started.elapsed().as_secs_f64()));
        if bound == DEFAULT_IN_FLIGHT {
            let after = (cpu_ticks(pids), counted(&counters));
            let per_task = |delta: f64| delta / tiny as f64;
            // SAFETY: sysconf reads a constant of the system.
            let tick_us = 1e6 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
            for ((name, a), (_, b)) in before.0.iter().zip(&after.0) {
                cpu_us_per_task.push((name.clone(), per_task((b - a) as f64 * tick_us)));
            }
            for ((what, a), (_, b)) in before.1.iter().zip(&after.1) {
                messages_per_task.push((*what, per_task(b - a)));
            }
            round_trip_ms = stages(&client, &counters).await?;
        }
    }
    Ok(Breakdown {
        tasks_per_s,
        cpu_us_per_task,
        messages_per_task,
        round_trip_ms,
    })
}

/// [`TRIPS`] fibonacci(0) one after the other: the mean round trip and its stages, in ms.
async fn stages(
    client: &Client,
    counters: &PrometheusHandle,
) -> Result<Vec<(&'static str, f64)>, BenchError> {
    let timed = |scrape: &str, stage: &str| {
        let sample = |part: &str| {
            let name = format!("offload_nats_stage_seconds_{part}{{stage=\"{stage}\"}}");
            value(scrape, &name)
        };
        (sample("sum"), sample("count"))
    };
    let stage_names = ["to JetStream", "worker and back"];
    let before = counters.render();
    let who = Submitter::new("bench-trips");
    let started = Instant::now();
    for _ in 0..TRIPS {
        let handle = client
            .submit::<Fibonacci>(Fibonacci::n(0), &who)
            .await
            .map_err(|e| failed(e.to_string()))?;
        handle.result().await.map_err(|e| failed(e.to_string()))?;
    }
    let total = started.elapsed().as_secs_f64() * 1e3 / TRIPS as f64;
    let after = counters.render();
    let mut stages = vec![("whole", total)];
    let mut rest = total;
    for stage in stage_names {
        let ((sum_a, count_a), (sum_b, count_b)) = (timed(&before, stage), timed(&after, stage));
        let mean = (sum_b - sum_a) * 1e3 / (count_b - count_a).max(1.0);
        rest -= mean;
        stages.push((stage, mean));
    }
    stages.push(("in the app server", rest));
    Ok(stages)
}

/// The value of `sample` (its name and labels as rendered) in `scrape`; 0 when absent.
fn value(scrape: &str, sample: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// `tiny` fibonacci(0..9) submitted at once, all awaited.
async fn flood(client: &Client, tiny: usize) -> Result<(), BenchError> {
    let who = Submitter::new("bench-flood");
    let mut handles = Vec::with_capacity(tiny);
    for i in 0..tiny {
        let handle = client
            .submit::<Fibonacci>(Fibonacci::n(i as i64 % 10), &who)
            .await
            .map_err(|e| failed(e.to_string()))?;
        handles.push(handle);
    }
    for handle in handles {
        handle.result().await.map_err(|e| failed(e.to_string()))?;
    }
    Ok(())
}

/// utime + stime, in clock ticks, of each of `pids` and of this process (the app server).
fn cpu_ticks(pids: &[(String, u32)]) -> Vec<(String, u64)> {
    let mut ticks: Vec<(String, u64)> = pids
        .iter()
        .map(|(name, pid)| (name.clone(), stat_ticks(&format!("/proc/{pid}/stat"))))
        .collect();
    ticks.push((
        "app server (the benchmark)".into(),
        stat_ticks("/proc/self/stat"),
    ));
    ticks
}

/// utime + stime from a `/proc/…/stat`; 0 when it cannot be read.
fn stat_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name may hold spaces: the fields start after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are the 14th and 15th fields; the 3rd is the first after the name.
    field(11) + field(12)
}

/// The app server's message counters, in a fixed order.
fn counted(counters: &PrometheusHandle) -> Vec<(&'static str, f64)> {
    let scrape = counters.render();
    let value = |sample: &str| value(&scrape, sample);
    vec![
        ("work messages", value("offload_nats_work_messages_total")),
        (
            "results requests",
            value("offload_nats_result_messages_total{path=\"request\"}"),
        ),
        (
            "results from the stream",
            value("offload_nats_result_messages_total{path=\"stream\"}"),
        ),
        (
            "progress messages",
            value("offload_nats_progress_messages_total"),
        ),
    ]
}

fn failed(detail: String) -> BenchError {
    BenchError::Measure {
        what: "the NATS flood's breakdown".into(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("stat");
        std::fs::write(
            &stat,
            "42 (a (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 70 30 0 0 20 0 3 0",
        )
        .unwrap();
        assert_eq!(stat_ticks(stat.to_str().unwrap()), 100);
        assert_eq!(stat_ticks("/nonexistent/stat"), 0);
    }
}
