//! What browsers are told to refuse, on every response of both listeners: a
//! `Content-Security-Policy`, `X-Content-Type-Options: nosniff` and `Referrer-Policy:
//! same-origin`.
//!
//! A page ([`crate::document`]) carries the policy of [`Policy::page`]: scripts from the site
//! itself or bearing the nonce Leptos gave this response (its hydration script is the only inline
//! one), WASM compiled (`'wasm-unsafe-eval'`), no `unsafe-inline` or `unsafe-eval` for scripts,
//! styles from the site's stylesheet only (no page has an inline style: the queue's bars are
//! `<progress>` elements), framing by allowed pages only. The dashboard's pages alone allow
//! inline style attributes: its charts (plotters) measure text in a `<span>` they style through
//! `setAttribute`. Everything else (the API's JSON, files,
//! task outputs, refusals) gets [`Policy::other`], under which nothing runs or loads at all.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// One listener's policy: what its pages may frame, and who may frame them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `frame-src`: the origins a page may show in an iframe.
    frame_src: String,
    /// `frame-ancestors`: the pages that may show this listener's pages in an iframe.
    frame_ancestors: String,
    /// `connect-src` beyond the site itself (cargo-leptos's reload socket while it watches).
    connect_src: String,
    /// Whether scripts may set `style` attributes (`style-src-attr 'unsafe-inline'`): never a
    /// script, and never a stylesheet, only an element's own style.
    style_attributes: bool,
    /// [`Policy::other`], made once: it goes out with every response that is not a page.
    other: HeaderValue,
}

impl Policy {
    /// The app's listener: its pages are framed by nothing but its own pages, and frame the
    /// dashboard whose `/status` is `dashboard_url` (the viewer page).
    pub fn app(dashboard_url: &str, options: &leptos::config::LeptosOptions) -> Self {
        let frame_src = match source_of(dashboard_url) {
            Some(origin) => format!("'self' {origin}"),
            // An address CSP cannot name (an IPv6 literal): any http(s) page rather than none.
            None => "'self' http: https:".to_owned(),
        };
        Self::new(
            frame_src,
            "'self'".to_owned(),
            reload_socket(options),
            false,
        )
    }

    /// The dashboard's listener: its pages frame nothing and may be framed by the pages of
    /// `frame_ancestors` (the allowed hosts, so the viewer page can show them). Its charts'
    /// text is measured in a `<span>` that plotters styles with `setAttribute("style", …)`:
    /// refused, every label would be measured wrong and every refusal logged.
    pub fn dashboard(frame_ancestors: &str) -> Self {
        Self::new(
            "'none'".to_owned(),
            frame_ancestors.to_owned(),
            String::new(),
            true,
        )
    }

    fn new(
        frame_src: String,
        frame_ancestors: String,
        connect_src: String,
        style_attributes: bool,
    ) -> Self {
        let other = format!(
            "default-src 'none'; frame-ancestors {frame_ancestors}; object-src 'none'; \
             base-uri 'none'; form-action 'none'; sandbox"
        );
        Self {
            frame_src,
            frame_ancestors,
            connect_src,
            style_attributes,
            // Its sources come from the allowed hosts, which are plain host names.
            other: HeaderValue::from_str(&other)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; sandbox")),
        }
    }

    /// The policy of a page whose inline scripts carry `nonce`.
    pub fn page(&self, nonce: &str) -> String {
        let Self {
            frame_src,
            frame_ancestors,
            connect_src,
            style_attributes,
            ..
        } = self;
        let style_attributes = if *style_attributes {
            " style-src-attr 'unsafe-inline';"
        } else {
            ""
        };
        format!(
            "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
             style-src 'self';{style_attributes} img-src 'self' data:; \
             connect-src 'self'{connect_src}; \
             frame-src {frame_src}; frame-ancestors {frame_ancestors}; object-src 'none'; \
             base-uri 'none'; form-action 'self'"
        )
    }

    /// The policy of any other response: nothing in it may run, load or submit, even if a
    /// browser is made to show it as a document.
    pub fn other(&self) -> &str {
        self.other.to_str().unwrap_or_default()
    }

