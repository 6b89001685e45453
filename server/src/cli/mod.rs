//! The command line for a running server (`offload submit`, `tasks`, `show`, `watch`,
//! `cancel`, `retry`, `types`, `batches`, `batch`): a client of its JSON API (`/api/v1`). Input is parsed against
//! the type's schema as the server publishes it, with the server's own field parser and
//! messages. Exits 0 when the work finished, 1 when it failed, was cancelled or could not be
//! followed, 2 when it was refused (bad input, no such task, a full queue). Without a terminal
//! it draws no progress bar and prints only results.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

mod api;
mod batch;

use api::{Api, Failure, query};

/// Where the server is and who is calling: flags of every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The Offload server.
    #[arg(long, env = "OFFLOAD_URL", default_value = "http://127.0.0.1:3000")]
    server: String,
    /// An API token (`offload token create NAME` on the server's machine).
    #[arg(long, env = "OFFLOAD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Client {
    /// List the task types the server runs.
    Types {
        #[command(flatten)]
        connection: Connection,
    },
    /// Submit a task: `offload submit primes n=1000000 --wait`; or a batch, when a field
    /// varies: `offload submit TYPE n=20..40 --wait`.
    Submit {
        #[command(flatten)]
        connection: Connection,
        /// The task type (`offload types`).
        task_type: String,
        /// Its input, as FIELD=VALUE (fields left out take their defaults). A VALUE that
        /// varies makes a batch: `a..b` (steps of 1), `a..b:step`, `a..b*count`,
        /// `a..b*count:log`, or a list `a,b,c`.
        fields: Vec<String>,
        /// Pair the varied fields' values (the first together, …) instead of taking every
        /// combination.
        #[arg(long)]
        zip: bool,
        /// A batch's members that compute what one of your finished tasks computed take its
        /// result instead of running (so widening a sweep computes only the new points).
        #[arg(long)]
        reuse: bool,
        /// Follow it to its end, with a progress bar on a terminal, then print its summary
        /// (a batch's: every member's).
        #[arg(long)]
        wait: bool,
        /// Print the task as JSON (after it ended, with --wait); a batch's members one JSON
        /// line each, in order, as they end.
        #[arg(long)]
        json: bool,
    },
    /// List your batches, newest first.
    Batches {
        #[command(flatten)]
        connection: Connection,
        /// At most this many (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One of your batches: show it (`--csv`: its results), follow it, or cancel it.
    Batch {
        #[command(subcommand)]
        action: BatchAction,
    },
    /// List your tasks, newest first.
    Tasks {
        #[command(flatten)]
        connection: Connection,
        /// Only tasks in this state (queued, running, finished, failed, cancelled, lost).
        #[arg(long)]
        state: Option<String>,
        /// Only tasks of this type.
        #[arg(long = "type")]
        task_type: Option<String>,
        /// At most this many (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one of your tasks.
    Show {
        #[command(flatten)]
        connection: Connection,
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Follow one of your tasks to its end.
    Watch {
        #[command(flatten)]
        connection: Connection,
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Cancel one of your tasks.
    Cancel {
        id: u64,
        #[command(flatten)]
        connection: Connection,
    },
    /// Run one of your tasks again, with the same input.
    Retry {
        #[command(flatten)]
        connection: Connection,
        id: u64,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum BatchAction {
    /// Its state and counts.
    Show {
        #[command(flatten)]
        connection: Connection,
        id: u64,
        /// Its results: a row per member (index, task, outcome, input, output, seconds).
        #[arg(long)]
        csv: bool,
        #[arg(long)]
        json: bool,
    },
    /// Follow it to its end.
    Watch {
        #[command(flatten)]
        connection: Connection,
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Cancel it: members still waiting never run.
    Cancel {
        #[command(flatten)]
        connection: Connection,
        id: u64,
    },
}

pub async fn run(command: Client) -> ExitCode {
    let connection = match &command {
        Client::Types { connection }
        | Client::Submit { connection, .. }
        | Client::Tasks { connection, .. }
        | Client::Show { connection, .. }
        | Client::Watch { connection, .. }
        | Client::Cancel { connection, .. }
        | Client::Retry { connection, .. }
        | Client::Batches { connection, .. }
        | Client::Batch {
            action:
                BatchAction::Show { connection, .. }
                | BatchAction::Watch { connection, .. }
                | BatchAction::Cancel { connection, .. },
        } => connection.clone(),
    };
    let api = match Api::new(connection) {
        Ok(api) => api,
        Err(failure) => return failure.exit(),
    };
    match command_result(&api, command).await {
        Ok(code) => code,
        Err(failure) => failure.exit(),
    }
}

async fn command_result(api: &Api, command: Client) -> Result<ExitCode, Failure> {
    match command {
        Client::Types { .. } => {
            for kind in api.types().await? {
                println!("{}\t{}", text(&kind["name"]), text(&kind["title"]));
            }
            Ok(ExitCode::SUCCESS)
        }
        Client::Submit {
            task_type,
            fields,
            zip,
            reuse,
            wait,
            json,
            ..
        } => {
            let pairs = field_pairs(&fields)?;
            if pairs
                .iter()
                .any(|(_, value)| !matches!(batch::varies(value), Ok(None)))
            {
                let how = batch::How { zip, reuse };
                return batch::submit(api, &task_type, &pairs, how, wait, json).await;
            }
            if zip || reuse {
                return Err(Failure::Refused(
                    "--zip and --reuse are for batches: vary a field (n=1..9) or leave them out"
                        .into(),
                ));
            }
            let input = api.input(&task_type, &pairs).await?;
            let task = api
                .call(
                    reqwest::Method::POST,
                    "/api/v1/tasks",
                    Some(json!({"type": task_type, "input": input})),
                )
                .await?;
            finish(api, task, wait, json).await
        }
        Client::Tasks {
            state,
            task_type,
            limit,
            json,
            ..
        } => list_tasks(api, state, task_type, limit, json).await,
        Client::Show { id, json, .. } => {
            let task = api.task(id).await?;
            print_task(&task, json);
            Ok(exit_for(&task))
        }
        Client::Watch { id, json, .. } => {
            let task = api.task(id).await?;
            finish(api, task, true, json).await
        }
        Client::Cancel { id, .. } => {
            api.call(
                reqwest::Method::POST,
                &format!("/api/v1/tasks/{id}/cancel"),
                None,
            )
            .await?;
            if std::io::stderr().is_terminal() {
                eprintln!("task {id}: cancelling");
            }
            Ok(ExitCode::SUCCESS)
        }
        Client::Batches { limit, json, .. } => batch::list(api, limit, json).await,
        Client::Batch { action } => match action {
            BatchAction::Show { id, csv, json, .. } => batch::show(api, id, csv, json).await,
            BatchAction::Watch { id, json, .. } => {
                batch::watch(api, batch::fetch(api, id).await?, json).await
            }
            BatchAction::Cancel { id, .. } => batch::cancel(api, id).await,
        },
        Client::Retry { id, wait, json, .. } => {
            let task = api
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/tasks/{id}/retry"),
                    None,
                )
                .await?;
            finish(api, task, wait, json).await
        }
    }
}

/// `offload tasks`: a page of the caller's tasks, one line each (or their JSON).
async fn list_tasks(
    api: &Api,
    state: Option<String>,
    task_type: Option<String>,
    limit: usize,
    json: bool,
) -> Result<ExitCode, Failure> {
    let mut pairs = vec![("limit", limit.to_string())];
    pairs.extend(state.map(|s| ("state", s)));
    pairs.extend(task_type.map(|t| ("type", t)));
    let query = query(&pairs);
    let page = api
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/tasks?{query}"),
            None,
        )
        .await?;
    if json {
        println!("{}", page["tasks"]);
    } else {
        for task in page["tasks"].as_array().into_iter().flatten() {
            println!("{}", one_line(task));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// After a submission: print it, or follow it to its end first.
async fn finish(api: &Api, task: Value, wait: bool, json: bool) -> Result<ExitCode, Failure> {
    if !wait {
        if json {
            println!("{task}");
        } else {
            println!("{}", task["id"]);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let id = task["id"].as_u64().unwrap_or_default();
    let ended = tokio::select! {
        ended = follow(api, task) => ended?,
        _ = tokio::signal::ctrl_c() => {
            return Err(Failure::Failed(format!(
                "stopped waiting; task {id} carries on (offload watch {id})"
            )));
        }
    };
    print_task(&ended, json);
    Ok(exit_for(&ended))
}

/// Follows the task to its end on its event stream (`/api/v1/tasks/{id}/events`), drawing its
/// progress on a terminal; then reads it whole. Should the stream break (a restarting
/// server), it reads the task five times a second instead.
async fn follow(api: &Api, mut task: Value) -> Result<Value, Failure> {
    let id = task["id"].as_u64().unwrap_or_default();
    let bar = progress_bar();
    let show = |state: &Value| {
        if let Some(bar) = &bar {
            bar.set_message(format!("task {id} {}", text(&state["state"])));
            bar.set_position((state["progress"].as_f64().unwrap_or(0.0) * 1000.0) as u64);
        }
    };
    if still_going(&task) {
        show(&task);
        if let Ok(mut stream) = api.stream(&format!("/api/v1/tasks/{id}/events")).await {
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = stream.chunk().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let data: String = block
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if let Ok(event) = serde_json::from_str::<Value>(&data) {
                        show(&event);
                    }
                }
            }
        }
        task = api.task(id).await?;
    }
    while still_going(&task) {
        show(&task);
        tokio::time::sleep(Duration::from_millis(200)).await;
        task = api.task(id).await?;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(task)
}

/// A bar of 1,000 steps on a terminal's stderr; none without a terminal.
fn progress_bar() -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(1000);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {percent:>3}% {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    })
}

fn still_going(task: &Value) -> bool {
    matches!(text(&task["state"]).as_str(), "queued" | "running")
}

fn exit_for(task: &Value) -> ExitCode {
    match text(&task["state"]).as_str() {
        "finished" | "queued" | "running" => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn print_task(task: &Value, json: bool) {
    if json {
        println!("{task}");
        return;
    }
    match task["summary"].as_str() {
        Some(summary) => println!("{summary}"),
        None => println!("{}", one_line(task)),
    }
}

/// `12  primes  running  40%`, or its summary once it ended.
fn one_line(task: &Value) -> String {
    let state = text(&task["state"]);
    let detail = match task["summary"].as_str() {
        Some(summary) => summary.to_owned(),
        None if state == "running" => {
            format!("{:.0}%", task["progress"].as_f64().unwrap_or(0.0) * 100.0)
        }
        None => task["input"].to_string(),
    };
    format!("{}\t{}\t{state}\t{detail}", task["id"], text(&task["type"]))
}

/// `FIELD=VALUE` arguments as pairs.
fn field_pairs(fields: &[String]) -> Result<Vec<(&str, &str)>, Failure> {
    fields
        .iter()
        .map(|field| {
            field.split_once('=').ok_or_else(|| {
                Failure::Refused(format!("{field:?}: give each field as FIELD=VALUE"))
            })
        })
        .collect()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            query(&[("type", "hash-chain".into()), ("x", "a b&c".into())]),
            "type=hash-chain&x=a+b%26c"
        );
    }

    #[test]
    fn a_task_reads_in_one_line() {
        let running = json!({"id": 7, "type": "primes", "state": "running", "progress": 0.4});
        assert_eq!(one_line(&running), "7\tprimes\trunning\t40%");
        let done =
            json!({"id": 8, "type": "primes", "state": "finished", "summary": "primes(10)=4"});
        assert_eq!(one_line(&done), "8\tprimes\tfinished\tprimes(10)=4");
    }
}
