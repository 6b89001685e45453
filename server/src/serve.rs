//! Serving one listener: hyper directly, because `axum::serve` has no header-read timeout and no
//! cap on connections. Each listener has its own cap, so a flood on one cannot take the file
//! descriptors the other needs to accept; an accept error (such as running out of them) is
//! logged and retried shortly instead of ending the server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Limits that apply to each connection of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// Connections open at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// After `stop`, how long open connections get to finish.
    pub drain: Duration,
}

/// Serves `app` on `listener` until `stop` resolves, then lets open connections finish (up to
/// `limits.drain`).
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(listener = name, %error, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(app.clone().map_request(with_peer(peer))),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are a client's: a reset, a timeout, a malformed request.
            if let Err(error) = connection.await {
                tracing::debug!(listener = name, %error, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain) => {
            tracing::info!(listener = name, "closed the connections still open");
        }
    }
}

/// Tells each request of a connection who is at its other end (`ConnectInfo`, as axum's own
/// server does): a trusted proxy's forwarded headers are believed only from its address.
fn with_peer<B>(
    peer: SocketAddr,
) -> impl Fn(axum::http::Request<B>) -> axum::http::Request<B> + Clone {
    move |mut request| {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        request
    }
}
