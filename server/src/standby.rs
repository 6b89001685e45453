//! A standby serves from its start (`--standby`): until it takes the database over, it forwards
//! every request but `/health` to the server that writes the database, at the URL that server
//! announced (`Store::announce`). So a balancer may send any request to any server, with no
//! stickiness: the sessions stay one server's memory, and every server shows them. Once this
//! server has taken over, the same listener serves its own app. (Vault's standby nodes forward
//! to the active one the same way.)
//!
//! A request waits, rather than fail, while the writing server changes: one refused at the
//! connection (the writer died, and its successor has not announced itself yet) is sent again,
//! to the next writer or to this server once it has taken over, for up to
//! [`FIND_WRITER_WITHIN`]. Its body is read first, so it can be sent again: bodies are small
//! (the app's own limits, [`MAX_BATCH_BODY_BYTES`] at most). One that a writer still holds
//! unanswered [`ANSWER_AFTER_MOVE`] after another server took over (it hangs) is sent again if
//! it is a GET; anything else may have been taken, and is answered 503.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use app::ssr::status::{MAX_BATCH_BODY_BYTES, declared_length};
use app::ssr::{AllowedHosts, CookiePolicy, allowed_host, refuse_cross_site};
use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tower::ServiceExt;

/// Longest a request waits for a writing server to forward it to.
const FIND_WRITER_WITHIN: Duration = Duration::from_secs(15);
/// How soon a request refused at the connection is tried again.
const TRY_AGAIN_AFTER: Duration = Duration::from_millis(50);
/// How long a server that another one has taken over from may still answer a request it had.
const ANSWER_AFTER_MOVE: Duration = Duration::from_secs(2);
/// Longest a connection to the writing server may take to open.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);
/// Marks a forwarded request. A standby that gets one (the database still names it as the
/// writer: it was, and came back as a standby before its successor announced itself) sends it
/// back with [`NOT_THE_WRITER`] rather than forward it again, to itself.
const FORWARDED: &str = "x-offload-forwarded";
/// Marks the answer of a standby to a forwarded request: nothing ran, send it again later.
const NOT_THE_WRITER: &str = "x-offload-not-the-writer";
/// What a forwarded answer says it came through (RFC 9110, 7.6.3).
const VIA: &str = "1.1 offload-standby";
/// Headers of one hop (RFC 9110, 7.6.1), not forwarded either way.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What this server's app listener serves: its own app once it writes the database, until then
/// the writing server's, forwarded. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Switch(Arc<Inner>);

struct Inner {
    /// This server's own app, set once when it has taken the database over.
    own: OnceLock<Router>,
    /// Where the writing server serves, as the database says.
    writer: watch::Receiver<Option<String>>,
    /// Pooled connections to the writing server.
    client: Client<HttpConnector, Body>,
    /// Whether a request came over https (a trusted proxy's `X-Forwarded-Proto`).
    cookies: CookiePolicy,
}

impl Switch {
    pub(crate) fn new(writer: watch::Receiver<Option<String>>, cookies: CookiePolicy) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_WITHIN));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self(Arc::new(Inner {
            own: OnceLock::new(),
            writer,
            client,
            cookies,
        }))
    }

    /// From now on this server's own `app` answers.
    pub(crate) fn serve_own(&self, app: Router) {
        if self.0.own.set(app).is_err() {
            tracing::error!("this server's app was set twice; the first one serves");
        }
    }

    /// The listener's router: this server's own app once set; the writing server's until then,
    /// forwarded behind this server's own host and cross-site checks (`hosts`).
    pub(crate) fn router(&self, hosts: AllowedHosts) -> Router {
        let forwarding = Router::new()
            .fallback(forward)
            .layer(from_fn_with_state(hosts.clone(), refuse_cross_site))
            .layer(from_fn_with_state(hosts, allowed_host))
            .with_state(self.clone());
        Router::new()
            .fallback(switch)
            .with_state((self.clone(), forwarding))
    }
}

