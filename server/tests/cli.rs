//! Issue 18: `offload submit`, `tasks`, `show`, `watch`, `cancel`, `retry` and `types` against
//! a real server, as a script and as a person at a terminal (a pseudo-terminal from `script`)
//! would run them: exit codes 0, 1 and 2, JSON that parses, a progress bar only on a terminal,
//! and Ctrl-C that stops the waiting, not the task.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{PageStream, Server, binary};
use serde_json::Value;

fn token(server: &Server, name: &str) -> String {
    let output = Command::new(binary())
        .args(["token", "create", name, "--data-dir"])
        .arg(&server.data)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `offload ARGS…` against `server` as `token`, without a terminal.
fn offload(server: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("OFFLOAD_URL", server.url(""))
        .env("OFFLOAD_TOKEN", token)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn out(output: &Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_waits_and_exits_0_1_or_2_and_prints_json_for_scripts() {
    let server = Server::start(&["--workers", "2", "--task-time-limit", "1"]).await;
    let me = token(&server, "cli");

    let (code, stdout, stderr) = out(&offload(&server, &me, &["types"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("fibonacci\tFibonacci\n"), "{stdout}");
    assert_eq!(stdout.lines().count(), 4);

    // Finished: 0, the summary, and nothing else without a terminal.
    let (code, stdout, stderr) = out(&offload(
        &server,
        &me,
        &["submit", "fibonacci", "n=20", "--wait"],
    ));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("fibonacci(20)=6765 in "), "{stdout}");
    assert_eq!(stdout.lines().count(), 1);
    assert!(stderr.is_empty(), "no bar without a terminal: {stderr:?}");

    // --json parses, and says the same.
    let (code, stdout, _) = out(&offload(
        &server,
        &me,
        &[
            "submit",
            "hash-chain",
            "text=abc",
            "rounds=1",
            "--wait",
            "--json",
        ],
    ));
    assert_eq!(code, 0);
    let task: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(task["state"], "finished");
    assert_eq!(
        task["output"]["digest"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    // Failed (stopped by the 1 s time limit): 1.
    let (code, stdout, _) = out(&offload(
        &server,
        &me,
        &["submit", "primes", "n=100000000000", "--wait"],
    ));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("stopped: it ran past the 1 s limit"),
        "{stdout}"
    );

    // Refused: 2, with the server's message and the field.
    for (args, says) in [
        (
            vec!["submit", "fibonacci", "n=94"],
            "n must be at most 93 (got 94). (field n)",
        ),
        (
            vec!["submit", "fibonacci", "n"],
            "give each field as FIELD=VALUE",
        ),
        (vec!["submit", "fibonacci", "m=1"], "no field \"m\""),
        (vec!["submit", "nope"], "no task type \"nope\""),
        (vec!["show", "999999"], "not one of yours"),
    ] {
        let (code, stdout, stderr) = out(&offload(&server, &me, &args));
        assert_eq!(code, 2, "{args:?}: {stdout} {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = out(&offload(&server, "offload_00_00", &["tasks"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("not valid"), "{stderr}");
    let down = Command::new(binary())
        .args(["tasks", "--server", "http://127.0.0.1:1", "--token", &me])
        .output()
        .unwrap();
    assert_eq!(
        down.status.code(),
        Some(1),
        "an unreachable server is a failure"
    );

    // The list, newest first, and show.
    let (code, stdout, _) = out(&offload(&server, &me, &["tasks", "--type", "fibonacci"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("\tfibonacci\tfinished\tfibonacci(20)=6765 in "),
        "{stdout}"
    );
    let id = stdout.split('\t').next().unwrap().to_owned();
    let (code, stdout, _) = out(&offload(&server, &me, &["show", &id, "--json"]));
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["output"],
        6765
    );
    let (code, stdout, _) = out(&offload(&server, &me, &["retry", &id, "--wait"]));
    assert_eq!(code, 0);
    assert!(stdout.starts_with("fibonacci(20)=6765 in "), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_a_progress_bar_and_ctrl_c_stops_only_the_waiting() {
    let server = Server::start(&["--workers", "2"]).await;
    let me = token(&server, "person");

    // At a terminal: a live bar on the way, then the summary.
    let command = format!(
        "{} submit primes n=1500000000 --wait --server {} --token {me}",
        binary().display(),
        server.url("")
    );
    let at_terminal = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) gives the command a terminal");
    let said = String::from_utf8_lossy(&at_terminal.stdout).into_owned();
    assert_eq!(at_terminal.status.code(), Some(0), "{said}");
    assert!(
        said.contains("running [") && said.contains('%'),
        "no bar in {said:?}"
    );
    assert!(
        said.contains("primes(1500000000)=74726528, largest 1499999957"),
        "{said}"
    );

    // Ctrl-C while waiting: the command stops, the task runs on.
    let (code, stdout, _) = out(&offload(&server, &me, &["submit", "fibonacci", "n=92"]));
    assert_eq!(code, 0);
    let id = stdout.trim().to_owned();
    let mut watch = Command::new(binary())
        .args(["watch", &id])
        .env("OFFLOAD_URL", server.url(""))
        .env("OFFLOAD_TOKEN", &me)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once it handles SIGINT (its handler shows in /proc), not before.
    let pid = watch.id();
    let catches_sigint = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
                u64::from_str_radix(mask.trim(), 16).ok()
            })
            .is_some_and(|mask| mask & (1 << (2 - 1)) != 0)
    };
    common::eventually("watch listens for Ctrl-C", Duration::from_secs(10), || {
        std::future::ready(catches_sigint().then_some(()))
    })
    .await;
    assert!(watch.try_wait().unwrap().is_none(), "watch ended early");
    let interrupted = Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let watched = watch.wait_with_output().unwrap();
    let (code, _, stderr) = out(&watched);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("task {id} carries on")),
        "{stderr}"
    );
    let (_, stdout, _) = out(&offload(&server, &me, &["show", &id, "--json"]));
    let task: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        matches!(task["state"].as_str(), Some("queued" | "running")),
        "{task}"
    );

    // Cancelled through the command line: watch exits 1 and says so.
    let (code, _, _) = out(&offload(&server, &me, &["cancel", &id]));
    assert_eq!(code, 0);
    let (code, stdout, _) = out(&offload(&server, &me, &["watch", &id]));
    assert_eq!(code, 1);
    assert!(stdout.contains("fibonacci(92) cancelled after"), "{stdout}");
}

/// The text of the element labelled `label` on a server-rendered page, unescaped.
fn labelled(html: &str, label: &str) -> String {
    let start = html
        .find(&format!("aria-label=\"{label}\""))
        .unwrap_or_else(|| panic!("no {label} in {html}"));
    let text = &html[start..];
    let text = &text[text.find('>').unwrap() + 1..text.find("</").unwrap()];
    text.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A task's detail page gives it as commands: a shell runs each, with a token, to the same
/// result as the page's task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detail_pages_commands_run_the_same_task_from_a_shell() {
    let server = Server::start(&[]).await;
    let session = common::Session::new();
    let id = session
        .submit_form_ok(&server, "task=hash-chain&text=it's+%24HOME&rounds=2")
        .await;
    let mut events = session.events(&server).await;
    let line = events.line(|l| l["task"] == id).await;
    let result = line.split(" in ").next().unwrap().to_owned();
    let page = session.get_text(&server, &format!("/tasks/{id}")).await;
    let secret = token(&server, "shell");
    let bin = binary();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let command = labelled(&page, "Command line");
    assert!(command.starts_with("offload submit"), "{command}");
    let ran = Command::new("sh")
        .args(["-c", &command])
        .env("PATH", &path)
        .env("OFFLOAD_TOKEN", &secret)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (code, stdout, stderr) = out(&ran);
    assert_eq!(code, 0, "{command}: {stderr}");
    assert!(
        stdout.starts_with(&result),
        "{command}: {stdout} is not {result}"
    );

    let curl = labelled(&page, "curl");
    let posted = Command::new("sh")
        .args(["-c", &curl])
        .env("OFFLOAD_TOKEN", &secret)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (code, stdout, stderr) = out(&posted);
    assert_eq!(code, 0, "{curl}: {stderr}");
    let task: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(task["input"]["text"], "it's $HOME", "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_varied_field_makes_a_batch_followed_as_one_with_a_line_or_json_per_member() {
    let server = Server::start(&["--workers", "3"]).await;
    let me = token(&server, "sweep");

    // A range: one line per member, in order, once every one ended.
    let (code, stdout, stderr) = out(&offload(
        &server,
        &me,
        &["submit", "fibonacci", "n=20..40", "--wait"],
    ));
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 21, "{stdout}");
    assert!(lines[0].starts_with("fibonacci(20)=6765 in "), "{stdout}");
    assert!(
        lines[20].starts_with("fibonacci(40)=102334155 in "),
        "{stdout}"
    );
    assert!(stderr.is_empty(), "no bar without a terminal: {stderr:?}");

    // --json: a line per member, each parsing, in order.
    let (code, stdout, stderr) = out(&offload(
        &server,
        &me,
        &["submit", "primes", "n=0..99", "--wait", "--json"],
    ));
    assert_eq!(code, 0, "{stderr}");
    let members: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(members.len(), 100);
    for (index, member) in members.iter().enumerate() {
        assert_eq!(member["index"], index as u64);
        assert_eq!(member["task"]["input"]["n"], index as u64);
        assert_eq!(member["task"]["state"], "finished");
    }
    assert_eq!(members[99]["task"]["output"]["count"], 25);

    // A list and a grid; pairs with --zip.
    let (code, stdout, _) = out(&offload(
        &server,
        &me,
        &["submit", "hash-chain", "text=a,b", "rounds=1..3", "--json"],
    ));
    assert_eq!(code, 0);
    let grid: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(grid["members"], 6);
    let (code, stdout, _) = out(&offload(
        &server,
        &me,
        &[
            "submit",
            "hash-chain",
            "text=a,b",
            "rounds=1..2",
            "--zip",
            "--json",
        ],
    ));
    assert_eq!(code, 0);
    let zip: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(zip["members"], 2);

    // The list of batches, one, and its results as CSV.
    let (code, stdout, _) = out(&offload(&server, &me, &["batches"]));
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    let first = grid["id"].as_u64().unwrap() - 2;
    let (code, csv, _) = out(&offload(
        &server,
        &me,
        &["batch", "show", &first.to_string(), "--csv"],
    ));
    assert_eq!(code, 0);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "index,task,outcome,n,output,seconds,reused_from");
    assert_eq!(rows.len(), 22);
    assert!(rows[1].starts_with("0,"), "{csv}");
    assert!(rows[1].contains(",finished,20,6765,"), "{csv}");

    // Refusals: 2, with the reason.
    let (code, _, stderr) = out(&offload(
        &server,
        &me,
        &["submit", "fibonacci", "n=0..20000"],
    ));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the batch would have 20001 members: at most 10000"),
        "{stderr}"
    );
    let (code, _, stderr) = out(&offload(&server, &me, &["submit", "fibonacci", "n=90..99"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("n must be at most 93"), "{stderr}");
    let (code, _, stderr) = out(&offload(&server, &me, &["submit", "fibonacci", "n=1..x"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("n: the end of the range"), "{stderr}");
}
