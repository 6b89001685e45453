//! `offload-load`: `make load` runs it. See the library's docs for what it does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use load::{LoadConfig, Target, mb, ms, round, rss_after_expiry};

/// Many concurrent browser sessions against an Offload server it starts on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The offload binary to start.
    #[arg(long, default_value = "target/release/offload")]
    server: PathBuf,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 1_000)]
    sessions: usize,
    /// Tasks each session submits, one after the other.
    #[arg(long, default_value_t = 5)]
    tasks: usize,
    /// n of each fibonacci task.
    #[arg(long, default_value_t = 10)]
    n: i64,
    /// Seconds over which the sessions start.
    #[arg(long, default_value_t = 2.0)]
    ramp_secs: f64,
    /// Repeat rounds for this many minutes and print the server's memory each minute.
    #[arg(long)]
    soak: Option<u64>,
    /// Owners are API tokens driving /api/v1 (events and JSON posts), not browser sessions.
    #[arg(long)]
    api: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = LoadConfig {
        server: args.server,
        sessions: args.sessions,
        tasks_per_session: args.tasks,
        n: args.n,
        ramp: Duration::from_secs_f64(args.ramp_secs.max(0.0)),
        api: args.api,
        ..LoadConfig::default()
    };
    match run(&config, args.soak).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("offload-load: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: &LoadConfig, soak: Option<u64>) -> Result<usize, load::LoadError> {
    let target = Target::start(config).await?;
    let tokens = if config.api {
        target.tokens(config.sessions).await?
    } else {
        Vec::new()
    };
    let who = if config.api {
        "API owners (tokens)"
    } else {
        "sessions"
    };
    let cold = target.rss_kb()?;
    // A first round of the same size, its sessions left to expire: code paged in and the
    // allocator's arenas grown to their high-water mark are costs of the first crowd, not
    // growth with users. Both figures are printed.
    let w = round(&target, config, &tokens).await;
    let before = rss_after_expiry(&target, config).await?;
    println!(
        "warm-up round: {} results, {} errors; server RSS cold {}, peak {}, after its sessions expired {} ({:+.1} %)",
        w.results,
        w.errors,
        mb(cold),
        mb(w.rss_peak_kb),
        mb(before),
        (before as f64 - cold as f64) / cold as f64 * 100.0
    );
    println!(
        "{} {who} × {} fibonacci({}), started over {:.1} s; server RSS before: {}",
        config.sessions,
        config.tasks_per_session,
        config.n,
        config.ramp.as_secs_f64(),
        mb(before)
    );
    let mut errors = w.errors;
    let soak_until = soak.map(|m| Instant::now() + Duration::from_secs(m * 60));
    let started = Instant::now();
    let mut next_minute = 1;
    loop {
        let r = round(&target, config, &tokens).await;
        errors += r.errors;
        println!(
            "round: {} results, {} errors in {:.1} s; submit→result p50 {}, p99 {}, max {}; RSS peak {}",
            r.results,
            r.errors,
            r.took.as_secs_f64(),
            ms(r.percentile(0.5)),
            ms(r.percentile(0.99)),
            ms(r.latencies.last().copied().unwrap_or_default()),
            mb(r.rss_peak_kb)
        );
        match soak_until {
            Some(until) if Instant::now() < until => {
                while started.elapsed() >= Duration::from_secs(next_minute * 60) {
                    println!("minute {next_minute}: RSS {}", mb(target.rss_kb()?));
                    next_minute += 1;
                }
            }
            _ => break,
        }
    }
    let after = rss_after_expiry(&target, config).await?;
    let change = (after as f64 - before as f64) / before as f64 * 100.0;
    println!(
        "server RSS: before {}, after the sessions expired {} ({change:+.1} %)",
        mb(before),
        mb(after)
    );
    target.stop().await;
    Ok(errors)
}
