//! Figures 1–4 of the benchmark, each cluster measured from its own client: the seed's from
//! Dask's asynchronous `Client` (`bench/dask_client.py`), Offload's from [`cluster::Client`].

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster::nats::{NatsCluster, NatsConfig};
use cluster::{Client, ClusterConfig, Submitter};
use serde::{Deserialize, Serialize};
use tasks::Fibonacci;

use crate::BenchError;

/// One round's cluster figures, named as in the report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClusterFigures {
    pub roundtrip_p50_ms: f64,
    pub roundtrip_p99_ms: f64,
    pub tiny_tasks_per_s: f64,
    pub fib32_ms: f64,
    pub fib30x8_ms: f64,
    /// Cancel of a running fibonacci(60) → its handle says cancelled. None for the seed: a
    /// Dask worker cannot stop a running task.
    #[serde(default)]
    pub cancel_ms: Option<f64>,
}

impl ClusterFigures {
    /// The median of each figure over rounds.
    pub fn median(rounds: &[Self]) -> Option<Self> {
        let of = |f: fn(&Self) -> f64| median(rounds.iter().map(f).collect());
        Some(Self {
            roundtrip_p50_ms: of(|r| r.roundtrip_p50_ms)?,
            roundtrip_p99_ms: of(|r| r.roundtrip_p99_ms)?,
            tiny_tasks_per_s: of(|r| r.tiny_tasks_per_s)?,
            fib32_ms: of(|r| r.fib32_ms)?,
            fib30x8_ms: of(|r| r.fib30x8_ms)?,
            cancel_ms: median(rounds.iter().filter_map(|r| r.cancel_ms).collect()),
        })
    }
}

/// How much of each figure one round measures.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Round trips of fibonacci(0), after 20 to warm up.
    pub trips: usize,
    /// Tiny tasks per throughput run (the issue's 10,000).
    pub tiny: usize,
    /// Throughput runs per round (their median counts).
    pub tiny_runs: usize,
    /// fibonacci(32) runs per round.
    pub fib32_runs: usize,
    /// 8 × fibonacci(30) runs per round.
    pub fib30x8_runs: usize,
    /// Cancels of a running fibonacci(60) per round.
    pub cancels: usize,
}

impl Sizes {
    /// The full benchmark for Offload: more reps than Dask's, as each costs microseconds.
    pub const OFFLOAD: Self = Self {
        trips: 2_000,
        tiny: 10_000,
        tiny_runs: 5,
        fib32_runs: 5,
        fib30x8_runs: 3,
        cancels: 5,
    };
    /// The full benchmark for the seed: a Dask round trip costs 10 ms, a tiny task 1 ms.
    pub const SEED: Self = Self {
        trips: 300,
        tiny: 10_000,
        tiny_runs: 1,
        fib32_runs: 5,
        fib30x8_runs: 3,
        cancels: 5,
    };
    /// `--smoke`: each figure for about a second, to check that the benchmark still runs.
    pub const SMOKE: Self = Self {
        trips: 50,
        tiny: 1_000,
        tiny_runs: 1,
        fib32_runs: 1,
        fib30x8_runs: 1,
        cancels: 1,
    };
}

/// Warm-up round trips before the measured ones.
const WARMUP: usize = 20;

/// One submitter stands for the seed's one Dask client: admission's per-session caps would
/// otherwise hold it to 100 waiting and 3 running.
pub fn cluster_config() -> ClusterConfig {
    ClusterConfig {
        workers: 4,
        queue_capacity: 200_000,
        max_queued_per_submitter: 200_000,
        max_running_per_submitter: Some(1_000),
        ..ClusterConfig::default()
    }
}

/// Connects to `offload cluster` as one more app server and waits for its 4 worker threads.
pub async fn connect_nats(url: &str) -> Result<NatsCluster, BenchError> {
    // The app server's defaults (`--in-flight-per-thread`, `--max-in-flight`).
    let cluster = NatsCluster::connect(
        NatsConfig::new(url, "offload", format!("bench-{}", std::process::id())),
        cluster_config(),
        tasks::registry(),
    )
    .await
    .map_err(|e| BenchError::Measure {
        what: "connecting to the NATS stack".into(),
        detail: e.to_string(),
    })?;
    wait_for_threads(&cluster.scheduler().client(), 4).await?;
    Ok(cluster)
}

