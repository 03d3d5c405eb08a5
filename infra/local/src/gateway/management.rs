//! The management API (`/@connections/{id}`: PostToConnection, GetConnection,
//! DeleteConnection) that the real `aws-sdk-apigatewaymanagement` client (the fan-out's pusher)
//! calls, with API Gateway's answers and its check of who may call it.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use relay_core::ports::connections::ConnectionId;
use serde_json::json;

use super::{Gateway, MAX_FRAME_BYTES};

/// The management API's error answer as API Gateway gives it: the type in a header and the body.
fn aws_error(status: StatusCode, kind: &'static str, message: String) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"message": message, "__type": kind})),
    )
        .into_response();
    r.headers_mut()
        .insert("x-amzn-errortype", http::HeaderValue::from_static(kind));
    r
}

fn gone() -> Response {
    aws_error(
        StatusCode::GONE,
        "GoneException",
        "GoneException".to_owned(),
    )
}

/// Who may use the management API, which can write to any browser: a loopback peer (this
/// machine) that sends this process's management key (this process: its own fan-out and
/// WebSocket routes) or, with `--lambda-endpoint`, a SigV4 signature of the functions'
/// credential. Anything else is 403 with API Gateway's body for a request without a valid
/// signature, and nothing is read or done. The key is the credential, not the connection id:
/// ids are in the logs, as API Gateway's own logs name them (docs/security.md).
fn authorized(gw: &Gateway, peer: &SocketAddr, req: &Signed<'_>) -> Option<Response> {
    let signed = || {
        gw.signers
            .as_ref()
            .is_some_and(|v| v.verify(req.method.as_str(), req.uri, req.headers, req.body))
    };
    (!peer.ip().is_loopback() || !(gw.management_key.verify(req.headers) || signed()))
        .then(forbidden)
}

/// What a management request's signature covers.
struct Signed<'a> {
    method: &'a http::Method,
    /// The path and query as received (still encoded).
    uri: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

/// [`authorized`] for the requests without a body (GetConnection, DeleteConnection).
fn authorized_without_body(
    gw: &Gateway,
    peer: &SocketAddr,
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Option<Response> {
    let signed = Signed {
        method,
        uri: path_and_query(uri),
        headers,
        body: &[],
    };
    authorized(gw, peer, &signed)
}

/// A body-less request's answer when it is not authorized, else its connection id (410 for
/// one that cannot exist).
fn authorized_id(
    gw: &Gateway,
    peer: &SocketAddr,
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    path: &ConnectionPath,
) -> ControlFlow<Response, ConnectionId> {
    if let Some(r) = authorized_without_body(gw, peer, method, uri, headers) {
        return ControlFlow::Break(r);
    }
    match ConnectionId::parse(&path.id) {
        Some(id) => ControlFlow::Continue(id),
        None => ControlFlow::Break(gone()),
    }
}

fn path_and_query(uri: &http::Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// `/@connections/{id}`, or `/{stage}/@connections/{id}` as the functions' client sends it
/// (its endpoint is the stage's URL).
#[derive(serde::Deserialize)]
pub struct ConnectionPath {
    id: String,
}

fn forbidden() -> Response {
    aws_error(
        StatusCode::FORBIDDEN,
        "ForbiddenException",
        "Forbidden".to_owned(),
    )
}

/// API Gateway's answer to a post over the frame limit.
fn payload_too_large() -> Response {
    aws_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PayloadTooLargeException",
        format!("Message too long: the limit is {MAX_FRAME_BYTES} bytes"),
    )
}

pub async fn post_to_connection(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<ConnectionPath>,
    method: http::Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // Nothing is read for a caller that can be refused without it: only a signature covers
    // the body.
    if !peer.ip().is_loopback() || (gw.signers.is_none() && !gw.management_key.verify(&headers)) {
        return forbidden();
    }
    // Read at most one byte past the limit, whatever the body's size or its Content-Length.
    let body = match axum::body::to_bytes(body, MAX_FRAME_BYTES + 1).await {
        Ok(b) if b.len() <= MAX_FRAME_BYTES => b,
        _ => return payload_too_large(),
    };
    let signed = Signed {
        method: &method,
        uri: path_and_query(&uri),
        headers: &headers,
        body: &body,
    };
    if let Some(r) = authorized(&gw, &peer, &signed) {
        return r;
    }
    let id = id.id;
    if gw.faults.should_fail(&body) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"message": "Internal server error (injected)"})),
        )
            .into_response();
    }
    let Some(id) = ConnectionId::parse(&id) else {
        return gone();
    };
    // The posted bytes become the frame as they are (no copy) when they are UTF-8, as the
    // fan-out's JSON always is; anything else is sent as its lossy text.
    let text = match Utf8Bytes::try_from(body.clone()) {
        Ok(text) => text,
        Err(_) => Utf8Bytes::from(String::from_utf8_lossy(&body).into_owned()),
    };
    if gw.post(&id, text) {
        StatusCode::OK.into_response()
    } else {
        gone()
    }
}

pub async fn get_connection(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<ConnectionPath>,
    method: http::Method,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let id = match authorized_id(&gw, &peer, &method, &uri, &headers, &id) {
        ControlFlow::Continue(id) => id,
        ControlFlow::Break(r) => return r,
    };
    let Ok(sockets) = gw.sockets.lock() else {
        return gone();
    };
    match sockets.get(&id).filter(|s| !s.queue.is_closing()) {
        Some(s) => {
            let last = s.last_active.lock().map(|t| *t).unwrap_or(s.connected_at);
            axum::Json(json!({
                "connectedAt": s.connected_at.to_rfc3339(),
                "lastActiveAt": last.to_rfc3339(),
                "identity": {"sourceIp": s.source_ip, "userAgent": s.user_agent},
            }))
            .into_response()
        }
        None => gone(),
    }
}

pub async fn delete_connection(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<ConnectionPath>,
    method: http::Method,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let id = match authorized_id(&gw, &peer, &method, &uri, &headers, &id) {
        ControlFlow::Continue(id) => id,
        ControlFlow::Break(r) => return r,
    };
    if gw.close(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        gone()
    }
}
