//! Batches through the API: members run once each, wait in their batch rather than in the
//! queue, leave room for other owners, stop when cancelled, and every refusal says why.

use super::*;

/// Gate keys of a batch, apart from the single tasks' (`Harness::gate`).
fn keys(harness: &Harness) -> u64 {
    1_000_000 * harness.gate
}

async fn post_batch(harness: &Harness, body: Value) -> (StatusCode, String, Value) {
    harness
        .call(
            "POST",
            "/api/v1/batches",
            Some(("application/json", &body.to_string())),
        )
        .await
}

async fn batch(harness: &Harness, id: u64) -> Value {
    let (status, _, batch) = harness
        .call("GET", &format!("/api/v1/batches/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    batch
}

/// Every member of a batch, paging through them.
async fn members(harness: &Harness, id: u64) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/batches/{id}/tasks?limit=7{cursor}");
        let (status, _, page) = harness.call("GET", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        all.extend(page["members"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return all,
        }
    }
}

/// A batch's event stream, read an event at a time.
struct Events {
    body: Body,
    buffer: String,
}

impl Events {
    async fn open(harness: &Harness, id: u64) -> Self {
        Self::resume(harness, id, None).await
    }

    /// The stream again, as a client that saw event `last_seen` reconnects.
    async fn resume(harness: &Harness, id: u64, last_seen: Option<&str>) -> Self {
        let mut request = Request::builder()
            .uri(format!("/api/v1/batches/{id}/events"))
            .header(header::COOKIE, format!("offload_session={SESSION}"));
        if let Some(last) = last_seen {
            request = request.header("last-event-id", last);
        }
        let request = request.body(Body::empty()).unwrap();
        let response = harness.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next `batch` event's document; None once the stream ended.
    async fn next(&mut self) -> Option<Value> {
        use http_body_util::BodyExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if !block.contains("event: batch") {
                    continue;
                }
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                return Some(serde_json::from_str(&data).unwrap());
            }
            let frame = self.body.frame().await?.unwrap();
            if let Ok(bytes) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
}

/// A body that is not JSON, with its media type.
async fn text(harness: &Harness, path: &str) -> (String, String) {
    let request = Request::builder()
        .uri(path)
        .header(header::COOKIE, format!("offload_session={SESSION}"))
        .body(Body::empty())
        .unwrap();
    let response = harness.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let media = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (media, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn a_varied_batch_runs_each_member_once_and_counts_agree() {
    let api = Harness::new();
    let first = keys(&api);
    let (status, _, accepted) = post_batch(
        &api,
        json!({"type": "gate", "vary": {"key": {"from": first, "to": first + 29}}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["members"], 30);
    assert_eq!(accepted["state"], "running");
    let id = accepted["id"].as_u64().unwrap();
    eventually("two members run (the running cap)", || async {
        batch(&api, id).await["counts"]["running"] == 2
    })
    .await;
    let mut events = Events::open(&api, id).await;
    let now = events.next().await.expect("the batch as it is");
    assert_eq!(now["counts"]["running"], 2, "{now}");
    // A client that reconnects, with the last id it saw, gets the whole batch at once: each
    // event is the whole document, so nothing in between is missed.
    drop(events);
    let mut events = Events::resume(&api, id, Some("1")).await;
    let again = events.next().await.expect("the batch as it is");
    assert_eq!(
        (&again["state"], &again["counts"]),
        (&now["state"], &now["counts"])
    );
    for key in first..first + 30 {
        open_gate(key);
    }
    // Coalesced: far fewer events than the members' changes, the last one finished, then the
    // stream ends.
    let mut last = now;
    let mut sent = 1;
    while let Some(event) = events.next().await {
        last = event;
        sent += 1;
    }
    assert_eq!(last["state"], "finished", "{last}");
    assert_eq!(last["counts"]["finished"], 30, "{last}");
    assert!(sent < 30, "{sent} events for 30 members");
    let done = batch(&api, id).await;
    assert_eq!(done["counts"]["finished"], 30, "{done}");
    assert_eq!(done["progress"], 1.0);
    assert!(done.get("remaining_ms").is_none(), "{done}");
    let members = members(&api, id).await;
    assert_eq!(members.len(), 30);
    for (index, member) in members.iter().enumerate() {
        assert_eq!(member["index"], index as u64);
        assert_eq!(member["task"]["state"], "finished", "{member}");
        assert_eq!(member["task"]["output"], first + index as u64);
    }
    let (media, csv) = text(&api, &format!("/api/v1/batches/{id}/results.csv")).await;
    assert_eq!(media, "text/csv; charset=utf-8");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "index,task,outcome,key,output,seconds,reused_from"
    );
    assert_eq!(lines.len(), 31);
    let row: Vec<&str> = lines[5].split(',').collect();
    assert_eq!(row[0], "4");
    assert_eq!(row[2], "finished");
    assert_eq!(row[3], (first + 4).to_string());
    assert_eq!(row[4], (first + 4).to_string());
    let (_, _, rows) = api
        .call("GET", &format!("/api/v1/batches/{id}/results.json"), None)
        .await;
    assert_eq!(rows.as_array().unwrap().len(), 30);
    assert_eq!(rows[29]["output"], first + 29);
    assert_eq!(rows[29]["index"], 29);
    // Its members are the owner's tasks, listed by batch too.
    let (_, _, tasks) = api
        .call("GET", &format!("/api/v1/tasks?batch={id}"), None)
        .await;
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 30, "{tasks}");
    // Listed newest first, with the same document.
    let (_, _, list) = api.call("GET", "/api/v1/batches", None).await;
    assert_eq!(list["batches"][0]["id"], id);
    assert_eq!(list["batches"][0]["counts"]["finished"], 30);
}

#[tokio::test]
async fn members_wait_in_their_batch_so_another_owner_is_served_first() {
    let api = Harness::new();
    let first = keys(&api);
    let (status, _, big) = post_batch(
        &api,
        json!({"type": "gate", "vary": {"key": {"from": first, "to": first + 9_999}}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{big}");
    let id = big["id"].as_u64().unwrap();
    eventually("the owner's window of members is in the queue", || async {
        let counts = &batch(&api, id).await["counts"];
        counts["queued"].as_u64().unwrap() + counts["running"].as_u64().unwrap() == 52
    })
    .await;
    // The batch neither meets the owner's queued cap nor fills the cluster's queue: the
    // owner may still submit, and so may another owner.
    api.submit_gate().await;
    let other = "fedcba9876543210fedcba9876543210";
    // A key no test's gate opens.
    let key = 999_000 + api.gate;
    open_gate(key);
    let body = json!({"type": "gate", "input": {"key": key}}).to_string();
    let (status, _, task) = api
        .call_as(
            other,
            "POST",
            "/api/v1/tasks",
            Some(("application/json", &body)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task}");
    // Of the three workers, the batch holds two (its owner's running cap) and the last is
    // kept for short work. As the batch's members end, owners take the workers in turn: the
    // other owner's task runs as soon as two members have ended, not after the batch.
    open_gate(first);
    eventually("a member ends and the next runs", || async {
        let counts = &batch(&api, id).await["counts"];
        counts["finished"] == 1 && counts["running"] == 2
    })
    .await;
    open_gate(first + 1);
    let path = format!("/api/v1/tasks/{}", task["id"]);
    eventually("the other owner's task finishes", || async {
        api.call_as(other, "GET", &path, None).await.2["state"] == "finished"
    })
    .await;
    let counts = &batch(&api, id).await["counts"];
    assert_eq!(counts["finished"], 2, "{counts}");
    // Two places free are fewer than the quarter of the window the batch refills at once.
    assert_eq!(counts["waiting"], 10_000 - 52, "{counts}");
    // Another owner does not see the batch.
    let (status, _, _) = api
        .call_as(other, "GET", &format!("/api/v1/batches/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_cancelled_batch_runs_no_member_that_had_not_been_handed_over() {
    let api = Harness::new();
    let first = keys(&api);
    let (_, _, accepted) = post_batch(
        &api,
        json!({"type": "gate", "vary": {"key": {"from": first, "to": first + 199}}}),
    )
    .await;
    let id = accepted["id"].as_u64().unwrap();
    eventually("the owner's window of members is in the queue", || async {
        let counts = &batch(&api, id).await["counts"];
        counts["running"] == 2 && counts["queued"] == 50
    })
    .await;
    let path = format!("/api/v1/batches/{id}/cancel");
    let (status, _, cancelled) = api.call("POST", &path, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    eventually("every member in the queue ends", || async {
        batch(&api, id).await.get("finished_at_ms").is_some()
    })
    .await;
    let done = batch(&api, id).await;
    assert_eq!(done["counts"]["cancelled"], 200, "{done}");
    assert_eq!(done["counts"]["waiting"], 0, "{done}");
    // Only the window was ever handed over; each of those ended as cancelled.
    let members = members(&api, id).await;
    assert_eq!(members.len(), 52);
    assert!(members.iter().all(|m| m["task"]["state"] == "cancelled"));
    // On the workers: no member past the window ever started.
    let ran = started(first..first + 200);
    assert!(ran.len() >= 2, "the running members started: {ran:?}");
    assert!(ran.iter().all(|key| *key < first + 52), "{ran:?}");
    let again = api.call("POST", &path, None).await;
    assert_problem("a second cancel", &again, 409, "was cancelled");

    // Its cancelled members, those that never ran too, make a new batch linked to it.
    let retry = format!("/api/v1/batches/{id}/retry-failed");
    let (status, _, retried) = api.call("POST", &retry, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    assert_eq!(retried["members"], 200);
    assert_eq!(retried["retry_of"], id);
    let again = retried["id"].as_u64().unwrap();
    let running = api
        .call(
            "POST",
            &format!("/api/v1/batches/{again}/retry-failed"),
            None,
        )
        .await;
    assert_problem("a retry of a running batch", &running, 409, "still running");
    api.call("POST", &format!("/api/v1/batches/{again}/cancel"), None)
        .await;
}

#[tokio::test]
async fn every_batch_refusal_is_a_problem_that_says_why() {
    let api = Harness::new();
    let post = |body: Value| post_batch(&api, body);
    let over = post(json!({"type": "gate", "vary": {"key": {"from": 0, "to": 20_000}}})).await;
    assert_problem(
        "over the cap",
        &over,
        400,
        "the batch would have 20001 members: at most 10000 are allowed",
    );
    let listed = post(json!({"type": "gate", "inputs": vec![json!({"key": 1}); 10_001]})).await;
    assert_problem("too many inputs", &listed, 400, "10001 members");
    let bad = post(json!({"type": "gate", "inputs": [{"key": 1}, {"key": -1}]})).await;
    assert_problem(
        "a bad member",
        &bad,
        400,
        "member 2 of the batch, field key",
    );
    let both = post(json!({"type": "gate", "inputs": [], "input": {}, "vary": {}})).await;
    assert_problem("both forms", &both, 400, "not both");
    let none = post(json!({"type": "gate"})).await;
    assert_problem("neither form", &none, 400, "needs \"inputs\"");
    let unknown = post(json!({"type": "gate", "vary": {"size": [1, 2]}})).await;
    assert_problem("an unknown field", &unknown, 400, "no field \"size\"");
    let shape = post(json!({"type": "gate", "vary": {"key": {"start": 1}}})).await;
    assert_problem("a range of another shape", &shape, 400, "vary.key must be");
    let kind = post(json!({"type": "nope", "inputs": [{}]})).await;
    assert_problem("an unknown type", &kind, 400, "no task type \"nope\"");
    let missing = api.call("GET", "/api/v1/batches/999", None).await;
    assert_problem("a batch nobody has", &missing, 404, "not one of yours");
    let word = api.call("GET", "/api/v1/batches/x/tasks", None).await;
    assert_problem("not an id", &word, 404, "not a batch id");
    let cursor = api.call("GET", "/api/v1/batches?cursor=x", None).await;
    assert_problem("a bad cursor", &cursor, 400, "not a cursor");

    // Open batches per owner: the eleventh waits for one to end.
    let first = keys(&api);
    for n in 0..10 {
        let body = json!({"type": "gate", "inputs": [{"key": first + n}]});
        assert_eq!(post(body).await.0, StatusCode::ACCEPTED);
    }
    let eleventh = post(json!({"type": "gate", "inputs": [{"key": first}]})).await;
    assert_problem(
        "an eleventh open batch",
        &eleventh,
        429,
        "10 batches running",
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_gets_the_same_batch_or_a_422() {
    let api = Harness::new();
    let first = keys(&api);
    let send = |key: &'static str, body: Value| {
        let router = api.router.clone();
        async move {
            let request = Request::builder()
                .method("POST")
                .uri("/api/v1/batches")
                .header(header::COOKIE, format!("offload_session={SESSION}"))
                .header(header::CONTENT_TYPE, "application/json")
                .header("Idempotency-Key", key)
                .body(Body::from(body.to_string()))
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let body = json!({"type": "gate", "inputs": [{"key": first}, {"key": first + 1}]});
    let copies = futures::future::join_all((0..8).map(|_| send("k-1", body.clone()))).await;
    let ids: HashSet<u64> = copies
        .iter()
        .map(|(status, doc)| {
            assert_eq!(*status, StatusCode::ACCEPTED, "{doc}");
            doc["id"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one batch for eight copies: {ids:?}");
    let other = json!({"type": "gate", "inputs": [{"key": first + 2}]});
    let (status, problem) = send("k-1", other).await;
    assert_eq!(status.as_u16(), 422, "{problem}");
    let (_, _, list) = api.call("GET", "/api/v1/batches", None).await;
    assert_eq!(list["batches"].as_array().unwrap().len(), 1);
    open_gate(first);
    open_gate(first + 1);
}

#[tokio::test]
async fn a_widened_sweep_with_reuse_runs_only_its_new_members_and_never_anothers() {
    let api = Harness::new();
    let first = keys(&api);
    let sweep = |from: u64, to: u64, reuse: bool| {
        json!({
            "type": "gate",
            "vary": {"key": {"from": from, "to": to}},
            "reuse": reuse,
        })
    };
    // Keys open with the test's gate: every member runs at once.
    open_gate(api.gate);
    let (_, _, narrow) = post_batch(&api, sweep(first + 10, first + 30, false)).await;
    let narrow = narrow["id"].as_u64().unwrap();
    eventually("the first sweep finishes", || async {
        batch(&api, narrow).await["state"] == "finished"
    })
    .await;
    let (_, _, wide) = post_batch(&api, sweep(first, first + 40, true)).await;
    let wide = wide["id"].as_u64().unwrap();
    eventually("the wider sweep finishes", || async {
        batch(&api, wide).await["state"] == "finished"
    })
    .await;
    let done = batch(&api, wide).await;
    assert_eq!(done["counts"]["finished"], 41, "{done}");
    let members = members(&api, wide).await;
    let reused: Vec<&Value> = members
        .iter()
        .filter(|m| m["task"]["reused_from"].is_u64())
        .collect();
    assert_eq!(reused.len(), 21, "the first sweep's 21 points");
    for member in &reused {
        let key = member["task"]["input"]["key"].as_u64().unwrap();
        assert!((first + 10..=first + 30).contains(&key), "{member}");
        assert_eq!(member["task"]["output"], key, "its result, taken whole");
        assert!(
            member["task"]["summary"]
                .as_str()
                .unwrap()
                .ends_with(&format!("(from #{})", member["task"]["reused_from"])),
            "{member}"
        );
    }
    let (_, csv) = text(&api, &format!("/api/v1/batches/{wide}/results.csv")).await;
    assert_eq!(csv.lines().filter(|l| !l.ends_with(',')).count(), 1 + 21);

    // Another owner's identical sweep reuses nothing of this owner's.
    let other = "fedcba9876543210fedcba9876543210";
    let body = sweep(first, first + 40, true).to_string();
    let (status, _, theirs) = api
        .call_as(
            other,
            "POST",
            "/api/v1/batches",
            Some(("application/json", &body)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{theirs}");
    let path = format!("/api/v1/batches/{}/tasks", theirs["id"]);
    let all_ran = || async {
        let (_, _, page) = api.call_as(other, "GET", &path, None).await;
        let members = page["members"].as_array().cloned().unwrap_or_default();
        (members.len() == 41 && members.iter().all(|m| m["task"]["state"] == "finished"))
            .then_some(members)
    };
    eventually("the other owner's sweep finishes", || async {
        all_ran().await.is_some()
    })
    .await;
    let members = all_ran().await.unwrap();
    assert!(
        members
            .iter()
            .all(|m| m["task"].get("reused_from").is_none())
    );
}

#[tokio::test]
async fn a_batch_is_one_row_of_its_owners_queue_then_one_line_of_its_terminal() {
    let api = Harness::new();
    let first = keys(&api);
    let session = api
        .state
        .sessions
        .get_or_create(&app::ssr::SessionId(SESSION.into()))
        .unwrap();
    let mut page = session.subscribe();
    let (status, _, accepted) = post_batch(
        &api,
        json!({"type": "gate", "vary": {"key": {"from": first, "to": first + 29}}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_u64().unwrap();
    eventually("the batch's members are running", || async {
        batch(&api, id).await["counts"]["running"] == 2
    })
    .await;
    eventually("its row says so", || async {
        let tasks = session.view().tasks;
        tasks.len() == 1 && tasks[0].status == model::page::TaskStatus::Running
    })
    .await;
    let row = &session.view().tasks[0];
    assert_eq!(
        (row.id, row.call(), row.batch.as_deref()),
        (
            id,
            format!("batch {id} gate(key={first}..{})", first + 29),
            Some("0 of 30 done")
        )
    );
    let quota = api.state.quota(session.id());
    assert_eq!(
        quota.running, 0,
        "its members count against the batch, not the caps"
    );
    open_gate(api.gate);
    let line = loop {
        match page.recv().await.unwrap().1 {
            model::page::PageUpdate::Task(task) => {
                assert_eq!(
                    (task.id, task.batch.is_some()),
                    (id, true),
                    "a member's row"
                )
            }
            model::page::PageUpdate::Done(line) => break line,
            other => panic!("{other:?}"),
        }
    };
    assert!(line.batch && line.task == id, "{line:?}");
    assert_eq!(line.outcome, model::page::Outcome::Finished);
    assert!(
        line.text.starts_with(&format!(
            "batch {id} gate(key={first}..{}): 30 of 30 done in ",
            first + 29
        )),
        "{}",
        line.text
    );
    assert!(session.view().tasks.is_empty());
    assert_eq!(session.view().lines, vec![line]);
}

#[tokio::test]
async fn retry_failed_runs_again_exactly_the_members_that_failed() {
    // Members 0, 2 and 4 find their gates open; 1 and 3 wait past the time limit and fail.
    let api = Harness::with_cluster(|config| {
        config.task_time_limit = Some(Duration::from_millis(300));
    });
    let first = keys(&api);
    for member in [0, 2, 4] {
        open_gate(first + member);
    }
    let (_, _, accepted) = post_batch(
        &api,
        json!({"type": "gate", "vary": {"key": {"from": first, "to": first + 4}}}),
    )
    .await;
    let id = accepted["id"].as_u64().unwrap();
    eventually("every member ends", || async {
        batch(&api, id).await.get("finished_at_ms").is_some()
    })
    .await;
    let done = batch(&api, id).await;
    assert_eq!(
        (
            done["counts"]["finished"].as_u64(),
            done["counts"]["failed"].as_u64()
        ),
        (Some(3), Some(2)),
        "{done}"
    );
    let retry = format!("/api/v1/batches/{id}/retry-failed");
    let (status, _, retried) = api.call("POST", &retry, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    assert_eq!(retried["retry_of"], id);
    let again = retried["id"].as_u64().unwrap();
    assert_eq!(retried["members"], 2);
    eventually("both are handed over", || async {
        members(&api, again).await.len() == 2
    })
    .await;
    let inputs: Vec<u64> = members(&api, again)
        .await
        .iter()
        .map(|m| m["task"]["input"]["key"].as_u64().unwrap())
        .collect();
    assert_eq!(inputs, [first + 1, first + 3], "exactly the failed members");
    api.call("POST", &format!("/api/v1/batches/{again}/cancel"), None)
        .await;
}

#[tokio::test]
async fn the_sweep_form_counts_its_members_and_refuses_hostile_specifications_as_a_submission_would()
 {
    let api = Harness::new();
    let kind = app::ssr::runner::task_type(&api.state, "gate").unwrap();
    let count = |pairs: &[(&str, &str)]| {
        let sent = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        app::ssr::batches::page::counted(&api.state, &kind, &sent)
    };
    let counted = count(&[("count", "1"), ("key", "1..3"), ("reuse", "on")]);
    assert_eq!((counted.count, counted.reuse), (Some(3), true));
    assert_eq!(counted.values, ["1..3"], "the form comes back as sent");
    for (sent, says) in [
        ("0..1e300", "more than 18 quintillion"),
        ("0..20000", "would have 20001 members"),
        ("1..x", "is not a number"),
        ("1..3*2:cubic", "is not a scale"),
        ("7", "vary at least one field"),
        ("1,-2", "key must be 0 or more (got -2)"),
    ] {
        let refused = count(&[("count", "1"), ("key", sent)]);
        let error = refused.error.expect(sent);
        assert!(refused.count.is_none(), "{sent}");
        assert!(error.message.contains(says), "{sent}: {}", error.message);
    }
}
