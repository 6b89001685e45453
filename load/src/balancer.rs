//! HAProxy (Debian's) in front of app servers, configured as the README's "Several app
//! servers" says, for the tests and the benchmark that start one: round robin, no stickiness,
//! each server checked on its `/health` (every 200 ms here, to notice quickly), a refused
//! connection retried on another, events passed on at once and a closed page's stream closed
//! on the server at once.

use std::path::Path;

/// Debian's HAProxy: in /usr/sbin, which only root's PATH holds.
pub fn haproxy() -> &'static Path {
    let sbin = Path::new("/usr/sbin/haproxy");
    if sbin.exists() {
        sbin
    } else {
        Path::new("haproxy")
    }
}

/// The configuration of a balancer on loopback port `port` in front of `servers`: each one's
/// app port and the port its `/health` is on (the dashboard's listener with embedded workers,
/// the app's with NATS workers), named `app0`, `app1`, …
pub fn haproxy_config(port: u16, servers: &[(u16, u16)]) -> String {
    let backends: String = servers
        .iter()
        .enumerate()
        .map(|(i, (app, health))| {
            format!("    server app{i} 127.0.0.1:{app} check port {health}\n")
        })
        .collect();
    format!(
        r"global
    maxconn 8000
defaults
    mode http
    # 1,000 sessions hold two connections each, on both sides of it.
    maxconn 8000
    timeout connect 2s
    timeout client 5m
    timeout server 5m
    option redispatch 1
    option http-no-delay
    option abortonclose
    retries 3
frontend app
    bind 127.0.0.1:{port}
    default_backend servers
backend servers
    balance roundrobin
    option httpchk
    http-check send meth GET uri /health ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server inter 200ms fall 1 rise 1
{backends}"
    )
}
