//! `offload-bench`: `make bench` runs it, `make bench-readme` rewrites the README's table from
//! its report. See the library's docs for what it measures and how.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bench::browser::{self, Target};
use bench::figures::{self, ClusterFigures, Sizes};
use bench::report::{Machine, Report};
use bench::stack::{ClusterAccess, Programs, Stack};
use bench::{BenchError, figures::connect_nats};
use clap::{Parser, Subcommand};
use cluster::EmbeddedCluster;

/// The seed's Panel + Dask stack and Offload's two, side by side, in one run.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the stacks, measure them, print the table and write the report (the default).
    Run(RunArgs),
    /// The history at size: one owner with ROWS ended tasks, its pages timed with each filter
    /// and with a search; added to the report.
    History {
        /// Ended tasks of the one owner.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Requests per page measured.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// The report to add the figures to (made if missing).
        #[arg(long, default_value = "target/bench/latest.json")]
        out: PathBuf,
        /// The release offload binary.
        #[arg(long, default_value = "target/release/offload")]
        offload: PathBuf,
    },
    /// Memory against the owners on record: the embedded server started on OWNERS ended
    /// tasks of as many owners, then after a round of VISITORS new visitors; added to the
    /// report.
    Owners {
        /// Owners on record, one ended task each.
        #[arg(long, default_value_t = 1_000_000)]
        owners: u64,
        /// New visitors in the round, five tiny tasks each.
        #[arg(long, default_value_t = 1_000)]
        visitors: usize,
        /// The report to add the figures to (made if missing).
        #[arg(long, default_value = "target/bench/latest.json")]
        out: PathBuf,
        /// The release offload binary.
        #[arg(long, default_value = "target/release/offload")]
        offload: PathBuf,
    },
    /// The record in PostgreSQL (a throwaway server, Debian's): the history of one owner with
    /// ROWS ended tasks, its pages timed as `history` times them, and the API's round trip;
    /// added to the report.
    Postgres {
        /// Ended tasks of the one owner.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Requests per page measured.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// API round trips measured.
        #[arg(long, default_value_t = 500)]
        trips: usize,
        /// The report to add the figures to (made if missing).
        #[arg(long, default_value = "target/bench/latest.json")]
        out: PathBuf,
        /// The release offload binary.
        #[arg(long, default_value = "target/release/offload")]
        offload: PathBuf,
    },
    /// Several app servers: a server on a throwaway PostgreSQL, its standby and HAProxy in
    /// front of both; a load round through the balancer, then the takeover timed (the server
    /// that writes killed, until a new visitor's task is answered) TAKEOVERS times; added to
    /// the report.
    Failover {
        /// Sessions of the load round (each 5 × fibonacci(10)).
        #[arg(long, default_value_t = 1_000)]
        sessions: usize,
        /// Takeovers timed, the two servers trading places.
        #[arg(long, default_value_t = 5)]
        takeovers: usize,
        /// The report to add the figures to (made if missing).
        #[arg(long, default_value = "target/bench/latest.json")]
        out: PathBuf,
        /// The release offload binary.
        #[arg(long, default_value = "target/release/offload")]
        offload: PathBuf,
    },
    /// Rewrite the README's figures table from a report.
    Readme {
        /// The report to read.
        #[arg(long, default_value = "target/bench/latest.json")]
        report: PathBuf,
        /// The README to rewrite between its bench markers.
        #[arg(long, default_value = "README.md")]
        readme: PathBuf,
    },
}

#[derive(Debug, Parser)]
struct RunArgs {
    /// About a second of each Offload figure, to check that the benchmark runs (`make test`).
    #[arg(long)]
    smoke: bool,
    /// Leave the seed's stack out (no Python needed).
    #[arg(long)]
    no_seed: bool,
    /// Only the cluster figures: no browser (quicker, while working on the cluster).
    #[arg(long)]
    no_browser: bool,
    /// Rounds of the cluster figures, stacks alternating within each; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where to write the report.
    #[arg(long, default_value = "target/bench/latest.json")]
    out: PathBuf,
    /// The release offload binary.
    #[arg(long, default_value = "target/release/offload")]
    offload: PathBuf,
    /// The pinned nats-server.
    #[arg(
        long,
        env = "OFFLOAD_NATS_SERVER",
        default_value = "target/nats/bin/nats-server"
    )]
    nats_server: PathBuf,
    /// The seed's virtualenv's python (`make bench-seed` makes it).
    #[arg(long, default_value = "target/seed/bin/python")]
    seed_python: PathBuf,
    /// The folder of dask_client.py and seed/.
    #[arg(long, default_value = "bench")]
    bench_dir: PathBuf,
    /// The Playwright project.
    #[arg(long, default_value = "end2end")]
    end2end: PathBuf,
}

