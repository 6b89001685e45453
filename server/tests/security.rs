//! Issue 32's acceptance, against the real binary on loopback: every response of both
//! listeners carries the security headers — pages a content security policy with the nonce their
//! scripts bear, everything else a policy under which nothing runs — and the session cookie is
//! `Secure` and `__Host-` exactly when the page is served over HTTPS.

mod common;

use std::process::Command;

use common::{Server, Session, binary};
use reqwest::Method;

/// The headers every response carries, whatever it is.
fn assert_common(what: &str, headers: &reqwest::header::HeaderMap) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("referrer-policy"), "same-origin", "{what}");
    let csp = header("content-security-policy");
    for directive in [
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'self'",
    ] {
        assert!(csp.contains(directive), "{what}: {directive} in {csp}");
    }
    csp
}

/// A page: scripts only from the site or with this response's nonce, which every script of the
/// page bears; no inline style anywhere.
fn assert_page(what: &str, csp: &str, html: &str) {
    let directive = |name: &str| {
        csp.split("; ")
            .find(|d| d.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{what}: no {name} in {csp}"))
            .to_owned()
    };
    let scripts = directive("script-src");
    let nonce = scripts
        .split(' ')
        .find_map(|s| s.strip_prefix("'nonce-")?.strip_suffix('\''))
        .unwrap_or_else(|| panic!("{what}: no nonce in {scripts}"));
    assert!(nonce.len() >= 16, "{what}: a nonce of {nonce:?}");
    assert_eq!(
        scripts,
        format!("script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'"),
        "{what}"
    );
    assert_eq!(directive("style-src"), "style-src 'self'", "{what}");
    assert!(!csp.contains("'unsafe-eval'"), "{csp}");
    let tags: Vec<&str> = html.split("<script").skip(1).collect();
    assert!(
        !tags.is_empty(),
        "{what}: a page with no script cannot hydrate"
    );
    for tag in tags {
        let open = &tag[..tag.find('>').unwrap()];
        assert!(
            open.contains(&format!("nonce=\"{nonce}\"")),
            "{what}: a script without the response's nonce: <script{open}>"
        );
    }
    assert!(!html.contains(" style=\""), "{what}: an inline style");
}

/// Anything but a page: nothing in it may run or load.
fn assert_other(what: &str, csp: &str) {
    assert!(csp.starts_with("default-src 'none';"), "{what}: {csp}");
    assert!(csp.ends_with("; sandbox"), "{what}: {csp}");
}

/// A request and the status it gets: method, path, headers, status.
type Probe<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], u16);

