//! Issue 18: the JSON API (`/api/v1`) against the release binary, with tokens made by its own
//! `offload token` command: a contract test per endpoint and per refusal, every error body an
//! RFC 9457 problem, the page and the API sharing one model, and the OpenAPI document checked
//! by an independent validator from npm.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{PageStream, Server, Session, binary};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `offload token ARGS… --data-dir` of `server`: (exit code, stdout, stderr).
fn token(server: &Server, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(&server.data)
        .output()
        .expect("running offload token");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn create_token(server: &Server, name: &str) -> String {
    let (code, out, err) = token(server, &["create", name]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_owned()
}

fn with_json(request: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
    request
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
}

async fn json_of(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A caller of the API: a token, a session's cookie, or nothing.
struct Caller {
    http: reqwest::Client,
    token: Option<String>,
    cookie: Option<String>,
}

impl Caller {
    fn token(token: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            token: Some(token.to_owned()),
            cookie: None,
        }
    }

    fn session(session: &Session) -> Self {
        Self {
            http: reqwest::Client::new(),
            token: None,
            cookie: session.cookie.clone(),
        }
    }

    fn nobody() -> Self {
        Self {
            http: reqwest::Client::new(),
            token: None,
            cookie: None,
        }
    }

    fn request(&self, server: &Server, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, server.url(path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        request
    }

    async fn call(
        &self,
        server: &Server,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.request(server, method, path);
        if let Some(body) = body {
            request = with_json(request, &body);
        }
        let response = request.send().await.expect("the server answers");
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    async fn submit(&self, server: &Server, kind: &str, input: Value) -> Value {
        let (status, _, body) = self
            .call(
                server,
                Method::POST,
                "/api/v1/tasks",
                Some(json!({"type": kind, "input": input})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    /// Reads task `id` until it is in `state`.
    async fn until_state(&self, server: &Server, id: u64, state: &str) {
        let path = format!("/api/v1/tasks/{id}");
        let what = format!("task {id} is {state}");
        common::eventually(&what, Duration::from_secs(12), || async {
            let (_, _, body) = self.call(server, Method::GET, &path, None).await;
            (body["state"] == state).then_some(())
        })
        .await;
    }

    /// Reads task `id` until it has ended.
    async fn ended(&self, server: &Server, id: u64) -> Value {
        let path = format!("/api/v1/tasks/{id}");
        let what = format!("task {id} ends");
        common::eventually(&what, Duration::from_secs(30), || async {
            let (status, _, body) = self.call(server, Method::GET, &path, None).await;
            assert_eq!(status, 200, "{body}");
            (!matches!(body["state"].as_str(), Some("queued" | "running"))).then_some(body)
        })
        .await
    }
}

/// An RFC 9457 problem with `status`, in its own media type.
fn assert_problem(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    want: u16,
) {
    assert_eq!(status.as_u16(), want, "{body}");
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{body}"
    );
    assert_eq!(body["status"], want, "{body}");
    assert_eq!(body["type"], "about:blank");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| d.len() > 10),
        "{body}"
    );
    if want == 429 || want == 503 {
        assert!(
            headers.contains_key("retry-after"),
            "{want} without Retry-After"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_submits_follows_lists_and_retries_its_tasks_until_it_is_revoked() {
    let server = Server::start(&["--workers", "2"]).await;
    let secret = create_token(&server, "ci-bot");
    assert!(secret.starts_with("offload_"), "{secret}");
    let (code, listed, _) = token(&server, &["list"]);
    assert_eq!(code, 0);
    assert!(
        listed.contains("ci-bot") && !listed.contains(&secret),
        "{listed}"
    );
    let bot = Caller::token(&secret);

    let (status, _, types) = bot
        .call(&server, Method::GET, "/api/v1/task-types", None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fibonacci", "hash-chain", "primes", "mandelbrot"]);
    assert_eq!(types[0]["input_schema"]["properties"]["n"]["maximum"], 93);

    let task = bot.submit(&server, "fibonacci", json!({"n": 20})).await;
    let id = task["id"].as_u64().unwrap();
    assert!(
        matches!(
            task["state"].as_str(),
            Some("queued" | "running" | "finished")
        ),
        "{task}"
    );
    assert_eq!(task["links"]["self"], format!("/api/v1/tasks/{id}"));
    let done = bot.ended(&server, id).await;
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(done["output"], 6765);
    assert_eq!(done["progress"], 1.0);
    // Where and when it ran: a thread of the server itself, at the first attempt.
    let worker = done["worker"].as_str().unwrap();
    assert!(
        worker.contains(&format!("-{}/", server.pid())),
        "{worker} is not a thread of {}",
        server.pid()
    );
    assert_eq!(done["attempts"], 1);
    let times =
        ["submitted_at_ms", "started_at_ms", "finished_at_ms"].map(|t| done[t].as_u64().unwrap());
    assert!(times.is_sorted(), "{done}");
    assert!(
        done["summary"]
            .as_str()
            .unwrap()
            .starts_with("fibonacci(20)=6765 in "),
        "{done}"
    );

    // A picture: its bytes at links.output, its size in the JSON.
    let picture = bot
        .submit(&server, "mandelbrot", json!({"width": 64, "height": 48}))
        .await;
    let picture = bot.ended(&server, picture["id"].as_u64().unwrap()).await;
    assert_eq!(
        picture["output"]["png"]["media_type"], "image/png",
        "{picture}"
    );
    let href = picture["links"]["output"].as_str().unwrap();
    let png = bot
        .request(&server, Method::GET, href)
        .send()
        .await
        .unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_eq!(&png.bytes().await.unwrap()[1..4], b"PNG");

    let retried = bot
        .call(
            &server,
            Method::POST,
            &format!("/api/v1/tasks/{id}/retry"),
            None,
        )
        .await;
    assert_eq!(retried.0, StatusCode::ACCEPTED, "{}", retried.2);
    assert_eq!(retried.2["retry_of"], id);
    assert_eq!(retried.2["input"], json!({"n": 20}));
    let again = bot.ended(&server, retried.2["id"].as_u64().unwrap()).await;
    assert_eq!(again["output"], 6765);

    // Newest first, filtered, and paged by a cursor that new tasks do not disturb.
    for n in 0..5 {
        bot.submit(&server, "fibonacci", json!({"n": n})).await;
    }
    let (status, _, page) = bot
        .call(
            &server,
            Method::GET,
            "/api/v1/tasks?type=fibonacci&limit=3",
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let ids = |page: &Value| -> Vec<u64> {
        page["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .collect()
    };
    let first = ids(&page);
    assert_eq!(first.len(), 3);
    assert!(first.windows(2).all(|w| w[0] > w[1]), "{first:?}");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    bot.submit(&server, "fibonacci", json!({"n": 1})).await;
    let (_, _, next) = bot
        .call(
            &server,
            Method::GET,
            &format!("/api/v1/tasks?type=fibonacci&limit=3&cursor={cursor}"),
            None,
        )
        .await;
    let second = ids(&next);
    assert_eq!(second.len(), 3);
    assert!(second[0] < first[2], "{first:?} then {second:?}");
    let (_, _, last) = bot
        .call(
            &server,
            Method::GET,
            &format!(
                "/api/v1/tasks?type=fibonacci&limit=3&cursor={}",
                next["next_cursor"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        ids(&last).len(),
        1,
        "8 fibonacci tasks: 3 + 3 + 1 before the new one"
    );
    assert!(last.get("next_cursor").is_none(), "{last}");
    let (_, _, pictures) = bot
        .call(
            &server,
            Method::GET,
            "/api/v1/tasks?type=mandelbrot&state=finished",
            None,
        )
        .await;
    assert_eq!(ids(&pictures).len(), 1);

    // Revoked: refused from the next request on.
    let (code, _, err) = token(&server, &["revoke", "ci-bot"]);
    assert_eq!(code, 0, "{err}");
    let (status, headers, body) = bot
        .call(&server, Method::GET, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_problem(status, &headers, &body, 401);
    let (code, _, err) = token(&server, &["revoke", "ci-bot"]);
    assert_eq!(code, 2, "revoking twice is refused: {err}");
    assert!(err.contains("no token called \"ci-bot\""), "{err}");
    let (code, _, err) = token(&server, &["create", "not a name"]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_problem_with_its_status() {
    // Two workers, long tasks leave one free: one long task runs, the rest wait.
    let server = Server::start(&[
        "--workers",
        "2",
        "--queue-capacity",
        "2",
        "--max-queued-per-session",
        "1",
    ])
    .await;
    let a = Caller::token(&create_token(&server, "a"));
    let b = Caller::token(&create_token(&server, "b"));

    // 401: nothing, a malformed header, a made-up token.
    for caller in [
        Caller::nobody(),
        Caller::token("offload_0123456789abcdef_00"),
        Caller::token(""),
    ] {
        let (status, headers, body) = caller
            .call(&server, Method::GET, "/api/v1/tasks", None)
            .await;
        assert_problem(status, &headers, &body, 401);
        assert!(headers.contains_key("www-authenticate"));
    }
    let (status, headers, body) = Caller::nobody()
        .request(&server, Method::GET, "/api/v1/tasks")
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .map(|r| (r.status(), r.headers().clone(), r))
        .unwrap();
    let body = json_of(body).await;
    assert_problem(status, &headers, &body, 401);

    // 400, at the field when there is one.
    for (request, field, words) in [
        (
            json!({"type": "fibonacci", "input": {"n": 94}}),
            Some("n"),
            "at most 93",
        ),
        (
            json!({"type": "fibonacci", "input": {"n": "ten"}}),
            Some("n"),
            "whole number",
        ),
        (
            json!({"type": "fibonacci", "input": {"n": 5, "x": 1}}),
            None,
            "no field \"x\"",
        ),
        (
            json!({"type": "hash-chain", "input": {"algorithm": "md5"}}),
            Some("algorithm"),
            "one of",
        ),
        (json!({"type": "nope"}), None, "no task type \"nope\""),
        (
            json!({"type": "fibonacci", "extra": 1}),
            None,
            "unknown field",
        ),
        (json!({"input": {}}), None, "missing field"),
    ] {
        let (status, headers, body) = a
            .call(
                &server,
                Method::POST,
                "/api/v1/tasks",
                Some(request.clone()),
            )
            .await;
        assert_problem(status, &headers, &body, 400);
        assert_eq!(body["field"].as_str(), field, "{request}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(words),
            "{request}: {body}"
        );
    }
    let malformed = a
        .request(&server, Method::POST, "/api/v1/tasks")
        .header("content-type", "application/json")
        .body("{\"type\": ")
        .send()
        .await
        .unwrap();
    let (status, headers) = (malformed.status(), malformed.headers().clone());
    assert_problem(status, &headers, &json_of(malformed).await, 400);
    for bad in ["limit=0", "limit=101", "cursor=yesterday", "state=sleeping"] {
        let (status, headers, body) = a
            .call(&server, Method::GET, &format!("/api/v1/tasks?{bad}"), None)
            .await;
        assert_problem(status, &headers, &body, 400);
    }

    // 413: a body over 16 KB.
    let huge = json!({"type": "hash-chain", "input": {"text": "x".repeat(20_000)}});
    let (status, headers, body) = a
        .call(&server, Method::POST, "/api/v1/tasks", Some(huge))
        .await;
    assert_problem(status, &headers, &body, 413);
    // A batch's inputs may be listed up to 1 MB: 450 KB is read (and refused for its
    // size in members, saying it), 1.2 MB is not read.
    let listed = |count: usize| json!({"type": "primes", "inputs": vec![json!({"n": 7}); count]});
    let (status, headers, body) = a
        .call(
            &server,
            Method::POST,
            "/api/v1/batches",
            Some(listed(50_000)),
        )
        .await;
    assert_problem(status, &headers, &body, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("50000 members"),
        "{body}"
    );
    let (status, headers, body) = a
        .call(
            &server,
            Method::POST,
            "/api/v1/batches",
            Some(listed(150_000)),
        )
        .await;
    assert_problem(status, &headers, &body, 413);
    assert!(
        body["detail"].as_str().unwrap().contains("1024 KB"),
        "{body}"
    );

    // 429 for a's own queue, 503 for the server's: a runs one, waits one, and is refused a
    // third; b's one waits too, and the queue (2) is full for b's second.
    let long = || json!({"n": 92});
    let running = a.submit(&server, "fibonacci", long()).await;
    // Running before the next is submitted, or that one would be a's second waiting.
    a.until_state(&server, running["id"].as_u64().unwrap(), "running")
        .await;
    let waiting = a.submit(&server, "fibonacci", long()).await;
    let (status, headers, body) = a
        .call(
            &server,
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"type": "fibonacci", "input": long()})),
        )
        .await;
    assert_problem(status, &headers, &body, 429);
    let b_waiting = b.submit(&server, "fibonacci", long()).await;
    let (status, headers, body) = b
        .call(
            &server,
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"type": "fibonacci", "input": long()})),
        )
        .await;
    assert_problem(status, &headers, &body, 503);

    // 404: another owner's task, made-up ids; for every per-task endpoint.
    let theirs = running["id"].as_u64().unwrap();
    for path in [
        format!("/api/v1/tasks/{theirs}"),
        format!("/api/v1/tasks/{theirs}/output"),
        "/api/v1/tasks/abc".to_owned(),
        "/api/v1/tasks/99999999999999999999999".to_owned(),
    ] {
        let (status, headers, body) = b.call(&server, Method::GET, &path, None).await;
        assert_problem(status, &headers, &body, 404);
    }
    for action in ["cancel", "retry"] {
        let (status, headers, body) = b
            .call(
                &server,
                Method::POST,
                &format!("/api/v1/tasks/{theirs}/{action}"),
                None,
            )
            .await;
        assert_problem(status, &headers, &body, 404);
    }

    // Cancel: 202 and the task ends cancelled; again: 409.
    for task in [&waiting, &running] {
        let path = format!("/api/v1/tasks/{}/cancel", task["id"]);
        let (status, _, body) = a.call(&server, Method::POST, &path, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let ended = a.ended(&server, task["id"].as_u64().unwrap()).await;
        assert_eq!(ended["state"], "cancelled", "{ended}");
        let (status, headers, body) = a.call(&server, Method::POST, &path, None).await;
        assert_problem(status, &headers, &body, 409);
    }
    // A task without a picture has no output to download.
    let (status, headers, body) = a
        .call(
            &server,
            Method::GET,
            &format!("/api/v1/tasks/{theirs}/output"),
            None,
        )
        .await;
    assert_problem(status, &headers, &body, 404);
    b.call(
        &server,
        Method::POST,
        &format!("/api/v1/tasks/{}/cancel", b_waiting["id"]),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_the_api_see_the_same_tasks() {
    let server = Server::start(&[]).await;
    let session = Session::new();
    let mut events = session.events(&server).await;
    let from_page = session.submit_ok(&server, 12).await;
    let caller = Caller::session(&session);
    let seen = caller.ended(&server, from_page).await;
    assert_eq!(seen["output"], 144);
    let (_, _, page) = caller
        .call(&server, Method::GET, "/api/v1/tasks", None)
        .await;
    assert_eq!(page["tasks"][0]["id"], from_page);

    // Through the API with the session's cookie: live on the page.
    let from_api = caller.submit(&server, "fibonacci", json!({"n": 13})).await;
    let id = from_api["id"].as_u64().unwrap();
    let line = events.line(|l| l["task"] == id).await;
    assert!(line.starts_with("fibonacci(13)=233 in "), "{line}");

    // A token's tasks are not the session's, and the other way round.
    let bot = Caller::token(&create_token(&server, "bot"));
    let (status, _, _) = bot
        .call(&server, Method::GET, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(status, 404);
    let (_, _, listed) = bot.call(&server, Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(listed["tasks"], json!([]));
    // A page of another site cannot use the session's cookie.
    let forged = with_json(
        caller
            .request(&server, Method::POST, "/api/v1/tasks")
            .header("origin", "http://evil.example"),
        &json!({"type": "fibonacci", "input": {"n": 1}}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(forged.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_passes_an_independent_validator_and_lists_every_route() {
    let server = Server::start(&[]).await;
    let response = reqwest::get(server.url("/api/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document = json_of(response).await;
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{document}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let validator = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../end2end/node_modules/.bin/validate-api");
    let checked = Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} (npm ci in end2end installs it): {e}",
                validator.display()
            )
        });
    let said = String::from_utf8_lossy(&checked.stdout).into_owned()
        + &String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success() && said.contains("valid"), "{said}");
    assert!(
        !said.contains("invalid") && !said.contains("false"),
        "{said}"
    );

    // The router's API routes, each answered by its handler (not the 404 of no route), are
    // exactly the document's operations.
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routes: BTreeSet<(String, String)> = [
        ("GET", "/api/v1/task-types"),
        ("GET", "/api/v1/limits"),
        ("GET", "/api/v1/tasks"),
        ("POST", "/api/v1/tasks"),
        ("GET", "/api/v1/tasks/{id}"),
        ("GET", "/api/v1/tasks/{id}/output"),
        ("POST", "/api/v1/tasks/{id}/cancel"),
        ("POST", "/api/v1/tasks/{id}/retry"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/tasks/{id}/events"),
        ("POST", "/api/v1/batches"),
        ("GET", "/api/v1/batches"),
        ("GET", "/api/v1/batches/{id}"),
        ("GET", "/api/v1/batches/{id}/tasks"),
        ("POST", "/api/v1/batches/{id}/cancel"),
        ("GET", "/api/v1/batches/{id}/results.csv"),
        ("GET", "/api/v1/batches/{id}/results.json"),
        ("GET", "/api/v1/batches/{id}/events"),
        ("POST", "/api/v1/batches/{id}/retry-failed"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(documented, routes);
    let bot = Caller::token(&create_token(&server, "probe"));
    for (method, path) in &routes {
        let path = path.replace("{id}", "1");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        // Headers only: an event stream does not end.
        let response = with_json(bot.request(&server, method, &path), &json!({}))
            .send()
            .await
            .unwrap();
        let (status, kind) = (
            response.status(),
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        // A handler answers: a document, a problem or a stream (a route that is not there
        // is the framework's plain-text 404 or 405).
        assert!(
            kind.starts_with("application/") || kind == "text/event-stream",
            "{path}: {status} {kind}"
        );
        assert_ne!(status, 405, "{path}");
    }
    for name in [
        "fibonacci.Input",
        "hash-chain.Input",
        "hash-chain.Algorithm",
        "mandelbrot.Output",
    ] {
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "{name} in {}",
            document["components"]["schemas"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_makes_one_task_however_many_copies_arrive_at_once() {
    let server = Server::start(&["--workers", "2", "--max-queued-per-session", "200"]).await;
    let secret = create_token(&server, "retrier");
    let body = json!({"type": "primes", "input": {"n": 1_000_000}});
    let post = |key: &'static str, body: Value| {
        let caller = Caller::token(&secret);
        let server = &server;
        async move {
            let (status, _, answer) = {
                let request = with_json(
                    caller
                        .request(server, Method::POST, "/api/v1/tasks")
                        .header("idempotency-key", key),
                    &body,
                );
                let response = request.send().await.unwrap();
                let (status, headers) = (response.status(), response.headers().clone());
                (status, headers, json_of(response).await)
            };
            (status, answer)
        }
    };
    let answers = futures::future::join_all((0..100).map(|_| post("order-7", body.clone()))).await;
    let (status, first) = &answers[0];
    assert_eq!(*status, StatusCode::ACCEPTED, "{first}");
    for (status, answer) in &answers {
        assert_eq!(
            (*status, answer),
            (StatusCode::ACCEPTED, first),
            "100 identical answers"
        );
    }
    let bot = Caller::token(&secret);
    let id = first["id"].as_u64().unwrap();
    let done = bot.ended(&server, id).await;
    assert_eq!(done["output"]["count"], 78498, "{done}");
    let (_, _, listed) = bot.call(&server, Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(
        listed["tasks"].as_array().unwrap().len(),
        1,
        "one task: {listed}"
    );
    // Later, once it has finished, the same key and request: the same answer.
    let (status, again) = post("order-7", body.clone()).await;
    assert_eq!((status, &again), (StatusCode::ACCEPTED, first));

    // The key with another request: 422, nothing queued.
    let (status, refused) = post("order-7", json!({"type": "primes", "input": {"n": 10}})).await;
    assert_eq!(status.as_u16(), 422, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("another request"),
        "{refused}"
    );
    // Another owner's key is its own.
    let other = Caller::token(&create_token(&server, "other"));
    let theirs = with_json(
        other
            .request(&server, Method::POST, "/api/v1/tasks")
            .header("idempotency-key", "order-7"),
        &body,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(theirs.status(), StatusCode::ACCEPTED);
    assert_ne!(json_of(theirs).await["id"].as_u64(), Some(id));
    let (_, _, listed) = bot.call(&server, Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1);

    // Remembered across a restart, with the task's record.
    let server = server.crash_and_restart().await;
    // (A post with no JSON body at all is refused as not JSON.)
    let (status, _, after) = bot.call(&server, Method::POST, "/api/v1/tasks", None).await;
    assert_eq!(status.as_u16(), 415, "{after}");
    let replay = with_json(
        bot.request(&server, Method::POST, "/api/v1/tasks")
            .header("idempotency-key", "order-7"),
        &body,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(&json_of(replay).await, first);
}

/// A server-sent events reader that keeps each event's id and name.
struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buffer: String,
}

/// One event: its id, its name, its data as JSON.
#[derive(Debug, Clone)]
struct Received {
    id: Option<u64>,
    name: String,
    data: Value,
}

impl Sse {
    async fn open(server: &Server, token: &str, path: &str, last: Option<u64>) -> Self {
        let mut request = reqwest::Client::new()
            .get(server.url(path))
            .bearer_auth(token);
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        use futures::StreamExt;
        Self {
            body: Box::pin(response.bytes_stream().map(|c| c.map(|b| b.to_vec()))),
            buffer: String::new(),
        }
    }

    /// The next event; None when the stream ends.
    async fn next(&mut self) -> Option<Received> {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim_start().to_owned())
                };
                let Some(name) = field("event:") else {
                    continue; // a keep-alive comment
                };
                return Some(Received {
                    id: field("id:").and_then(|id| id.parse().ok()),
                    name,
                    data: serde_json::from_str(&field("data:").unwrap_or_default())
                        .unwrap_or(Value::Null),
                });
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until one satisfies `until` (included).
    async fn until(&mut self, until: impl Fn(&Received) -> bool) -> Vec<Received> {
        let mut seen = Vec::new();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), self.next())
                .await
                .expect("an event within 30 s")
                .expect("the stream stays open");
            let last = until(&event);
            seen.push(event);
            if last {
                return seen;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_cut_off_mid_run_resumes_with_last_event_id_and_misses_nothing() {
    // Three workers: the owner may run two tasks at once, the long one and a quick one.
    let server = Server::start(&["--workers", "3"]).await;
    let secret = create_token(&server, "watcher");
    let bot = Caller::token(&secret);

    let mut first = Sse::open(&server, &secret, "/api/v1/events", None).await;
    let snapshot = first.next().await.unwrap();
    assert_eq!(snapshot.name, "snapshot");
    assert_eq!(snapshot.data["tasks"], json!([]));
    let long = bot
        .submit(&server, "primes", json!({"n": 2_000_000_000u64}))
        .await;
    let long_id = long["id"].as_u64().unwrap();
    // Cut off mid-run: once the long task has reported progress.
    let seen = first
        .until(|e| e.data["id"] == long_id && e.data["progress"].as_f64() > Some(0.0))
        .await;
    let cut_at = seen.last().unwrap().id.unwrap();
    drop(first);

    // Meanwhile, three quick tasks come and go.
    let mut quick = Vec::new();
    for n in [10, 11, 12] {
        let task = bot.submit(&server, "fibonacci", json!({"n": n})).await;
        let id = task["id"].as_u64().unwrap();
        bot.ended(&server, id).await;
        quick.push(id);
    }

    let mut again = Sse::open(&server, &secret, "/api/v1/events", Some(cut_at)).await;
    let events = again
        .until(|e| e.data["id"] == long_id && e.data["state"] == "finished")
        .await;
    let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids[0], cut_at + 1, "resumed right after the last one seen");
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "every later event, once, in order: {ids:?}"
    );
    assert!(events.iter().all(|e| e.name == "task"));
    for id in &quick {
        let ended: Vec<&Received> = events
            .iter()
            .filter(|e| e.data["id"] == *id && e.data["summary"].is_string())
            .collect();
        assert_eq!(ended.len(), 1, "task {id} ended once in {events:?}");
        assert_eq!(ended[0].data["state"], "finished");
    }
    // What the events said, GET says.
    let last = events.last().unwrap();
    let (_, _, task) = bot
        .call(
            &server,
            Method::GET,
            &format!("/api/v1/tasks/{long_id}"),
            None,
        )
        .await;
    assert_eq!(task["state"], last.data["state"]);
    assert_eq!(task["summary"], last.data["summary"]);

    // Too far behind (or from before a restart): a snapshot, then live changes.
    let mut stale = Sse::open(&server, &secret, "/api/v1/events", Some(999_999)).await;
    assert_eq!(stale.next().await.unwrap().name, "snapshot");

    // One task's stream: its changes, ending with it; an ended task's, its end at once.
    let one = bot
        .submit(&server, "primes", json!({"n": 300_000_000}))
        .await;
    let one_id = one["id"].as_u64().unwrap();
    let mut only = Sse::open(
        &server,
        &secret,
        &format!("/api/v1/tasks/{one_id}/events"),
        None,
    )
    .await;
    let mut states = Vec::new();
    while let Some(event) = only.next().await {
        assert_eq!(event.data["id"], one_id, "{event:?}");
        states.push(event.data["state"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        states.last().map(String::as_str),
        Some("finished"),
        "{states:?}"
    );
    let mut ended = Sse::open(
        &server,
        &secret,
        &format!("/api/v1/tasks/{long_id}/events"),
        None,
    )
    .await;
    let end = ended.next().await.unwrap();
    assert_eq!(
        (end.data["state"].as_str(), end.id),
        (Some("finished"), None)
    );
    assert!(ended.next().await.is_none());
}

/// The caps given by flags, as the API and the server-rendered page say them: three running,
/// a fourth held back by the running cap, and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_matches_the_flags_and_a_held_task_says_why() {
    let server = Server::start(&[
        "--workers",
        "4",
        "--max-running-per-session",
        "3",
        "--max-queued-per-session",
        "7",
    ])
    .await;
    let session = Session::new();
    let me = Caller::session(&session);
    // A session with no task yet: its caps, nothing used.
    let (_, _, fresh) = me.call(&server, Method::GET, "/api/v1/limits", None).await;
    assert_eq!(fresh["text"], "0 of 3 running · 0 of 7 queued", "{fresh}");
    let mut ids = Vec::new();
    for n in 60..64 {
        ids.push(session.submit_ok(&server, n).await);
    }
    for id in &ids[..3] {
        me.until_state(&server, *id, "running").await;
    }
    let (status, _, limits) = me.call(&server, Method::GET, "/api/v1/limits", None).await;
    assert_eq!(status, 200, "{limits}");
    assert_eq!(
        limits,
        json!({"running": 3, "max_running": 3, "queued": 1, "max_queued": 7,
               "text": "3 of 3 running · 1 of 7 queued"})
    );
    let page = session.get_text(&server, "/").await;
    assert!(page.contains("3 of 3 running · 1 of 7 queued"), "{page}");
    assert_eq!(
        page.matches("waiting: you have 3 running, the most at once")
            .count(),
        1,
        "only the held row says so"
    );
    for id in ids {
        me.call(
            &server,
            Method::POST,
            &format!("/api/v1/tasks/{id}/cancel"),
            None,
        )
        .await;
    }
}

/// Issue 26: a type this server no longer runs stays findable, the same on `/history` and
/// through the API; a name no task ever had finds nothing on either (not a refusal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_no_longer_run_here_stays_findable_on_the_history_and_the_api() {
    let server = Server::start(&["--workers", "2"]).await;
    let session = Session::new();
    let id = session.submit_ok(&server, 7).await;
    common::line_of(&server, &session, 7).await;
    // As a later build would find it: the row's type is one its registry lacks.
    let conn = app::ssr::store::open_shared(&server.data, tasks::FIRST_RELEASE).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute(
        "UPDATE tasks SET task_type = 'retired' WHERE id = ?1",
        [id as i64],
    )
    .unwrap();

    let response = session
        .request(Method::GET, server.url("/history?type=retired"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains(&format!("href=\"/tasks/{id}\"")), "{html}");
    assert!(html.contains("retired (no longer run here)"), "{html}");
    let page = session
        .get_json(&server, "/api/v1/tasks?type=retired")
        .await;
    assert_eq!(page["tasks"][0]["id"], id, "{page}");

    let html = session.get_text(&server, "/history?type=never-was").await;
    assert!(html.contains("No task matches."), "{html}");
    let page = session
        .get_json(&server, "/api/v1/tasks?type=never-was")
        .await;
    assert_eq!(page["tasks"], json!([]), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_mid_run_goes_on_after_the_restart_and_each_member_ends_once() {
    let server = Server::start(&["--workers", "3"]).await;
    let bot = Caller::token(&create_token(&server, "sweeper"));
    // A thousand members of a few milliseconds each.
    let (status, _, batch) = bot
        .call(
            &server,
            Method::POST,
            "/api/v1/batches",
            Some(json!({
                "type": "hash-chain",
                "input": {"text": "sweep"},
                "vary": {"rounds": {"from": 20_000, "to": 20_999}},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{batch}");
    let path = format!("/api/v1/batches/{}", batch["id"]);
    common::eventually(
        "a hundred members ended",
        Duration::from_secs(30),
        || async {
            let (_, _, batch) = bot.call(&server, Method::GET, &path, None).await;
            (batch["counts"]["finished"].as_u64().unwrap_or(0) >= 100).then_some(())
        },
    )
    .await;
    let server = server.crash_and_restart().await;
    let (_, _, after) = bot.call(&server, Method::GET, &path, None).await;
    assert!(
        after["counts"]["finished"].as_u64().unwrap() < 1_000,
        "killed mid-run: {after}"
    );
    let done = common::eventually("the batch finishes", Duration::from_secs(60), || async {
        let (_, _, batch) = bot.call(&server, Method::GET, &path, None).await;
        batch.get("finished_at_ms").is_some().then_some(batch)
    })
    .await;
    assert_eq!(done["counts"]["finished"], 1_000, "{done}");
    assert_eq!(done["state"], "finished");
    // One task per member, each with its own rounds and one result.
    let mut indexes = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, _, page) = bot
            .call(&server, Method::GET, &format!("{path}/tasks{cursor}"), None)
            .await;
        for member in page["members"].as_array().unwrap() {
            let index = member["index"].as_u64().unwrap();
            assert_eq!(
                member["task"]["input"]["rounds"],
                20_000 + index,
                "{member}"
            );
            assert_eq!(member["task"]["state"], "finished", "{member}");
            indexes.push(index);
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("?cursor={next}"),
            None => break,
        }
    }
    assert_eq!(indexes, (0..1_000).collect::<Vec<u64>>());
    let (_, _, tasks) = bot
        .call(&server, Method::GET, "/api/v1/tasks?limit=100", None)
        .await;
    assert_eq!(
        tasks["tasks"][0]["type"], "hash-chain",
        "members are the owner's tasks"
    );
}
