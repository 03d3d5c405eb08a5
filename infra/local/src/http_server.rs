//! `relay serve`'s HTTP server: hyper's HTTP/1 connection builder (with hyper-util's Tokio
//! glue) rather than `axum::serve`, which
//! has no timeouts at all (a client that opens a connection and sends nothing holds a file
//! descriptor forever, and enough of them stop the relay from accepting anything).
//!
//! - Header timeout (`--http-header-timeout`): hyper's HTTP/1 `header_read_timeout`, which
//!   starts whenever the connection waits for a request head, so it is also the idle
//!   keep-alive timeout: a connection with no request under way is closed after it.
//! - Request timeout (`--http-request-timeout`): the whole request, body included, answered 408
//!   JSON. A middleware of our own, not tower-http's: its `TimeoutBody` resets on every frame
//!   (a body trickled a byte at a time never times out) and its `TimeoutLayer` answers an empty
//!   408. WebSocket upgrades answer at once and are bounded by the gateway's own limits.
//! - HTTP/1 only: hyper-util's auto builder, with upgrades, sniffs for HTTP/2 by reading the
//!   first bytes with no timeout at all (an idle socket would never be closed).
//! - Accept errors (EMFILE when out of file descriptors) back off and retry: the pending
//!   connections wait in the listen backlog until timeouts free descriptors.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_service::Service;

#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub header: Duration,
    pub request: Duration,
    /// After the shutdown signal, how long connections get to finish before they are dropped.
    pub drain: Duration,
}

/// The whole-request bound, as a layer on the router.
pub fn with_request_timeout(app: Router, limit: Duration) -> Router {
    app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(limit, next.run(req)).await {
                Ok(resp) => resp,
                Err(_) => (
                    StatusCode::REQUEST_TIMEOUT,
                    axum::Json(json!({"error": "request timed out"})),
                )
                    .into_response(),
            }
        },
    ))
}

/// Serves `app` until `shutdown` resolves, then stops accepting, lets every connection finish
/// its request in flight, and returns once they have or `limits.drain` has passed (a client
/// that hangs never holds the process).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let app = with_request_timeout(app, limits.request);
    // HTTP/1 only: the auto builder's protocol sniffing (always on with upgrades, before any
    // HTTP/1 timer runs) waits for a first byte forever. Every client of relay serve speaks
    // HTTP/1.1 over plain http (browsers, the management API client, a tunnel's forwarder).
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .keep_alive(true);
    // Sender dropped = shut down; receivers alive = connections still open.
    let (stop_tx, stop_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let mut app = app.clone();
            async move { Ok::<Response, Infallible>(app.call(req).await.unwrap_or_else(|e| match e {})) }
        });
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let conn = builder
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.changed() => conn.as_mut().graceful_shutdown(),
            }
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(stop);
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(());
    if tokio::time::timeout(limits.drain, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open = stop_tx.receiver_count(),
            "connections still open after the drain timeout: dropping them"
        );
    }
}
