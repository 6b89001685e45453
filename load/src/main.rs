//! `offload-load`: `make load` runs it. See the library's docs for what it does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use load::soak::{Bounds, soak};
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
    /// Repeat rounds for this many minutes, print the server's memory each minute, and fail
    /// when the bounds below are broken.
    #[arg(long)]
    soak: Option<u64>,
    /// Soak: most the memory after the last minute may exceed the first minute's, in percent.
    #[arg(long, default_value_t = 15.0)]
    max_growth_percent: f64,
    /// Soak: most any round's p99 (submit → result) may be, in milliseconds.
    #[arg(long, default_value_t = 50)]
    max_p99_ms: u64,
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
    let bounds = Bounds {
        max_growth_percent: args.max_growth_percent,
        max_p99: Duration::from_millis(args.max_p99_ms),
    };
    match run(&config, args.soak, &bounds).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("offload-load: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the warm-up and one round, or the soak; whether it held.
async fn run(
    config: &LoadConfig,
    soak_minutes: Option<u64>,
    bounds: &Bounds,
) -> Result<bool, load::LoadError> {
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
    let held = match soak_minutes {
        None => {
            let r = round(&target, config, &tokens).await;
            println!("round: {}", r.summary());
            w.errors + r.errors == 0
        }
        Some(minutes) => {
            let s = soak(&target, config, &tokens, minutes, bounds).await?;
            println!(
                "soak: {} rounds, {} results, {} errors; worst round's p99 {} (round {}), {} rounds over {}; memory first minute {}, last {} ({:+.1} %)",
                s.rounds,
                s.results,
                s.errors,
                ms(s.worst_p99.0),
                s.worst_p99.1,
                s.slow_rounds,
                ms(bounds.max_p99),
                mb(s.minutes_kb.first().copied().unwrap_or_default()),
                mb(s.minutes_kb.last().copied().unwrap_or_default()),
                s.growth_percent().unwrap_or_default()
            );
            let broke = s.breaches(bounds);
            for breach in &broke {
                println!("soak failed: {breach}");
            }
            w.errors == 0 && broke.is_empty()
        }
    };
    let after = rss_after_expiry(&target, config).await?;
    let change = (after as f64 - before as f64) / before as f64 * 100.0;
    println!(
        "server RSS: before {}, after the sessions expired {} ({change:+.1} %)",
        mb(before),
        mb(after)
    );
    target.stop().await;
    Ok(held)
}
