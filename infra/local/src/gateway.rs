//! The local host's API Gateway WebSocket API: `GET /ws?token=…` becomes a connection whose
//! connect, frames and disconnect are handed to the shared WebSocket route handler as API
//! Gateway proxy events, and `/@connections/{id}` is a working management API that the real
//! `aws-sdk-apigatewaymanagement` client (the fan-out's pusher) posts to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
};
use relay_apigateway::websocket;
use relay_core::handlers::subscription::SubscriptionHandler;
use relay_core::ports::connections::ConnectionId;
use serde_json::json;
use tokio::sync::mpsc;

/// API Gateway's frame limit; larger client frames close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub idle: Duration,
    pub lifetime: Duration,
}

enum Outbound {
    Text(Utf8Bytes),
    Close(u16, &'static str),
}

struct Socket {
    tx: mpsc::UnboundedSender<Outbound>,
    connected_at: chrono::DateTime<Utc>,
    last_active: Arc<Mutex<chrono::DateTime<Utc>>>,
    source_ip: String,
    user_agent: Option<String>,
}

pub struct Gateway {
    handler: Arc<SubscriptionHandler>,
    sockets: Mutex<HashMap<ConnectionId, Socket>>,
    limits: Limits,
    faults: Faults,
}

/// Failures injected into the management API, for the tests of retries and dead letters.
pub struct Faults {
    fail_next: std::sync::atomic::AtomicU64,
    poison_bot: Option<String>,
}

impl Faults {
    pub fn new(fail_next: u64, poison_bot: Option<String>) -> Self {
        Self {
            fail_next: std::sync::atomic::AtomicU64::new(fail_next),
            poison_bot,
        }
    }

    /// Only event messages (the fan-out's) fail; replies to a client's own actions do not.
    fn should_fail(&self, body: &[u8]) -> bool {
        use std::sync::atomic::Ordering;
        if self.fail_next.load(Ordering::SeqCst) == 0 && self.poison_bot.is_none() {
            return false;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return false;
        };
        if !v["event_id"].is_string() {
            return false;
        }
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return true;
        }
        self.poison_bot
            .as_deref()
            .is_some_and(|bot| v["bot_id"] == bot)
    }
}

fn new_connection_id() -> ConnectionId {
    use base64::Engine;
    let bytes: [u8; 12] = rand::random();
    // API Gateway ids look like `L0SM9cOFvHcCIhw=`: base64 of random bytes.
    let id = base64::engine::general_purpose::URL_SAFE.encode(bytes);
    ConnectionId::parse(&format!("{id}=")).unwrap_or_else(new_connection_id)
}

impl Gateway {
    pub fn new(handler: Arc<SubscriptionHandler>, limits: Limits, faults: Faults) -> Arc<Self> {
        Arc::new(Self {
            handler,
            sockets: Mutex::new(HashMap::new()),
            limits,
            faults,
        })
    }

    fn event(
        &self,
        id: &ConnectionId,
        route: &str,
        event_type: &str,
        body: Option<String>,
    ) -> ApiGatewayWebsocketProxyRequest {
        let now = Utc::now();
        let mut ctx = ApiGatewayWebsocketProxyRequestContext::default();
        ctx.route_key = Some(route.to_owned());
        ctx.event_type = Some(event_type.to_owned());
        ctx.connection_id = Some(id.to_string());
        ctx.request_id = Some(format!("{:032x}", rand::random::<u128>()));
        ctx.stage = Some("local".to_owned());
        ctx.apiid = Some("local".to_owned());
        ctx.domain_name = Some("127.0.0.1".to_owned());
        ctx.message_direction = Some("IN".to_owned());
        ctx.request_time_epoch = now.timestamp_millis();
        ctx.connected_at = self
            .sockets
            .lock()
            .ok()
            .and_then(|s| s.get(id).map(|s| s.connected_at.timestamp_millis()))
            .unwrap_or(now.timestamp_millis());
        let mut ev = ApiGatewayWebsocketProxyRequest::default();
        ev.request_context = ctx;
        ev.body = body;
        ev
    }

