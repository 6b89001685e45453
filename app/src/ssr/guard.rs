//! Request guards: only allowed `Host` names are answered (against DNS rebinding), every
//! request gets a session id from an HttpOnly, SameSite=Lax cookie (`Secure` and `__Host-` when
//! the page is served over HTTPS: [`CookiePolicy`]), and state-changing requests from another
//! origin are refused before any server function runs.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The session cookie's name over plain HTTP.
pub const COOKIE: &str = "offload_session";
/// Its name over HTTPS: browsers keep a `__Host-` cookie only if it is `Secure`, has `Path=/`
/// and no `Domain`, so no other host and no plain-HTTP page can set or overwrite it.
pub const SECURE_COOKIE: &str = "__Host-offload_session";

/// The browser session a request belongs to, put into request extensions by [`session_cookie`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub String);

impl SessionId {
    /// The owner of a token's tasks, `token:NAME`: no cookie can name it (those are 32 hex
    /// digits).
    pub fn for_token(name: &str) -> Self {
        Self(format!("token:{name}"))
    }

    /// Whether a token owns it (then it is never forgotten for idleness: its tasks must stay
    /// findable through the API).
    pub fn is_token(&self) -> bool {
        self.0.starts_with("token:")
    }

    fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Only ids this server could have issued are taken from a cookie.
    fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(raw.to_ascii_lowercase()))
    }

    /// The session named by the cookie called `cookie`.
    fn from_headers(headers: &axum::http::HeaderMap, cookie: &str) -> Option<Self> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == cookie)
            .and_then(|(_, value)| Self::parse(value))
    }
}

/// Put beside the [`SessionId`] when the request came without a session cookie: nothing the
/// server holds can belong to it yet.
#[derive(Debug, Clone, Copy)]
pub struct FreshSession;

/// When the session cookie is `Secure` (and so named [`SECURE_COOKIE`]): always when the
/// public address is HTTPS, else for requests a trusted proxy says came over HTTPS.
#[derive(Debug, Clone, Default)]
pub struct CookiePolicy {
    /// The public address is `https://` (`--public-url`): every cookie is `Secure`.
    https: bool,
    /// Peers whose `X-Forwarded-Proto` is believed (`--trusted-proxies`).
    trusted_proxies: Arc<[ipnet::IpNet]>,
}