async fn fetch(
    session: &Session,
    method: Method,
    url: String,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = session.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn every_response_of_both_listeners_carries_the_security_headers() {
    let server = Server::start(&["--workers", "2"]).await;
    let session = Session::new();
    let id = session.submit_ok(&server, 12).await;
    common::line_of(&server, &session, 12).await;

    let detail = format!("/tasks/{id}");
    for path in [
        "/",
        "/?task=mandelbrot",
        "/history",
        "/dashboard",
        &detail,
        "/no-such-page",
    ] {
        let (_, headers, html) = fetch(&session, Method::GET, server.url(path), &[]).await;
        let csp = assert_common(path, &headers);
        assert_page(path, &csp, &html);
        // The viewer page frames the dashboard, and nothing else.
        assert!(
            csp.contains(&format!(
                "frame-src 'self' http://localhost:{}",
                server.dashboard_port
            )) || csp.contains("frame-src 'self' http://localhost:8787"),
            "{path}: {csp}"
        );
    }

    let output = format!("/tasks/{id}/output");
    let refusals: [Probe; 7] = [
        (Method::GET, "/pkg/offload.css", &[], 200),
        (Method::GET, "/pkg/offload.wasm", &[], 200),
        (Method::GET, "/api/v1/openapi.json", &[], 200),
        (
            Method::GET,
            "/api/v1/tasks",
            &[("authorization", "Bearer not-a-token")],
            401,
        ),
        // A fibonacci has no binary output.
        (Method::GET, &output, &[], 404),
        (
            Method::POST,
            "/api/submit",
            &[
                ("origin", "http://evil.example"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            403,
        ),
        // Refused before anything else runs: another Host.
        (Method::GET, "/", &[("host", "evil.example")], 403),
    ];
    for (method, path, headers, status) in refusals {
        let what = format!("{method} {path} {headers:?}");
        let (got, headers, body) = fetch(&session, method, server.url(path), headers).await;
        assert_eq!(got, status, "{what}: {body}");
        let csp = assert_common(&what, &headers);
        assert_other(&what, &csp);
    }

    // The dashboard's listener: its pages may be framed by the allowed hosts' pages.
    for (path, status) in [
        ("/status", 200),
        ("/individual-cpu", 200),
        ("/individual-nope", 404),
    ] {
        let (got, headers, html) =
            fetch(&session, Method::GET, server.dashboard_url(path), &[]).await;
        assert_eq!(got, status, "{path}");
        let csp = assert_common(path, &headers);
        assert!(
            csp.contains("frame-ancestors 'self' http://127.0.0.1:*"),
            "{csp}"
        );
        assert_page(path, &csp, &html);
        assert!(csp.contains("frame-src 'none'"), "{csp}");
        // Its charts style the span they measure text in: attributes only, never a sheet.
        assert!(csp.contains("; style-src-attr 'unsafe-inline';"), "{csp}");
    }
    for path in ["/individual-plots.json", "/metrics", "/pkg/dashboard.js"] {
        let (status, headers, _) =
            fetch(&session, Method::GET, server.dashboard_url(path), &[]).await;
        assert_eq!(status, 200, "{path}");
        assert_other(path, &assert_common(path, &headers));
    }
}

/// The `Set-Cookie` of a first visit to `/` with `headers`, if any.
async fn first_cookie(server: &Server, headers: &[(&str, &str)]) -> Option<String> {
    let (status, response, _) = fetch(
        &Session::cookieless(),
        Method::GET,
        server.url("/"),
        headers,
    )
    .await;
    assert_eq!(status, 200);
    response
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
}

fn assert_plain(cookie: Option<String>) {
    let cookie = cookie.expect("a first visit gets a cookie");
    let (pair, attributes) = cookie.split_once("; ").unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(name, "offload_session");
    assert_eq!(value.len(), 32);
    assert_eq!(attributes, "Path=/; HttpOnly; SameSite=Lax");
}

fn assert_secure(cookie: Option<String>) -> String {
    let cookie = cookie.expect("a first visit gets a cookie");
    let (pair, attributes) = cookie.split_once("; ").unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(name, "__Host-offload_session");
    assert_eq!(value.len(), 32);
    assert_eq!(attributes, "Secure; HttpOnly; SameSite=Lax; Path=/");
    pair.to_owned()
}

#[tokio::test]
async fn over_plain_http_the_cookie_is_as_it_always_was() {
    let server = Server::start(&["--workers", "1"]).await;
    assert_plain(first_cookie(&server, &[]).await);
    // Nobody vouches for this header: it changes nothing.
    assert_plain(first_cookie(&server, &[("x-forwarded-proto", "https")]).await);
}

#[tokio::test]
async fn behind_an_https_public_url_the_cookie_is_secure_and_host_only() {
    let server = Server::start(&[
        "--workers",
        "1",
        "--public-url",
        "https://offload.example.org",
    ])
    .await;
    // The public URL's host is answered to without --allowed-hosts.
    let pair = assert_secure(first_cookie(&server, &[("host", "offload.example.org")]).await);
    assert_secure(first_cookie(&server, &[]).await);

    // The secure cookie names the session from then on.
    let known = Session {
        http: reqwest::Client::new(),
        cookie: Some(pair),
    };
    let (status, headers, _) = fetch(&known, Method::GET, server.url("/"), &[]).await;
    assert_eq!(status, 200);
    assert!(headers.get("set-cookie").is_none(), "the session was known");
    // A plain cookie (one a plain-HTTP page could have planted) names nothing here.
    let planted = Session::new();
    let (_, headers, _) = fetch(&planted, Method::GET, server.url("/"), &[]).await;
    assert_secure(
        headers
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned()),
    );
}

#[tokio::test]
async fn a_trusted_proxy_says_when_a_request_came_over_https() {
    let server = Server::start(&[
        "--workers",
        "1",
        "--trusted-proxies",
        "10.0.0.0/8,127.0.0.1",
    ])
    .await;
    assert_secure(first_cookie(&server, &[("x-forwarded-proto", "https")]).await);
    assert_plain(first_cookie(&server, &[("x-forwarded-proto", "http")]).await);
    assert_plain(first_cookie(&server, &[]).await);

    // This peer (loopback) is not one of the trusted proxies: the header is not believed.
    let elsewhere = Server::start(&["--workers", "1", "--trusted-proxies", "10.0.0.0/8"]).await;
    assert_plain(first_cookie(&elsewhere, &[("x-forwarded-proto", "https")]).await);
}

#[test]
fn bad_public_urls_and_proxies_are_refused_at_start() {
    for (flag, value, message) in [
        (
            "--public-url",
            "offload.example.org",
            "--public-url must start with http:// or https://",
        ),
        (
            "--trusted-proxies",
            "10.0.0.0/33",
            "--trusted-proxies takes IP addresses or networks",
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let output = Command::new(binary())
            .args(["--addr", "127.0.0.1:0", "--dashboard-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .args([flag, value])
            .output()
            .expect("running offload");
        assert_eq!(output.status.code(), Some(1), "{flag} {value}");
        let said = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(said.contains(message), "{flag} {value}: {said}");
    }
}
