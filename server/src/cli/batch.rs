//! Batches on the command line: `offload submit TYPE n=20..40 --wait` (a varied field
//! makes the submission a batch), `offload batches`, `offload batch show|watch|cancel ID`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value, json};

use model::batch::{Vary, counts_text};
use model::page::Outcome;

use super::api::{Api, Failure, query};
use super::{one_line, progress_bar, text};

/// A field's value that varies: `20..40`, `20..40:2`, `1..1000*7`, `1..1000*7:log`, `1,5,10`.
pub(super) fn varies(value: &str) -> Result<Option<Vary>, String> {
    Vary::parse(value)
}

/// How a batch's members are made and run.
pub(super) struct How {
    /// Pair the varied fields' values instead of taking every combination.
    pub zip: bool,
    /// Members computed before take those results.
    pub reuse: bool,
}

/// Submits a batch of `task_type`: the plain fields in every member, the varied ones combined
/// as a grid (or pairwise).
pub(super) async fn submit(
    api: &Api,
    task_type: &str,
    fields: &[(&str, &str)],
    how: How,
    wait: bool,
    json: bool,
) -> Result<ExitCode, Failure> {
    let mut vary = Map::new();
    let mut base = Vec::new();
    let mut firsts = Vec::new();
    for (name, value) in fields {
        match varies(value).map_err(|why| Failure::Refused(format!("{name}: {why}")))? {
            Some(how) => {
                firsts.push((*name, how.first_text()));
                vary.insert(
                    (*name).to_owned(),
                    serde_json::to_value(how).unwrap_or_default(),
                );
            }
            None => base.push((*name, *value)),
        }
    }
    base.extend(firsts.iter().map(|(name, value)| (*name, value.as_str())));
    let mut input = api.input(task_type, &base).await?;
    // The varied fields are the members' own.
    if let Some(object) = input.as_object_mut() {
        for name in vary.keys() {
            object.remove(name);
        }
    }
    let batch = api
        .call(
            reqwest::Method::POST,
            "/api/v1/batches",
            Some(json!({
                "type": task_type,
                "input": input,
                "vary": vary,
                "combine": if how.zip { "zip" } else { "grid" },
                "reuse": how.reuse,
            })),
        )
        .await?;
    if !wait {
        if json {
            println!("{batch}");
        } else {
            println!("{}", batch["id"]);
        }
        return Ok(ExitCode::SUCCESS);
    }
    watch(api, batch, json).await
}