impl CookiePolicy {
    /// `public_url` is the address people open, if it was given; `trusted_proxies` are IP
    /// addresses or CIDR networks (`10.0.0.0/8`).
    pub fn new(public_url: Option<&str>, trusted_proxies: &[String]) -> Result<Self, String> {
        let https = match public_url.map(str::trim) {
            None | Some("") => false,
            Some(url) => {
                let lower = url.to_ascii_lowercase();
                if lower.starts_with("https://") {
                    true
                } else if lower.starts_with("http://") {
                    false
                } else {
                    return Err(format!(
                        "--public-url must start with http:// or https:// (got {url:?})"
                    ));
                }
            }
        };
        let trusted_proxies = trusted_proxies
            .iter()
            .map(|raw| raw.trim())
            .filter(|raw| !raw.is_empty())
            .map(|raw| {
                raw.parse::<ipnet::IpNet>()
                    .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!(
                            "--trusted-proxies takes IP addresses or networks such as \
                             10.0.0.0/8 (got {raw:?})"
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            https,
            trusted_proxies,
        })
    }

    /// Whether `request` reached the browser over HTTPS, as far as this server can know.
    pub fn secure(&self, request: &Request) -> bool {
        if self.https {
            return true;
        }
        let from_trusted_proxy = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_some_and(|peer| {
                self.trusted_proxies
                    .iter()
                    .any(|net| net.contains(&peer.ip()))
            });
        // The first value is the one the proxy nearest the browser wrote.
        from_trusted_proxy
            && request
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }
}

/// Middleware: attaches the request's [`SessionId`], issuing a new cookie when there is none.
/// Issuing a cookie creates nothing on the server: a session exists from its first submit. Over
/// HTTPS only the `__Host-` cookie names a session, so a cookie planted over plain HTTP cannot.
pub async fn session_cookie(
    State(policy): State<CookiePolicy>,
    mut request: Request,
    next: Next,
) -> Response {
    let secure = policy.secure(&request);
    let name = if secure { SECURE_COOKIE } else { COOKIE };
    let existing = SessionId::from_headers(request.headers(), name);
    let id = existing.clone().unwrap_or_else(SessionId::generate);
    request.extensions_mut().insert(id.clone());
    if existing.is_none() {
        request.extensions_mut().insert(FreshSession);
    }
    let mut response = next.run(request).await;
    if existing.is_none() {
        let cookie = if secure {
            format!("{name}={}; Secure; HttpOnly; SameSite=Lax; Path=/", id.0)
        } else {
            format!("{name}={}; Path=/; HttpOnly; SameSite=Lax", id.0)
        };
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The host names this server answers to (lower case, without port): a request naming any
/// other `Host` is refused, so a hostile page cannot reach it through DNS rebinding, and only
/// these may be the `Origin` of a state-changing request or frame the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts(Arc<[String]>);

impl AllowedHosts {
    /// `localhost`, `127.0.0.1`, `[::1]`, the given extra names, and the addresses the server
    /// listens on (unless unspecified, such as 0.0.0.0, which name no host).
    pub fn new<'a>(
        extra: impl IntoIterator<Item = &'a str>,
        listening: impl IntoIterator<Item = std::net::SocketAddr>,
    ) -> Self {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(str::to_owned)
            .chain(extra.into_iter().map(|h| h.trim().to_ascii_lowercase()))
            .chain(
                listening
                    .into_iter()
                    .filter(|a| !a.ip().is_unspecified())
                    .map(|a| match a {
                        std::net::SocketAddr::V4(a) => a.ip().to_string(),
                        std::net::SocketAddr::V6(a) => format!("[{}]", a.ip()),
                    }),
            )
            .filter(|h| !h.is_empty())
            .collect();
        hosts.sort();
        hosts.dedup();
        Self(hosts.into())
    }

    /// Whether `authority` (`host` or `host:port`) names an allowed host.
    pub fn allows(&self, authority: &str) -> bool {
        let host = host_of(authority).to_ascii_lowercase();
        self.0.contains(&host)
    }

    /// The `frame-ancestors` sources for these hosts, any port, http or https. CSP's host
    /// sources cannot name an IPv6 literal (browsers reject `http://[::1]:*` with a console
    /// error), so those hosts are left out: a page served from one embeds the dashboard only
    /// from its own origin ('self').
    pub fn frame_ancestors(&self) -> String {
        std::iter::once("'self'".to_owned())
            .chain(
                self.0
                    .iter()
                    .filter(|h| !h.starts_with('['))
                    .flat_map(|h| [format!("http://{h}:*"), format!("https://{h}:*")]),
            )
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The host an absolute URL names: `https://user@Offload.example.org:8443/x` →
/// `Offload.example.org`.
pub fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    Some(host_of(authority)).filter(|host| !host.is_empty())
}

/// `host:port` → `host`; `[::1]:3000` → `[::1]`.
fn host_of(authority: &str) -> &str {
    let authority = authority.trim();
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The authority a request is addressed to: its `Host` header, or the URI's (HTTP/2).
fn authority(request: &Request<Body>) -> Option<&str> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
}

/// Middleware for both listeners: answers only requests addressed to an allowed host.
pub async fn allowed_host(
    State(hosts): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    match authority(&request) {
        Some(host) if hosts.allows(host) => next.run(request).await,
        host => {
            tracing::warn!(?host, uri = %request.uri(), "refused a request for another host");
            (
                StatusCode::FORBIDDEN,
                "this server does not answer to that host name: open it by one of the names it \
                 was started with (--allowed-hosts)",
            )
                .into_response()
        }
    }
}

/// Middleware: refuses state-changing requests that a browser marks as coming from another
/// site (`Sec-Fetch-Site`), or whose `Origin` is not an allowed host. Requests with neither
/// header do not come from a browser page, so they cannot carry a victim's cookies by accident.
pub async fn refuse_cross_site(
    State(hosts): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) || is_same_site(&request, &hosts)
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

fn is_same_site(request: &Request<Body>, hosts: &AllowedHosts) -> bool {
    let headers = request.headers();
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    origin
        .to_str()
        .ok()
        .and_then(|o| {
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
        })
        .is_some_and(|authority| hosts.allows(authority))
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

    fn hosts() -> AllowedHosts {
        AllowedHosts::new(["Offload.Example"], ["0.0.0.0:3000".parse().unwrap()])
    }

    #[test]
    fn same_origin_requests_pass() {
        let hosts = hosts();
        assert!(is_same_site(
            &post(&[
                ("host", "127.0.0.1:3000"),
                ("origin", "http://127.0.0.1:3000"),
                ("sec-fetch-site", "same-origin"),
            ]),
            &hosts
        ));
        assert!(is_same_site(&post(&[("host", "127.0.0.1:3000")]), &hosts));
        assert!(is_same_site(
            &post(&[("origin", "https://offload.example")]),
            &hosts
        ));
    }

    #[test]
    fn other_origins_are_refused_even_with_a_matching_host() {
        let hosts = hosts();
        for headers in [
            [
                ("host", "127.0.0.1:3000"),
                ("origin", "http://evil.example"),
            ],
            // DNS rebinding: the Host is the attacker's name too.
            [
                ("host", "evil.example:3000"),
                ("origin", "http://evil.example:3000"),
            ],
            [("host", "127.0.0.1:3000"), ("sec-fetch-site", "cross-site")],
            [("host", "127.0.0.1:3000"), ("origin", "null")],
        ] {
            assert!(!is_same_site(&post(&headers), &hosts), "{headers:?}");
        }
    }

    #[test]
    fn host_names_are_matched_without_their_port() {
        let hosts = hosts();
        for good in [
            "localhost",
            "LOCALHOST:3000",
            "127.0.0.1:1",
            "[::1]:3000",
            "offload.example",
        ] {
            assert!(hosts.allows(good), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:3000",
            "0.0.0.0:3000",
            "localhost.evil",
            "[::2]:3000",
            "",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        let ancestors = hosts.frame_ancestors();
        assert!(ancestors.contains("http://offload.example:*"));
        // Browsers reject an IPv6 literal as a source expression.
        assert!(!ancestors.contains('['), "{ancestors}");
    }

    #[test]
    fn only_well_formed_cookies_name_a_session() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; offload_session=0123456789abcdef0123456789ABCDEF"),
        );
        assert_eq!(
            SessionId::from_headers(&headers, COOKIE),
            Some(SessionId("0123456789abcdef0123456789abcdef".into()))
        );
        // Over HTTPS only the __Host- cookie counts.
        assert_eq!(SessionId::from_headers(&headers, SECURE_COOKIE), None);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("offload_session=<script>"),
        );
        assert_eq!(SessionId::from_headers(&headers, COOKIE), None);
    }

    fn through(peer: &str, proto: Option<&str>) -> Request<Body> {
        let mut request = Request::builder().uri("/");
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        let mut request = request.body(Body::empty()).unwrap();
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        request
    }

    #[test]
    fn https_is_believed_from_the_public_url_or_a_trusted_proxy_only() {
        let plain = CookiePolicy::new(None, &[]).unwrap();
        assert!(!plain.secure(&through("127.0.0.1:5000", Some("https"))));
        let public = CookiePolicy::new(Some("https://offload.example.org"), &[]).unwrap();
        assert!(public.secure(&through("127.0.0.1:5000", None)));
        let proxied = CookiePolicy::new(None, &["10.0.0.0/8".into(), " 127.0.0.1".into()]).unwrap();
        assert!(proxied.secure(&through("127.0.0.1:5000", Some("HTTPS"))));
        assert!(proxied.secure(&through("10.1.2.3:5000", Some("https, http"))));
        assert!(!proxied.secure(&through("10.1.2.3:5000", Some("http"))));
        assert!(!proxied.secure(&through("10.1.2.3:5000", None)));
        // Anyone else may write the header: it is not believed.
        assert!(!proxied.secure(&through("192.0.2.7:5000", Some("https"))));
        assert!(!proxied.secure(&post(&[("x-forwarded-proto", "https")])));
    }

    #[test]
    fn a_urls_host_is_found_without_port_or_user() {
        assert_eq!(
            url_host("https://user@Offload.example.org:8443/x?y"),
            Some("Offload.example.org")
        );
        assert_eq!(url_host("http://[::1]:3000/"), Some("[::1]"));
        assert_eq!(url_host("https://"), None);
        assert_eq!(url_host("offload.example.org"), None);
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        let error = CookiePolicy::new(Some("offload.example.org"), &[]).unwrap_err();
        assert!(error.contains("--public-url must start with"), "{error}");
        let error = CookiePolicy::new(None, &["10.0.0.0/33".into()]).unwrap_err();
        assert!(
            error.contains("--trusted-proxies takes IP addresses"),
            "{error}"
        );
        assert!(
            !CookiePolicy::new(Some("http://offload.example.org"), &[])
                .unwrap()
                .https
        );
    }
}
