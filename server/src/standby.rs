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
//! (the app's own limits, [`MAX_BATCH_BODY_BYTES`] at most).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use app::ssr::status::MAX_BATCH_BODY_BYTES;
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
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a request's body may have {MAX_BATCH_BODY_BYTES} bytes at most"),
        )
            .into_response()
    };
    if declared.is_some_and(|len| len > MAX_BATCH_BODY_BYTES) {
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
    /// Sent, but another server took the database over before an answer came (this one hangs).
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
    let moved = async {
        let now_another = writer.wait_for(|now| now.as_deref().is_some_and(|now| now != target));
        if now_another.await.is_err() {
            std::future::pending::<()>().await;
        }
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
