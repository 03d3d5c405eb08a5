//! `relay serve`'s metrics: the Prometheus recorder behind the `metrics` facade, and
//! `GET /metrics` (Prometheus text exposition) for this machine only. The recorder has no HTTP
//! listener of its own: the text is rendered by a route of the relay's router, behind the
//! same-machine check, so there is one port and one set of timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use relay_core::telemetry::metrics as m;
use serde_json::json;

/// Histogram buckets, in seconds, of every `_seconds` metric: a few ms (a webhook on SQLite) to
/// a minute (a fan-out retried after failures).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often histogram samples are folded into their buckets between scrapes (a scrape folds
/// them too), so that memory stays bounded when nothing scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics recorder: {0}")]
    Build(#[from] metrics_exporter_prometheus::BuildError),
}

/// Installs the Prometheus recorder (with the open-connections gauge: this process runs every
/// WebSocket route) and its upkeep task. Must run inside the Tokio runtime.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .install_recorder()?;
    m::describe();
    m::track_open_connections();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// `GET /metrics`, answering only a peer on this machine that names this machine as `Host`.
pub fn routes(handle: PrometheusHandle, listen: SocketAddr) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(handle)
        .layer(axum::middleware::from_fn_with_state(
            listen,
            this_machine_only,
        ))
}

async fn render(State(handle): State<PrometheusHandle>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response()
}

/// Why a metrics request is refused, if it is: a peer that is not on this machine (the relay
/// may listen on every interface for its webhook and WebSocket routes), or a `Host` that does
/// not name this machine (a page of another site reaching it through DNS rebinding).
pub fn refusal(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    listen: SocketAddr,
) -> Option<&'static str> {
    if !peer.is_some_and(|p| p.ip().is_loopback()) {
        return Some("metrics answer requests from this machine only");
    }
    crate::web::foreign_request(headers, listen)
        .map(|_| "metrics answer requests to localhost only")
}

async fn this_machine_only(
    State(listen): State<SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(p)| *p);
    match refusal(peer, req.headers(), listen) {
        Some(why) => (StatusCode::FORBIDDEN, axum::Json(json!({"error": why}))).into_response(),
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    fn listen() -> SocketAddr {
        "0.0.0.0:8000".parse().unwrap()
    }

    fn request(peer: Option<&str>, host: &str) -> axum::extract::Request {
        let mut req = http::Request::builder()
            .uri("/metrics")
            .header(http::header::HOST, host)
            .body(axum::body::Body::empty())
            .unwrap();
        if let Some(p) = peer {
            req.extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(p.parse().unwrap()));
        }
        req
    }

    /// Through the real middleware with a forged peer address: the machine's tests can only
    /// connect over loopback, so a remote peer is put in the request's `ConnectInfo`.
    #[tokio::test]
    async fn metrics_answer_this_machine_only() {
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let mut app = routes(handle, listen());
        for (peer, host, want) in [
            (Some("127.0.0.1:50000"), "127.0.0.1:8000", StatusCode::OK),
            (Some("[::1]:50000"), "localhost:8000", StatusCode::OK),
            (
                Some("192.0.2.7:50000"),
                "127.0.0.1:8000",
                StatusCode::FORBIDDEN,
            ),
            (
                Some("10.0.0.5:50000"),
                "relay.example:8000",
                StatusCode::FORBIDDEN,
            ),
            (
                Some("127.0.0.1:50000"),
                "evil.example:8000",
                StatusCode::FORBIDDEN,
            ),
            (None, "127.0.0.1:8000", StatusCode::FORBIDDEN),
        ] {
            let resp = app.call(request(peer, host)).await.unwrap();
            assert_eq!(resp.status(), want, "{peer:?} {host}");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            if want == StatusCode::FORBIDDEN {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert!(v["error"].as_str().unwrap().contains("only"), "{v}");
            }
        }
    }
}