    /// Route selection on `$request.body.action`, with `$default` as the fallback.
    fn route_of(body: &str) -> &'static str {
        let action = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["action"].as_str().map(str::to_owned));
        match action.as_deref() {
            Some("subscribe") => "subscribe",
            Some("unsubscribe") => "unsubscribe",
            Some("ping") => "ping",
            _ => "$default",
        }
    }

    fn post(&self, id: &ConnectionId, text: Utf8Bytes) -> bool {
        let Ok(sockets) = self.sockets.lock() else {
            return false;
        };
        match sockets.get(id) {
            Some(s) => s.tx.send(Outbound::Text(text)).is_ok(),
            None => false,
        }
    }

    fn close(&self, id: &ConnectionId) -> bool {
        let Ok(sockets) = self.sockets.lock() else {
            return false;
        };
        match sockets.get(id) {
            Some(s) => {
                s.tx.send(Outbound::Close(1000, "closed by the server"))
                    .is_ok()
            }
            None => false,
        }
    }

    async fn run_socket(
        self: Arc<Self>,
        id: ConnectionId,
        socket: WebSocket,
        mut rx: mpsc::UnboundedReceiver<Outbound>,
    ) {
        let (mut sink, mut stream) = socket.split();
        let last_active = self
            .sockets
            .lock()
            .ok()
            .and_then(|s| s.get(&id).map(|s| s.last_active.clone()));
        let writer = tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                let done = matches!(out, Outbound::Close(..));
                let msg = match out {
                    Outbound::Text(t) => Message::Text(t),
                    Outbound::Close(code, reason) => Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })),
                };
                if sink.send(msg).await.is_err() || done {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let deadline = tokio::time::Instant::now() + self.limits.lifetime;
        loop {
            let next = tokio::select! {
                n = tokio::time::timeout(self.limits.idle, stream.next()) => n,
                _ = tokio::time::sleep_until(deadline) => {
                    self.send_close(&id, 1001, "connection lifetime reached");
                    break;
                }
            };
            let frame = match next {
                Err(_) => {
                    self.send_close(&id, 1001, "idle timeout");
                    break;
                }
                Ok(None) | Ok(Some(Err(_))) => break,
                Ok(Some(Ok(frame))) => frame,
            };
            if let Some(la) = &last_active
                && let Ok(mut t) = la.lock()
            {
                *t = Utc::now();
            }
            let body = match frame {
                Message::Text(t) => t.to_string(),
                Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if body.len() > MAX_FRAME_BYTES {
                self.send_close(&id, 1009, "message too big");
                break;
            }
            let route = Self::route_of(&body);
            let ev = self.event(&id, route, "MESSAGE", Some(body));
            self.handler.handle(websocket::request(ev)).await;
        }
        let removed = self.sockets.lock().ok().and_then(|mut s| s.remove(&id));
        drop(removed);
        let ev = self.event(&id, "$disconnect", "DISCONNECT", None);
        self.handler.handle(websocket::request(ev)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }

    fn send_close(&self, id: &ConnectionId, code: u16, reason: &'static str) {
        if let Ok(sockets) = self.sockets.lock()
            && let Some(s) = sockets.get(id)
        {
            let _ = s.tx.send(Outbound::Close(code, reason));
        }
    }
}

/// `GET /ws?token=…`: `$connect` runs before the handshake completes, as on API Gateway; a
/// refusal answers the handshake with its status and no socket is opened.
pub async fn ws_upgrade(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let id = new_connection_id();
    let mut ev = gw.event(&id, "$connect", "CONNECT", None);
    ev.query_string_parameters = query.into();
    ev.headers = headers.clone();
    let reply = gw.handler.handle(websocket::request(ev)).await;
    if reply.status != 200 {
        let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::FORBIDDEN);
        return (status, axum::Json(json!({"error": "unauthorized"}))).into_response();
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let socket = Socket {
        tx,
        connected_at: Utc::now(),
        last_active: Arc::new(Mutex::new(Utc::now())),
        source_ip: peer.ip().to_string(),
        user_agent: headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    if let Ok(mut s) = gw.sockets.lock() {
        s.insert(id.clone(), socket);
    }
    let gw2 = gw.clone();
    let id2 = id.clone();
    // Over-large frames are caught (and closed with 1009) by the loop; this is a hard ceiling.
    upgrade
        .max_message_size(4 * MAX_FRAME_BYTES)
        .on_failed_upgrade(move |_| {
            if let Ok(mut s) = gw2.sockets.lock() {
                s.remove(&id2);
            }
        })
        .on_upgrade(move |socket| gw.run_socket(id, socket, rx))
}

fn gone() -> Response {
    let mut r = (
        StatusCode::GONE,
        axum::Json(json!({"message": "GoneException", "__type": "GoneException"})),
    )
        .into_response();
    r.headers_mut().insert(
        "x-amzn-errortype",
        http::HeaderValue::from_static("GoneException"),
    );
    r
}

/// Only this machine may use the management API: it can write to any browser.
fn loopback_only(peer: &SocketAddr) -> Option<Response> {
    (!peer.ip().is_loopback()).then(|| {
        (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"message": "Forbidden"})),
        )
            .into_response()
    })
}

pub async fn post_to_connection(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = loopback_only(&peer) {
        return r;
    }
    if body.len() > MAX_FRAME_BYTES {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(json!({"message": "Message too long"})),
        )
            .into_response();
    }
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
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = loopback_only(&peer) {
        return r;
    }
    let Some(id) = ConnectionId::parse(&id) else {
        return gone();
    };
    let Ok(sockets) = gw.sockets.lock() else {
        return gone();
    };
    match sockets.get(&id) {
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
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = loopback_only(&peer) {
        return r;
    }
    let Some(id) = ConnectionId::parse(&id) else {
        return gone();
    };
    if gw.close(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        gone()
    }
}
