//! Request guards: every request gets a session id from an HttpOnly, SameSite=Lax cookie, and
//! state-changing requests from another site are refused before any server function runs.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub const COOKIE: &str = "offload_session";

/// The browser session a request belongs to, put into request extensions by [`session_cookie`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(pub String);

impl SessionId {
    fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Only ids this server could have issued are taken from a cookie.
    fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(raw.to_ascii_lowercase()))
    }

    fn from_headers(headers: &axum::http::HeaderMap) -> Option<Self> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, value)| Self::parse(value))
    }
}

/// Middleware: attaches the request's [`SessionId`], issuing a new cookie when there is none.
pub async fn session_cookie(mut request: Request, next: Next) -> Response {
    let existing = SessionId::from_headers(request.headers());
    let id = existing.clone().unwrap_or_else(SessionId::generate);
    request.extensions_mut().insert(id.clone());
    let mut response = next.run(request).await;
    if existing.is_none() {
        let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax", id.0);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Middleware: refuses state-changing requests that a browser marks as coming from another
/// site (`Sec-Fetch-Site`), or whose `Origin` is not this host. Requests with neither header
/// do not come from a browser page, so they cannot carry a victim's cookies by accident.
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) || is_same_site(&request)
    {
        return next.run(request).await;
    }
    tracing::warn!(
        uri = %request.uri(),
        origin = ?request.headers().get(header::ORIGIN),
        "refused a cross-site request"
    );
    (
        StatusCode::FORBIDDEN,
        "cross-site request refused: submit from the Offload page itself",
    )
        .into_response()
}

fn is_same_site(request: &Request<Body>) -> bool {
    let headers = request.headers();
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> Request<Body> {
        let mut builder = Request::builder().method(Method::POST).uri("/api/submit");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn same_origin_requests_pass() {
        assert!(is_same_site(&post(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://127.0.0.1:3000"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(is_same_site(&post(&[("host", "127.0.0.1:3000")])));
    }

    #[test]
    fn other_origins_are_refused() {
        assert!(!is_same_site(&post(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://evil.example"),
        ])));
        assert!(!is_same_site(&post(&[
            ("host", "127.0.0.1:3000"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(!is_same_site(&post(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "null"),
        ])));
    }

    #[test]
    fn only_well_formed_cookies_name_a_session() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; offload_session=0123456789abcdef0123456789ABCDEF"),
        );
        assert_eq!(
            SessionId::from_headers(&headers),
            Some(SessionId("0123456789abcdef0123456789abcdef".into()))
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("offload_session=<script>"),
        );
        assert_eq!(SessionId::from_headers(&headers), None);
    }
}