/// Waits up to 30 s for `client`'s cluster to count `threads` worker threads.
pub async fn wait_for_threads(client: &Client, threads: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.workers() < threads {
        if Instant::now() > deadline {
            return Err(BenchError::Measure {
                what: "the NATS stack".into(),
                detail: format!(
                    "{} worker threads after 30 s, {threads} expected",
                    client.workers()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Figures 1–4 on an Offload cluster, through its client.
pub async fn offload(client: &Client, sizes: Sizes) -> Result<ClusterFigures, BenchError> {
    let who = Submitter::new("bench");
    let who = &who;
    let run = |n: i64| async move {
        let handle = client
            .submit::<Fibonacci>(Fibonacci::n(n), who)
            .await
            .map_err(failed)?;
        handle.result().await.map_err(failed)
    };

    let mut trips = Vec::with_capacity(sizes.trips);
    for i in 0..WARMUP + sizes.trips {
        let start = Instant::now();
        run(0).await?;
        if i >= WARMUP {
            trips.push(start.elapsed());
        }
    }
    trips.sort();

    let mut rates = Vec::new();
    for _ in 0..sizes.tiny_runs {
        rates.push(tiny_tasks_per_s(client, who, sizes.tiny).await?);
    }

    let mut fib32 = Vec::new();
    for _ in 0..sizes.fib32_runs {
        let start = Instant::now();
        let value = run(32).await?;
        fib32.push(ms(start.elapsed()));
        if value != 2_178_309 {
            return Err(failed(format!("fibonacci(32) = {value}")));
        }
    }

    let mut fib30x8 = Vec::new();
    for _ in 0..sizes.fib30x8_runs {
        let start = Instant::now();
        futures::future::try_join_all((0..8).map(|_| run(30))).await?;
        fib30x8.push(ms(start.elapsed()));
    }

    let mut cancels = Vec::new();
    for _ in 0..sizes.cancels {
        cancels.push(cancel_ms(client, who).await?);
    }

    Ok(ClusterFigures {
        roundtrip_p50_ms: ms(percentile(&trips, 0.5)),
        roundtrip_p99_ms: ms(percentile(&trips, 0.99)),
        tiny_tasks_per_s: median(rates).unwrap_or(0.0),
        fib32_ms: median(fib32).unwrap_or(0.0),
        fib30x8_ms: median(fib30x8).unwrap_or(0.0),
        cancel_ms: median(cancels),
    })
}

/// `tiny` fibonacci(0..9) submitted at once, per second from the first submission to the last
/// result.
async fn tiny_tasks_per_s(
    client: &Client,
    who: &Submitter,
    tiny: usize,
) -> Result<f64, BenchError> {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tiny);
    for i in 0..tiny {
        handles.push(
            client
                .submit::<Fibonacci>(Fibonacci::n(i as i64 % 10), who)
                .await
                .map_err(failed)?,
        );
    }
    for handle in handles {
        handle.result().await.map_err(failed)?;
    }
    Ok(tiny as f64 / start.elapsed().as_secs_f64())
}

/// From cancelling a running fibonacci(60) (once it reported progress) to its end, in ms.
async fn cancel_ms(client: &Client, who: &Submitter) -> Result<f64, BenchError> {
    let handle = client
        .submit::<Fibonacci>(Fibonacci::n(60), who)
        .await
        .map_err(failed)?;
    // Under way: its first progress report past 0.
    let mut progress = handle.progress();
    progress
        .wait_for(|p| *p > 0.0)
        .await
        .map_err(|_| failed("fibonacci(60) ended before it reported progress"))?;
    let start = Instant::now();
    client.cancel(handle.id()).await.map_err(failed)?;
    match handle.result().await {
        Err(cluster::TaskError::Cancelled) => Ok(ms(start.elapsed())),
        other => Err(failed(format!("fibonacci(60) cancelled: {other:?}"))),
    }
}

/// Figures 1–4 on the seed's Dask cluster, from a fresh Python process with Dask's client.
pub fn seed(
    python: &Path,
    script: &Path,
    scheduler: &str,
    sizes: Sizes,
) -> Result<ClusterFigures, BenchError> {
    let output = Command::new(python)
        .arg(script)
        .args(["--scheduler", scheduler])
        .args(["--warmup", &WARMUP.to_string()])
        .args(["--trips", &sizes.trips.to_string()])
        .args(["--tiny", &sizes.tiny.to_string()])
        .args(["--tiny-runs", &sizes.tiny_runs.to_string()])
        .args(["--fib32-runs", &sizes.fib32_runs.to_string()])
        .args(["--fib30x8-runs", &sizes.fib30x8_runs.to_string()])
        .output()
        .map_err(|source| BenchError::Spawn {
            what: script.display().to_string(),
            source,
        })?;
    let fail = |detail: String| BenchError::Measure {
        what: "the Dask client".into(),
        detail,
    };
    if !output.status.success() {
        return Err(fail(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| fail(format!("{e} in {last:?}")))
}

fn failed(error: impl std::fmt::Display) -> BenchError {
    BenchError::Measure {
        what: "an Offload task".into(),
        detail: error.to_string(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len().saturating_sub(1)) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median, the mean of the middle two for an even count; `None` for no values.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The API's round trip on an app server at `base` (`http://127.0.0.1:PORT`), as token `token`:
/// `POST /api/v1/tasks` with fibonacci(0) until its result arrives on `/api/v1/events`, `trips`
/// times after 20 to warm up. Returns p50 and p99 in milliseconds.
pub async fn api_round_trips(
    base: &str,
    token: &str,
    trips: usize,
) -> Result<(f64, f64), BenchError> {
    let failed = |detail: String| BenchError::Measure {
        what: "the API round trip".into(),
        detail,
    };
    let http = reqwest::Client::new();
    let stream = http
        .get(format!("{base}/api/v1/events"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !stream.status().is_success() {
        return Err(failed(format!("the event stream: {}", stream.status())));
    }
    let mut events = load::Events::new(stream);
    events
        .next()
        .await
        .ok_or_else(|| failed("no snapshot".into()))?;
    let mut times = Vec::with_capacity(trips);
    for i in 0..WARMUP + trips {
        let start = Instant::now();
        let response = http
            .post(format!("{base}/api/v1/tasks"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(r#"{"type": "fibonacci", "input": {"n": 0}}"#)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let id = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|task| task["id"].as_u64())
            .ok_or_else(|| failed(format!("{status}: {body}")))?;
        loop {
            let event = events
                .next()
                .await
                .ok_or_else(|| failed("the event stream ended".into()))?;
            if event["id"] == id && event["summary"].is_string() {
                break;
            }
        }
        if i >= WARMUP {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

/// A batch of `members` fibonacci(i mod 10) on an app server at `base`, as token `token`:
/// from `POST /api/v1/batches` to its event stream saying it finished, every member on record.
/// Returns members per second.
pub async fn batch_map(base: &str, token: &str, members: usize) -> Result<f64, BenchError> {
    let (rate, _) = batch(base, &Auth::Token(token), members).await?;
    Ok(rate)
}

/// Who calls: a token, or a browser session's cookie (the batch page is a session's).
enum Auth<'a> {
    Token(&'a str),
    Cookie(&'a str),
}

impl Auth<'_> {
    fn on(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Token(token) => request.bearer_auth(token),
            Self::Cookie(cookie) => request.header("cookie", format!("offload_session={cookie}")),
        }
    }
}

/// The batch page (first page of rows, counts, plot) and its CSV for a finished batch of
/// `members` fibonacci(i mod 10), each read `reads` times as a browser session: p50 of each,
/// in milliseconds.
pub async fn batch_views(
    base: &str,
    members: usize,
    reads: usize,
) -> Result<(f64, f64), BenchError> {
    let cookie = format!("{:016x}{:016x}", std::process::id(), members);
    let auth = Auth::Cookie(&cookie);
    let (_, id) = batch(base, &auth, members).await?;
    let http = reqwest::Client::new();
    let timed = |path: String| {
        let (http, auth) = (http.clone(), &auth);
        async move {
            let mut took = Vec::with_capacity(reads);
            for _ in 0..reads + 2 {
                let start = Instant::now();
                let response = auth
                    .on(http.get(format!("{base}{path}")))
                    .send()
                    .await
                    .map_err(|e| BenchError::Measure {
                        what: format!("GET {path}"),
                        detail: e.to_string(),
                    })?;
                let ok = response.status().is_success();
                let body = response.bytes().await.unwrap_or_default();
                if !ok || body.is_empty() {
                    return Err(BenchError::Measure {
                        what: format!("GET {path}"),
                        detail: String::from_utf8_lossy(&body).into_owned(),
                    });
                }
                took.push(start.elapsed().as_secs_f64() * 1e3);
            }
            // The first two warm the caches.
            median(took.split_off(2)).ok_or_else(|| BenchError::Measure {
                what: format!("GET {path}"),
                detail: "nothing measured".into(),
            })
        }
    };
    let page = timed(format!("/batches/{id}")).await?;
    let csv = timed(format!("/api/v1/batches/{id}/results.csv")).await?;
    Ok((page, csv))
}

/// Runs a batch of `members` fibonacci(i mod 10) as `auth` to its end: members per second from
/// the request to the last event, and its id.
async fn batch(base: &str, auth: &Auth<'_>, members: usize) -> Result<(f64, u64), BenchError> {
    let failed = |detail: String| BenchError::Measure {
        what: "the batch map".into(),
        detail,
    };
    let inputs: Vec<serde_json::Value> = (0..members)
        .map(|i| serde_json::json!({"n": i % 10}))
        .collect();
    let body = serde_json::json!({"type": "fibonacci", "inputs": inputs}).to_string();
    let http = reqwest::Client::new();
    let start = Instant::now();
    let response = auth
        .on(http.post(format!("{base}/api/v1/batches")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let batch: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| failed(format!("{status}: {text}")))?;
    let events = batch["links"]["events"]
        .as_str()
        .ok_or_else(|| failed(format!("{status}: {text}")))?;
    let stream = auth
        .on(http.get(format!("{base}{events}")))
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let id = batch["id"].as_u64().unwrap_or_default();
    let mut events = load::Events::new(stream);
    let mut last = batch;
    while let Some(event) = events.next().await {
        last = event;
    }
    let took = start.elapsed().as_secs_f64();
    if last["counts"]["finished"] != members as u64 {
        return Err(failed(format!("the batch ended so: {last}")));
    }
    Ok((members as f64 / took, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn figures_median_takes_each_figure_on_its_own() {
        let a = ClusterFigures {
            roundtrip_p50_ms: 1.0,
            roundtrip_p99_ms: 9.0,
            tiny_tasks_per_s: 100.0,
            fib32_ms: 5.0,
            fib30x8_ms: 50.0,
            cancel_ms: None,
        };
        let b = ClusterFigures {
            roundtrip_p50_ms: 3.0,
            roundtrip_p99_ms: 1.0,
            ..a
        };
        let c = ClusterFigures {
            roundtrip_p50_ms: 2.0,
            roundtrip_p99_ms: 5.0,
            tiny_tasks_per_s: 300.0,
            ..a
        };
        let m = ClusterFigures::median(&[a, b, c]).unwrap();
        assert_eq!((m.roundtrip_p50_ms, m.roundtrip_p99_ms), (2.0, 5.0));
        assert_eq!(m.tiny_tasks_per_s, 100.0);
        assert_eq!(ClusterFigures::median(&[]), None);
    }
}