/// Follows a batch to its end with one progress bar on a terminal; prints each member as it
/// ends (in order) as a JSON line with `json`, else every member's line once it ended. Exits
/// 0 when every member finished.
pub(super) async fn watch(api: &Api, mut batch: Value, json: bool) -> Result<ExitCode, Failure> {
    let id = batch["id"].as_u64().unwrap_or_default();
    let bar = progress_bar();
    let mut printed = Printed::default();
    let follow = async {
        loop {
            if let Some(bar) = &bar {
                bar.set_message(progress_line(&batch));
                bar.set_position((batch["progress"].as_f64().unwrap_or(0.0) * 1000.0) as u64);
            }
            if json {
                printed.ended_so_far(api, id).await?;
            }
            if batch.get("finished_at_ms").is_some() {
                return Ok::<_, Failure>(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            batch = api.call(reqwest::Method::GET, &path(id), None).await?;
        }
    };
    tokio::select! {
        followed = follow => followed?,
        _ = tokio::signal::ctrl_c() => {
            return Err(Failure::Failed(format!(
                "stopped waiting; batch {id} carries on (offload batch watch {id})"
            )));
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if json {
        printed.ended_so_far(api, id).await?;
    } else {
        for member in all_members(api, id).await? {
            let task = &member["task"];
            match task["summary"].as_str() {
                Some(summary) => println!("{summary}"),
                None => println!("{}", one_line(task)),
            }
        }
    }
    Ok(exit_for(&batch))
}

/// Members printed so far: every index below `next`.
#[derive(Default)]
struct Printed {
    next: u64,
}

impl Printed {
    /// Prints the members that ended, in order, from the first not printed yet up to the
    /// first still going.
    async fn ended_so_far(&mut self, api: &Api, id: u64) -> Result<(), Failure> {
        loop {
            let page = members_page(api, id, self.next.checked_sub(1)).await?;
            let members = page["members"].as_array().cloned().unwrap_or_default();
            for member in &members {
                let state = text(&member["task"]["state"]);
                if member["index"].as_u64() != Some(self.next)
                    || matches!(state.as_str(), "queued" | "running")
                {
                    return Ok(());
                }
                println!("{member}");
                self.next += 1;
            }
            if page.get("next_cursor").is_none() || members.is_empty() {
                return Ok(());
            }
        }
    }
}

fn path(id: u64) -> String {
    format!("/api/v1/batches/{id}")
}

async fn members_page(api: &Api, id: u64, after: Option<u64>) -> Result<Value, Failure> {
    let mut pairs = vec![("limit", "100".to_owned())];
    pairs.extend(after.map(|index| ("cursor", index.to_string())));
    api.call(
        reqwest::Method::GET,
        &format!("{}/tasks?{}", path(id), query(&pairs)),
        None,
    )
    .await
}

async fn all_members(api: &Api, id: u64) -> Result<Vec<Value>, Failure> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = members_page(api, id, after).await?;
        all.extend(page["members"].as_array().into_iter().flatten().cloned());
        match page["next_cursor"].as_str().and_then(|c| c.parse().ok()) {
            Some(cursor) => after = Some(cursor),
            None => return Ok(all),
        }
    }
}

/// `batch 7 square: 12 of 21 done, 1 failed`.
fn progress_line(batch: &Value) -> String {
    let ended = Outcome::ALL.map(|o| batch["counts"][o.name()].as_u64().unwrap_or(0));
    format!(
        "batch {} {}: {}",
        batch["id"],
        text(&batch["type"]),
        counts_text(ended, batch["members"].as_u64().unwrap_or(0))
    )
}

fn exit_for(batch: &Value) -> ExitCode {
    if batch["counts"]["finished"] == batch["members"] {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `offload batches`: a page of the caller's batches, one line each (or their JSON).
pub(super) async fn list(api: &Api, limit: usize, json: bool) -> Result<ExitCode, Failure> {
    let page = api
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/batches?{}", query(&[("limit", limit.to_string())])),
            None,
        )
        .await?;
    if json {
        println!("{}", page["batches"]);
    } else {
        for batch in page["batches"].as_array().into_iter().flatten() {
            println!("{}\t{}", text(&batch["state"]), progress_line(batch));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `offload batch show ID`: its state and counts, its JSON, or its results as CSV.
pub(super) async fn show(api: &Api, id: u64, csv: bool, json: bool) -> Result<ExitCode, Failure> {
    if csv {
        print!("{}", api.text(&format!("{}/results.csv", path(id))).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let batch = api.call(reqwest::Method::GET, &path(id), None).await?;
    if json {
        println!("{batch}");
    } else {
        println!("{}\t{}", text(&batch["state"]), progress_line(&batch));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn fetch(api: &Api, id: u64) -> Result<Value, Failure> {
    api.call(reqwest::Method::GET, &path(id), None).await
}

pub(super) async fn cancel(api: &Api, id: u64) -> Result<ExitCode, Failure> {
    api.call(reqwest::Method::POST, &format!("{}/cancel", path(id)), None)
        .await?;
    if std::io::stderr().is_terminal() {
        eprintln!("batch {id}: cancelling");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_varied_fields_first_value_checks_the_base_input() {
        let first = |text: &str| varies(text).unwrap().unwrap().first_text();
        assert_eq!(first("20..40"), "20");
        assert_eq!(first("0.5..2*4:log"), "0.5");
        assert_eq!(first("a,b"), "a");
        assert_eq!(varies("20").unwrap(), None);
        assert!(varies("1..x").is_err());
    }

    #[test]
    fn a_batch_reads_in_one_line() {
        let batch = json!({
            "id": 7, "type": "square", "members": 21,
            "counts": {"finished": 11, "failed": 1, "cancelled": 0, "lost": 0}
        });
        assert_eq!(
            progress_line(&batch),
            "batch 7 square: 12 of 21 done, 1 failed"
        );
        assert_eq!(exit_for(&batch), ExitCode::FAILURE);
    }
}