    /// Puts this policy, with the response's nonce, on the page being rendered. Called by the
    /// document while Leptos renders it; without a nonce (no request being answered), the
    /// middleware's [`Policy::other`] stays, which lets no script run.
    pub fn send_with_page(&self) {
        use leptos::prelude::use_context;
        let Some(nonce) = leptos::nonce::use_nonce() else {
            return;
        };
        let Some(response) = use_context::<leptos_axum::ResponseOptions>() else {
            return;
        };
        if let Ok(value) = HeaderValue::from_str(&self.page(&nonce)) {
            response.insert_header(header::CONTENT_SECURITY_POLICY, value);
        }
    }
}

/// `http://host:port` of an absolute http(s) URL, if CSP can name it: a host name or an IPv4
/// address (Chromium refuses IPv6 literals in source expressions), no user information.
fn source_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let named = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    named.then(|| format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// `cargo leptos watch` reloads its pages through a WebSocket on the reload port: allowed only
/// while it watches (it sets `LEPTOS_WATCH`, as Leptos's `AutoReload` checks).
fn reload_socket(options: &leptos::config::LeptosOptions) -> String {
    if std::env::var_os("LEPTOS_WATCH").is_none() {
        return String::new();
    }
    let port = options.reload_external_port.unwrap_or(options.reload_port);
    format!(
        " ws://{}:{port} ws://localhost:{port}",
        options.site_addr.ip()
    )
}

/// Middleware for both listeners: the headers every response carries. A response that set its
/// own policy (a page, through [`Policy::send_with_page`]) keeps it.
pub async fn security_headers(
    State(policy): State<Arc<Policy>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy.other.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> leptos::config::LeptosOptions {
        leptos::config::LeptosOptions::builder()
            .output_name("offload")
            .build()
    }

    #[test]
    fn a_page_runs_only_the_sites_scripts_and_its_own_nonce() {
        let policy = Policy::app("http://localhost:8787/status", &options());
        let page = policy.page("abc123");
        let script_src = page
            .split("; ")
            .find(|d| d.starts_with("script-src "))
            .unwrap();
        assert_eq!(
            script_src,
            "script-src 'self' 'nonce-abc123' 'wasm-unsafe-eval'"
        );
        assert!(!page.contains("unsafe-inline") && !page.contains("'unsafe-eval'"));
        for directive in [
            "frame-src 'self' http://localhost:8787",
            "frame-ancestors 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "style-src 'self'",
        ] {
            assert!(page.contains(directive), "{directive} in {page}");
        }
    }

    #[test]
    fn the_dashboard_is_framed_by_the_allowed_hosts_and_frames_nothing() {
        let policy = Policy::dashboard("'self' http://127.0.0.1:*");
        let page = policy.page("n");
        assert!(page.contains("frame-ancestors 'self' http://127.0.0.1:*"));
        assert!(page.contains("frame-src 'none'"));
        assert!(page.contains("style-src 'self'; style-src-attr 'unsafe-inline';"));
        assert!(
            !Policy::app("http://localhost:8787/", &options())
                .page("n")
                .contains("style-src-attr")
        );
        assert_eq!(
            policy.other(),
            "default-src 'none'; frame-ancestors 'self' http://127.0.0.1:*; object-src 'none'; \
             base-uri 'none'; form-action 'none'; sandbox"
        );
    }

    #[test]
    fn only_a_plain_origin_is_named_as_a_frame_source() {
        assert_eq!(
            source_of("https://Dask.Example.org:8787/status?x=1").as_deref(),
            Some("https://dask.example.org:8787")
        );
        assert_eq!(
            source_of("http://127.0.0.1:8787").as_deref(),
            Some("http://127.0.0.1:8787")
        );
        // Markup or another directive cannot be smuggled into the header.
        for bad in [
            "http://[::1]:8787/status",
            "http://a;script-src *",
            "http://user@host/",
            "javascript:alert(1)",
            "http:///status",
        ] {
            assert_eq!(source_of(bad), None, "{bad}");
        }
        let policy = Policy::app("http://[::1]:8787/status", &options());
        assert!(policy.page("n").contains("frame-src 'self' http: https:;"));
    }
}