/// The one handler of the listener: the own app's, or the forwarding one's.
async fn switch(
    State((switch, forwarding)): State<(Switch, Router)>,
    request: Request,
) -> Response {
    let router = switch.0.own.get().cloned().unwrap_or(forwarding);
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Sends `request` to the writing server (or, should this one take over meanwhile, to its
/// own app) and its answer back.
async fn forward(State(switch): State<Switch>, request: Request) -> Response {
    if request.uri().path() == "/health" {
        return health(&switch);
    }
    if request.headers().contains_key(FORWARDED) {
        let mut refused = unavailable("this server does not write the database");
        refused
            .headers_mut()
            .insert(NOT_THE_WRITER, HeaderValue::from_static("1"));
        return refused;
    }
    let https = switch.0.cookies.secure(&request);
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a request's body may have {MAX_BATCH_BODY_BYTES} bytes at most"),
        )
            .into_response()
    };
    if declared_length(request.headers()).is_some_and(|len| len > MAX_BATCH_BODY_BYTES) {
        return too_large();
    }
    let (original, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_BATCH_BODY_BYTES).await else {
        return too_large();
    };
    let mut parts = original.clone();
    strip_hop_by_hop(&mut parts.headers);
    // Checked here already (the same checks as the writer's): the writer sees a request for
    // itself from a program, not a browser's from another site.
    for checked in [header::ORIGIN, header::HOST] {
        parts.headers.remove(checked);
    }
    parts.headers.remove("sec-fetch-site");
    parts
        .headers
        .insert(FORWARDED, HeaderValue::from_static("1"));
    parts.headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    let mut writer = switch.0.writer.clone();
    let deadline = tokio::time::Instant::now() + FIND_WRITER_WITHIN;
    loop {
        if let Some(own) = switch.0.own.get() {
            let request = Request::from_parts(original.clone(), Body::from(body.clone()));
            return match own.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
        let target = writer.borrow_and_update().clone();
        if let Some(target) = target {
            let request = Request::from_parts(parts.clone(), Body::from(body.clone()));
            match send(&switch, request, &target, &body).await {
                Ok(response) => return response,
                Err(Unsent::Refused) => {}
                // Sent, but nothing changes for a GET: again, to whichever server writes now.
                Err(Unsent::Moved | Unsent::Failed(_)) if parts.method.is_safe() => {}
                Err(Unsent::Moved) => {
                    return unavailable(&format!(
                        "the server that wrote the database ({target}) stopped answering while it had this request, which may have been taken or not: look before you try again"
                    ));
                }
                Err(Unsent::Failed(error)) => {
                    tracing::warn!(%target, %error, "forwarding a request failed");
                    return unavailable(&format!(
                        "the server that writes the database ({target}) did not answer: {error}"
                    ));
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return unavailable("no server writes the database now: try again shortly");
        }
        // Woken by a new writer's URL, or soon anyway: the same URL may serve again (a server
        // restarted in place), and this server may take over.
        let _ = tokio::time::timeout(TRY_AGAIN_AFTER, writer.changed()).await;
    }
}

/// Why a request did not reach the writing server.
enum Unsent {
    /// The connection was refused or not made: nothing was sent, so it may be sent again.
    Refused,
    /// Sent, but another server took the database over, and no answer came even a while later
    /// (this one hangs).
    Moved,
    /// Sent, but no answer came back.
    Failed(hyper_util::client::legacy::Error),
}

async fn send(
    switch: &Switch,
    mut request: Request,
    target: &str,
    body: &Bytes,
) -> Result<Response, Unsent> {
    let uri = format!("{target}{}", request.uri());
    let Ok(uri) = Uri::try_from(uri) else {
        return Err(Unsent::Refused);
    };
    *request.uri_mut() = uri;
    if !body.is_empty() {
        request
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let mut writer = switch.0.writer.clone();
    // Given up once another server writes and this one has still not answered a while later
    // (it hangs); one that answers meanwhile is heard (it may say it is not the writer).
    let moved = async {
        let now_another = writer.wait_for(|now| now.as_deref().is_some_and(|now| now != target));
        if now_another.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(ANSWER_AFTER_MOVE).await;
    };
    let answered = tokio::select! {
        answered = switch.0.client.request(request) => answered,
        () = moved => return Err(Unsent::Moved),
    };
    match answered {
        Ok(response) if response.headers().contains_key(NOT_THE_WRITER) => Err(Unsent::Refused),
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts
                .headers
                .append(header::VIA, HeaderValue::from_static(VIA));
            Ok(Response::from_parts(parts, Body::new(body)))
        }
        Err(error) if error.is_connect() => Err(Unsent::Refused),
        Err(error) => Err(Unsent::Failed(error)),
    }
}

/// Removes the headers that are the connection's, and those `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

/// A standby is healthy while it knows where the writing server serves: a balancer may send
/// it anything.
fn health(switch: &Switch) -> Response {
    match switch.0.writer.borrow().as_deref() {
        Some(target) => format!("standing by; forwarding to {target}\n").into_response(),
        None => {
            unavailable("standing by; the database is out of reach, or no server writes it yet")
        }
    }
}

fn unavailable(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        format!("{why}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::extract::Request;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use tokio::net::TcpListener;
    use tokio::sync::{Notify, watch};
    use tower::ServiceExt;

    use super::{FORWARDED, NOT_THE_WRITER, Switch, VIA};
    use app::ssr::{AllowedHosts, CookiePolicy};

    /// An app that answers with what it was sent: method, target, headers, body.
    fn echo() -> Router {
        Router::new().fallback(|request: Request| async move {
            let (parts, body) = request.into_parts();
            let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
            let mut text = format!("{} {}\n", parts.method, parts.uri);
            for (name, value) in &parts.headers {
                text += &format!("{name}: {}\n", value.to_str().unwrap_or("?"));
            }
            text + &String::from_utf8_lossy(&body)
        })
    }

    /// Serves `app` on a free loopback port; its URL.
    async fn serving(app: Router) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// A URL nothing listens on: connections to it are refused.
    fn nobody() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    fn standby(writer: watch::Receiver<Option<String>>) -> (Switch, Router) {
        let switch = Switch::new(writer, CookiePolicy::default());
        let router = switch.router(AllowedHosts::new([], []));
        (switch, router)
    }

    /// A browser's form post, as it reaches a standby by its own address.
    fn browser_post() -> Request {
        Request::post("/api/submit?from=page")
            .header("host", "127.0.0.1:9")
            .header("origin", "http://127.0.0.1:9")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "for this connection only")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("n=3"))
            .unwrap()
    }

    async fn text(response: axum::response::Response) -> String {
        String::from_utf8_lossy(&to_bytes(response.into_body(), 1 << 20).await.unwrap()).into()
    }

    #[tokio::test]
    async fn a_forwarded_request_is_marked_and_loses_what_was_checked_or_the_hops() {
        let (_tx, writer) = watch::channel(Some(serving(echo()).await));
        let (_, router) = standby(writer);
        let response = router.oneshot(browser_post()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["via"], VIA);
        let seen = text(response).await;
        assert!(seen.starts_with("POST /api/submit?from=page\n"), "{seen}");
        assert!(seen.ends_with("\nn=3"), "the body goes whole: {seen}");
        for sent in [&format!("{FORWARDED}: 1"), "x-forwarded-proto: http"] {
            assert!(seen.contains(sent), "{sent}: {seen}");
        }
        for gone in ["origin:", "x-hop:", "keep-alive", "host: 127.0.0.1:9\n"] {
            assert!(!seen.contains(gone), "{gone}: {seen}");
        }
    }

    #[tokio::test]
    async fn a_request_waiting_for_a_writer_is_served_by_this_server_once_it_takes_over_as_sent() {
        let (_tx, writer) = watch::channel(Some(nobody()));
        let (switch, router) = standby(writer);
        let waiting = tokio::spawn(router.oneshot(browser_post()));
        switch.serve_own(echo());
        let seen = text(waiting.await.unwrap().unwrap()).await;
        // This server's own checks see what the browser sent: its host and origin.
        for kept in ["host: 127.0.0.1:9\n", "origin: http://127.0.0.1:9\n"] {
            assert!(seen.contains(kept), "{kept}: {seen}");
        }
        assert!(!seen.contains(FORWARDED), "{seen}");
    }

    /// Runs `test`, failing it should it hang (it waits on events, never on the clock).
    async fn within_a_minute(test: impl std::future::Future<Output = ()>) {
        tokio::time::timeout(std::time::Duration::from_secs(60), test)
            .await
            .expect("the test ended within a minute");
    }

    #[tokio::test]
    async fn a_request_a_standby_sends_back_goes_to_the_next_writer() {
        within_a_minute(a_request_sent_back_goes_to_the_next_writer()).await;
    }

    async fn a_request_sent_back_goes_to_the_next_writer() {
        // An ex-writer, back as a standby, still named by the database: it says so.
        let asked = Arc::new(Notify::new());
        let ex_writer = serving(Router::new().fallback({
            let asked = asked.clone();
            move || async move {
                asked.notify_one();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(NOT_THE_WRITER, "1")],
                    "this server does not write the database",
                )
                    .into_response()
            }
        }))
        .await;
        let (tx, writer) = watch::channel(Some(ex_writer));
        let (_, router) = standby(writer);
        let sending = tokio::spawn(router.oneshot(browser_post()));
        asked.notified().await;
        tx.send_replace(Some(serving(echo()).await));
        let response = sending.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(text(response).await.ends_with("\nn=3"));
    }

    #[tokio::test]
    async fn what_a_hung_writer_holds_when_another_takes_over_is_sent_again_if_it_is_a_get() {
        within_a_minute(what_a_hung_writer_holds_is_sent_again_if_it_is_a_get()).await;
    }

    async fn what_a_hung_writer_holds_is_sent_again_if_it_is_a_get() {
        // It takes connections and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hung = format!("http://{}", listener.local_addr().unwrap());
        let taken = Arc::new(Notify::new());
        tokio::spawn({
            let taken = taken.clone();
            async move {
                let mut held = Vec::new();
                while let Ok((socket, _)) = listener.accept().await {
                    held.push(socket);
                    taken.notify_one();
                }
            }
        });
        let (tx, writer) = watch::channel(Some(hung));
        let (_, router) = standby(writer);
        let get = Request::get("/history")
            .header("host", "127.0.0.1:9")
            .body(Body::empty())
            .unwrap();
        let getting = tokio::spawn(router.clone().oneshot(get));
        taken.notified().await;
        let posting = tokio::spawn(router.oneshot(browser_post()));
        taken.notified().await;
        tx.send_replace(Some(serving(echo()).await));
        let got = getting.await.unwrap().unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        assert!(text(got).await.starts_with("GET /history\n"));
        let posted = posting.await.unwrap().unwrap();
        assert_eq!(posted.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(posted.headers().contains_key("retry-after"));
        assert!(text(posted).await.contains("may have been taken or not"));
    }
}