impl Default for RunArgs {
    fn default() -> Self {
        Self::parse_from(["run"])
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Readme { report, readme }) => Report::read(&report)
            .and_then(|r| r.rewrite_readme(&readme))
            .map(|()| {
                println!(
                    "{}: figures table rewritten from {}",
                    readme.display(),
                    report.display()
                )
            }),
        Some(Command::Run(args)) => run(args).await,
        Some(Command::History {
            rows,
            requests,
            out,
            offload,
        }) => history(rows, requests, &absolute(&out), &absolute(&offload)).await,
        Some(Command::Postgres {
            rows,
            requests,
            trips,
            out,
            offload,
        }) => postgres(rows, requests, trips, &absolute(&out), &absolute(&offload)).await,
        Some(Command::Owners {
            owners,
            visitors,
            out,
            offload,
        }) => many_owners(owners, visitors, &absolute(&out), &absolute(&offload)).await,
        Some(Command::Failover {
            sessions,
            takeovers,
            out,
            offload,
        }) => failover(sessions, takeovers, &absolute(&out), &absolute(&offload)).await,
        None => run(RunArgs::default()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("offload-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The programs of an Offload stack without the seed, checked, and the folder of its logs
/// beside the report `out`.
fn offload_alone(offload: &Path, out: &Path) -> Result<(Programs, PathBuf), BenchError> {
    let programs = Programs {
        offload: offload.to_path_buf(),
        nats_server: absolute(Path::new("target/nats/bin/nats-server")),
        seed_python: PathBuf::new(),
        seed_dir: PathBuf::new(),
    };
    programs.check_offload()?;
    let logs = out.with_file_name("logs");
    std::fs::create_dir_all(&logs).map_err(BenchError::io(&logs))?;
    Ok((programs, logs))
}

/// Times the history's pages of the owner of a history of `rows` on the server at `url`, and
/// the task page of that owner and of a newcomer, printing each line after `tag`: (the pages'
/// figures, the task pages').
async fn history_pages(
    url: &str,
    rows: u64,
    requests: usize,
    tag: &str,
) -> Result<(Vec<serde_json::Value>, serde_json::Value), BenchError> {
    use bench::history::{NEWCOMER, OWNER, measure, queries};
    use serde_json::json;

    let mut measured = Vec::new();
    for query in queries(rows) {
        let (p50, p99) = measure(url, OWNER, &query.path, requests).await?;
        println!(
            "{tag}: {:<55} p50 {p50:7.2} ms, p99 {p99:7.2} ms",
            query.label
        );
        measured
            .push(json!({"key": query.key, "label": query.label, "p50_ms": p50, "p99_ms": p99}));
    }
    let (owner_p50, owner_p99) = measure(url, OWNER, "/", requests).await?;
    let (new_p50, new_p99) = measure(url, NEWCOMER, "/", requests).await?;
    println!(
        "{tag}: the task page: that owner p50 {owner_p50:.2} ms, p99 {owner_p99:.2} ms; a newcomer p50 {new_p50:.2} ms, p99 {new_p99:.2} ms"
    );
    let task_page = json!({
        "owner_p50_ms": owner_p50, "owner_p99_ms": owner_p99,
        "newcomer_p50_ms": new_p50, "newcomer_p99_ms": new_p99,
    });
    Ok((measured, task_page))
}

async fn history(rows: u64, requests: usize, out: &Path, offload: &Path) -> Result<(), BenchError> {
    use bench::history::fill;
    use serde_json::json;

    let (programs, logs) = offload_alone(offload, out)?;
    let data = tempfile::tempdir().map_err(BenchError::io(std::env::temp_dir()))?;
    // A first start makes the database and its schema.
    drop(Stack::embedded(&programs, data.path(), &logs).await?);
    let db = data.path().join("embedded").join("offload.sqlite3");
    println!(
        "history: writing {rows} ended tasks of one owner into {}",
        db.display()
    );
    let filled = tokio::task::spawn_blocking(move || fill(&db, rows))
        .await
        .expect("the filling thread")?;
    println!(
        "history: written in {:.1} s; starting offload on it",
        filled.as_secs_f64()
    );
    let started = std::time::Instant::now();
    let stack = Stack::embedded(&programs, data.path(), &logs).await?;
    let start_s = started.elapsed().as_secs_f64();
    let (measured, task_page) = history_pages(&stack.url, rows, requests, "history").await?;
    drop(stack);
    add_to_report(out, "history", |report, at| {
        report.history = Some(json!({
            "rows": rows,
            "fill_s": filled.as_secs_f64(),
            "start_s": start_s,
            "at": at,
            "queries": measured,
            "task_page": task_page,
        }));
    })
}

/// Adds a section to the report at `out` (made if missing), given the time now; `tag` says so.
fn add_to_report(
    out: &Path,
    tag: &str,
    add: impl FnOnce(&mut Report, String),
) -> Result<(), BenchError> {
    let mut report = Report::read(out).unwrap_or_else(|_| Report::new(Machine::this(), false));
    add(&mut report, Report::new(Machine::this(), false).at);
    report.write(out)?;
    println!("{tag}: added to {}", out.display());
    Ok(())
}

async fn postgres(
    rows: u64,
    requests: usize,
    trips: usize,
    out: &Path,
    offload: &Path,
) -> Result<(), BenchError> {
    use serde_json::json;

    let (programs, logs) = offload_alone(offload, out)?;
    let data = tempfile::tempdir().map_err(BenchError::io(std::env::temp_dir()))?;
    let url = app::ssr::store::testing::database().await;
    println!("postgres: writing {rows} ended tasks of one owner into {url}");
    let filled = bench::postgres::fill(&url, rows).await?;
    println!(
        "postgres: written in {:.1} s; starting offload on it",
        filled.as_secs_f64()
    );
    let started = std::time::Instant::now();
    let stack = Stack::embedded_with(&programs, data.path(), &logs, &["--database", &url]).await?;
    let start_s = started.elapsed().as_secs_f64();
    let (measured, task_page) = history_pages(&stack.url, rows, requests, "postgres").await?;
    let token_failed = |detail: String| BenchError::Measure {
        what: "making an API token in PostgreSQL".into(),
        detail,
    };
    let token = std::process::Command::new(offload)
        .args(["token", "create", "bench", "--database", &url])
        .output()
        .map_err(|e| token_failed(e.to_string()))?;
    if !token.status.success() {
        return Err(token_failed(
            String::from_utf8_lossy(&token.stderr).into_owned(),
        ));
    }
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let base = stack.url.trim_end_matches('/');
    let (api_p50, api_p99) = bench::figures::api_round_trips(base, &token, trips).await?;
    println!("postgres: the API round trip p50 {api_p50:.3} ms, p99 {api_p99:.3} ms");
    drop(stack);
    add_to_report(out, "postgres", |report, at| {
        // `history`'s section, and the API's round trip.
        report.postgres = Some(json!({
            "rows": rows,
            "fill_s": filled.as_secs_f64(),
            "start_s": start_s,
            "at": at,
            "queries": measured,
            "task_page": task_page,
            "api_p50_ms": api_p50,
            "api_p99_ms": api_p99,
        }));
    })
}

async fn failover(
    sessions: usize,
    takeovers: usize,
    out: &Path,
    offload: &Path,
) -> Result<(), BenchError> {
    use bench::failover::Pair;
    use load::ms;
    use serde_json::json;

    let (_, logs) = offload_alone(offload, out)?;
    let url = app::ssr::store::testing::database().await;
    let mut pair = Pair::start(offload, &url, &logs).await?;
    println!(
        "failover: a server, its standby and HAProxy on {}",
        pair.base
    );
    // The first crowd pages code in and grows the allocator: not what is measured.
    let warm = pair.load(sessions, true).await;
    println!("failover: warm-up round: {}", warm.summary());
    pair.settle().await;
    let round = pair.load(sessions, true).await;
    println!("failover: through HAProxy: {}", round.summary());
    pair.settle().await;
    let direct = pair.load(sessions, false).await;
    println!("failover: straight to the server: {}", direct.summary());
    let mut times = Vec::with_capacity(takeovers);
    for _ in 0..takeovers {
        let took = pair.takeover().await?;
        println!("failover: taken over in {}", ms(took));
        times.push(took.as_secs_f64() * 1e3);
    }
    drop(pair);
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    println!("failover: takeover p50 {median:.0} ms");
    add_to_report(out, "failover", |report, at| {
        report.failover = Some(json!({
            "at": at,
            "sessions": sessions,
            "results": round.results,
            "errors": round.errors + warm.errors,
            "p50_ms": round.percentile(0.5).as_secs_f64() * 1e3,
            "p99_ms": round.percentile(0.99).as_secs_f64() * 1e3,
            "direct_errors": direct.errors,
            "direct_p50_ms": direct.percentile(0.5).as_secs_f64() * 1e3,
            "direct_p99_ms": direct.percentile(0.99).as_secs_f64() * 1e3,
            "takeovers_ms": times,
            "takeover_p50_ms": median,
        }));
    })
}

async fn many_owners(
    owners: u64,
    visitors: usize,
    out: &Path,
    offload: &Path,
) -> Result<(), BenchError> {
    let failed = |what: &str, detail: String| BenchError::Measure {
        what: format!("the record of many owners: {what}"),
        detail,
    };
    let config = load::LoadConfig {
        server: offload.to_path_buf(),
        sessions: visitors,
        ..load::LoadConfig::default()
    };
    let data = tempfile::tempdir().map_err(BenchError::io(std::env::temp_dir()))?;
    let start = || async {
        load::Target::start_in(&config, data.path())
            .await
            .map_err(|e| failed("starting offload", e.to_string()))
    };
    // A first start makes the database and its schema.
    start().await?.stop().await;
    let db = data.path().join("offload.sqlite3");
    println!("owners: writing {owners} ended tasks of as many owners");
    let filled = tokio::task::spawn_blocking(move || load::owners::fill(&db, owners))
        .await
        .expect("the filling thread")
        .map_err(|e| failed("writing", e.to_string()))?;
    let started = std::time::Instant::now();
    let target = start().await?;
    let start_s = started.elapsed().as_secs_f64();
    let rss = |target: &load::Target| {
        target
            .rss_kb()
            .map(|kb| kb as f64 / 1024.0)
            .map_err(|e| failed("memory", e.to_string()))
    };
    let rss_start = rss(&target)?;
    let round = load::round(&target, &config, &[]).await;
    if round.errors > 0 {
        return Err(failed("the round", format!("{} errors", round.errors)));
    }
    load::rss_after_expiry(&target, &config)
        .await
        .map_err(|e| failed("memory", e.to_string()))?;
    let rss_after = rss(&target)?;
    target.stop().await;
    let ms = |q| round.percentile(q).as_secs_f64() * 1e3;
    println!(
        "owners: written in {:.1} s, started in {start_s:.2} s; resident memory at start {rss_start:.1} MB, after {visitors} new visitors {rss_after:.1} MB (their p50 {:.2} ms, p99 {:.2} ms)",
        filled.as_secs_f64(),
        ms(0.5),
        ms(0.99)
    );
    add_to_report(out, "owners", |report, at| {
        report.owners = Some(serde_json::json!({
            "owners": owners, "fill_s": filled.as_secs_f64(), "start_s": start_s,
            "rss_start_mb": rss_start, "rss_after_mb": rss_after, "visitors": visitors,
            "p50_ms": ms(0.5), "p99_ms": ms(0.99), "at": at,
        }));
    })
}

/// How much one run measures: the smoke run's few, or the real run's.
struct Plan {
    offload: Sizes,
    seed: Sizes,
    rounds: usize,
    clicks: usize,
    loads: usize,
    /// How long the stacks settle before their idle memory is read.
    settle: Duration,
}

impl Plan {
    fn of(args: &RunArgs) -> Self {
        if args.smoke {
            Self {
                offload: Sizes::SMOKE,
                seed: Sizes::SMOKE,
                rounds: 1,
                clicks: 5,
                loads: 2,
                settle: Duration::from_millis(500),
            }
        } else {
            Self {
                offload: Sizes::OFFLOAD,
                seed: Sizes::SEED,
                rounds: args.rounds.max(1),
                clicks: 50,
                loads: 10,
                settle: Duration::from_secs(3),
            }
        }
    }
}

async fn run(args: RunArgs) -> Result<(), BenchError> {
    let programs = Programs {
        offload: absolute(&args.offload),
        nats_server: absolute(&args.nats_server),
        seed_python: absolute(&args.seed_python),
        seed_dir: absolute(&args.bench_dir.join("seed")),
    };
    programs.check_offload()?;
    if !args.no_seed {
        programs.check_seed()?;
    }
    let plan = Plan::of(&args);
    let out = absolute(&args.out);
    let logs = out.with_file_name("logs");
    std::fs::create_dir_all(&logs).map_err(BenchError::io(&logs))?;
    let data = tempfile::tempdir().map_err(BenchError::io(std::env::temp_dir()))?;
    let machine = Machine::this();
    println!(
        "offload-bench{}: {} cores ({}), {} GB, {}; logs in {}",
        if args.smoke { " --smoke" } else { "" },
        machine.cores,
        machine.cpu,
        machine.memory_gb,
        machine.os,
        logs.display()
    );
    let mut report = Report::new(machine, args.smoke);
    let stacks = start_stacks(&args, &programs, data.path(), &logs).await?;

    // Idle memory first, before any work has grown a heap or a cache.
    tokio::time::sleep(plan.settle).await;
    for stack in &stacks {
        let mb = stack.rss_bytes() as f64 / 1e6;
        println!(
            "{}: idle resident memory {:.1} MB ({})",
            stack.key,
            mb,
            stack.process_names().join(", ")
        );
        report.set("idle_rss_mb", stack.key, mb);
    }
    cluster_rounds(&args, &programs, &stacks, &plan, &mut report).await?;
    nats_flood(&stacks, &plan, &mut report).await?;
    api_round_trips(&programs, &stacks, &plan, &mut report).await?;
    if args.no_browser {
        drop(stacks);
        println!("\n{}\n(no browser figures, not written)", report.markdown());
        return Ok(());
    }
    browser_figures(&args, &stacks, &plan, &out, &mut report).await?;
    drop(stacks);
    report.write(&out)?;
    println!("\n{}\nwritten to {}", report.markdown(), out.display());
    Ok(())
}

/// The seed's stack (unless left out), Offload embedded and Offload on NATS, each started.
async fn start_stacks(
    args: &RunArgs,
    programs: &Programs,
    data: &Path,
    logs: &Path,
) -> Result<Vec<Stack>, BenchError> {
    let mut stacks = Vec::new();
    if !args.no_seed {
        println!("starting the seed: python cluster.py, panel serve app.py");
        stacks.push(Stack::seed(programs, logs).await?);
    }
    println!("starting Offload embedded: offload");
    stacks.push(Stack::embedded(programs, data, logs).await?);
    println!("starting Offload on NATS: offload cluster, offload worker, offload serve --cluster");
    stacks.push(Stack::nats(programs, data, logs).await?);
    Ok(stacks)
}

/// The NATS stack's flood taken apart: throughput by tasks in flight, CPU per task of each
/// process, messages per task.
async fn nats_flood(stacks: &[Stack], plan: &Plan, report: &mut Report) -> Result<(), BenchError> {
    let Some((stack, url)) = stacks.iter().find_map(|s| match &s.cluster {
        ClusterAccess::Nats(url) => Some((s, url)),
        _ => None,
    }) else {
        return Ok(());
    };
    let breakdown = bench::flood::breakdown(url, &stack.pids(), plan.offload.tiny).await?;
    for line in breakdown.lines() {
        println!("{line}");
    }
    report.nats_flood = serde_json::to_value(&breakdown).ok();
    Ok(())
}

/// Each cluster's round trip, throughput and timings, `plan.rounds` times, the stacks taking
/// turns; the median round of each is reported.
async fn cluster_rounds(
    args: &RunArgs,
    programs: &Programs,
    stacks: &[Stack],
    plan: &Plan,
    report: &mut Report,
) -> Result<(), BenchError> {
    let embedded =
        EmbeddedCluster::start(figures::cluster_config(), tasks::registry()).map_err(|e| {
            BenchError::Measure {
                what: "starting the embedded cluster".into(),
                detail: e.to_string(),
            }
        })?;
    let nats_url = stacks.iter().find_map(|s| match &s.cluster {
        ClusterAccess::Nats(url) => Some(url.clone()),
        _ => None,
    });
    let nats = connect_nats(nats_url.as_deref().expect("the NATS stack")).await?;
    let (rounds, sizes_offload, sizes_seed) = (plan.rounds, plan.offload, plan.seed);
    let mut measured: Vec<(&str, Vec<ClusterFigures>)> =
        stacks.iter().map(|s| (s.key, Vec::new())).collect();
    for round in 1..=rounds {
        for (stack, (key, results)) in stacks.iter().zip(measured.iter_mut()) {
            let figures = match &stack.cluster {
                ClusterAccess::Dask(scheduler) => {
                    let (python, script, scheduler) = (
                        programs.seed_python.clone(),
                        absolute(&args.bench_dir.join("dask_client.py")),
                        scheduler.clone(),
                    );
                    tokio::task::spawn_blocking(move || {
                        figures::seed(&python, &script, &scheduler, sizes_seed)
                    })
                    .await
                    .expect("the Dask client's thread")?
                }
                ClusterAccess::Embedded => {
                    figures::offload(&embedded.client(), sizes_offload).await?
                }
                ClusterAccess::Nats(_) => {
                    figures::offload(&nats.scheduler().client(), sizes_offload).await?
                }
            };
            println!(
                "round {round}/{rounds}, {key}: round trip p50 {:.4} ms, p99 {:.4} ms; {:.0} tiny tasks/s; fibonacci(32) {:.1} ms; 8 × fibonacci(30) {:.1} ms",
                figures.roundtrip_p50_ms,
                figures.roundtrip_p99_ms,
                figures.tiny_tasks_per_s,
                figures.fib32_ms,
                figures.fib30x8_ms
            );
            results.push(figures);
        }
    }
    for (key, results) in &measured {
        if let Some(m) = ClusterFigures::median(results) {
            report.set("roundtrip_p50_ms", key, m.roundtrip_p50_ms);
            report.set("roundtrip_p99_ms", key, m.roundtrip_p99_ms);
            report.set("tiny_tasks_per_s", key, m.tiny_tasks_per_s);
            if matches!(
                stacks.iter().find(|s| s.key == *key).map(|s| &s.cluster),
                Some(ClusterAccess::Dask(_))
            ) {
                // The seed's map: `client.map` + `gather` of the same 10,000 members.
                report.set("batch_members_per_s", key, m.tiny_tasks_per_s);
            }
            report.set("fib32_ms", key, m.fib32_ms);
            report.set("fib30x8_ms", key, m.fib30x8_ms);
            if let Some(cancel) = m.cancel_ms {
                report.set("cancel_ms", key, cancel);
            }
        }
    }
    Ok(())
}

/// The JSON API's round trip on each Offload stack, with a token of its own.
async fn api_round_trips(
    programs: &Programs,
    stacks: &[Stack],
    plan: &Plan,
    report: &mut Report,
) -> Result<(), BenchError> {
    for stack in stacks.iter().filter(|s| s.data_dir.is_some()) {
        let token = stack.token(&programs.offload)?;
        let base = stack.url.trim_end_matches('/');
        let (p50, p99) = figures::api_round_trips(base, &token, plan.offload.trips).await?;
        println!(
            "{}: API round trip p50 {p50:.3} ms, p99 {p99:.3} ms",
            stack.key
        );
        report.set("api_roundtrip_p50_ms", stack.key, p50);
        report.set("api_roundtrip_p99_ms", stack.key, p99);
        let rate = figures::batch_map(base, &token, plan.offload.tiny).await?;
        println!(
            "{}: a batch of {} fibonacci(i mod 10): {rate:.0} members/s",
            stack.key, plan.offload.tiny
        );
        report.set("batch_members_per_s", stack.key, rate);
        let (page, csv) = figures::batch_views(base, plan.offload.tiny, 20).await?;
        println!(
            "{}: a batch of {} members: its page p50 {page:.1} ms, its CSV p50 {csv:.1} ms",
            stack.key, plan.offload.tiny
        );
        report.set("batch_page_p50_ms", stack.key, page);
        report.set("batch_csv_p50_ms", stack.key, csv);
    }
    Ok(())
}

/// Clicks and cold loads in chromium, the apps alternating.
async fn browser_figures(
    args: &RunArgs,
    stacks: &[Stack],
    plan: &Plan,
    out: &Path,
    report: &mut Report,
) -> Result<(), BenchError> {
    let (clicks, loads) = (plan.clicks, plan.loads);
    println!("browser: {clicks} clicks and {loads} cold loads per app, the apps alternating");
    let targets: Vec<Target> = stacks
        .iter()
        .map(|s| Target {
            key: s.key.to_string(),
            url: s.url.clone(),
            kind: s.page,
        })
        .collect();
    let pages = tokio::task::spawn_blocking({
        let end2end = absolute(&args.end2end);
        let out = out.with_file_name("browser.json");
        move || browser::measure(&end2end, &targets, clicks, loads, &out)
    })
    .await
    .expect("the browser's thread")?;
    for (key, page) in &pages {
        report.set("click_to_line_ms", key, page.click_to_line_ms);
        report.set("page_first_byte_ms", key, page.first_byte_ms);
        report.set("page_dom_loaded_ms", key, page.dom_loaded_ms);
        report.set("page_interactive_ms", key, page.interactive_ms);
    }
    Ok(())
}
