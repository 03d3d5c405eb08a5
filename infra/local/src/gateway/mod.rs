//! The local host's API Gateway WebSocket API: `GET /ws?token=…` becomes a connection whose
//! connect, frames and disconnect are handed to the shared WebSocket route handler as API
//! Gateway proxy events, and `/@connections/{id}` is a working management API that the real
//! `aws-sdk-apigatewaymanagement` client (the fan-out's pusher) posts to.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::SplitSink;
use tokio::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
};
use relay_apigateway::{ManagementKey, websocket};
use relay_core::handlers::subscription::SubscriptionHandler;
use relay_core::ports::connections::ConnectionId;
use serde_json::json;
use tokio::sync::Notify;

mod management;

pub use management::{delete_connection, get_connection, post_to_connection};

/// API Gateway's frame limit, in both directions: a larger client frame closes the socket with
/// 1009 (whatever its size: the WebSocket layer refuses it at this size, before buffering more),
/// a larger post to `@connections` is refused with 413.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

/// Each socket's initial read buffer.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Close codes this gateway sends.
pub const CLOSE_NORMAL: u16 = 1000;
/// Idle timeout, lifetime limit, server shutdown.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// The client fell too far behind (its outbound queue was over its byte or age limit, or one
/// send stalled for the age limit): a policy violation, not a server error.
pub const CLOSE_TOO_FAR_BEHIND: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// How long a closing socket gets to take its close frame (and to answer with its own) before
/// the TCP connection is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub idle: Duration,
    pub lifetime: Duration,
    /// Bytes a connection may have queued and not yet written before it is closed.
    pub max_queue_bytes: usize,
    /// How far behind (the age of its oldest unwritten message) a connection may be; also the
    /// bound of one write, so a writer never waits on a stalled socket for longer.
    pub max_lag: Duration,
}

/// What the writer sends next.
enum Outbound {
    Text(Utf8Bytes),
    Close(u16, &'static str),
}

/// One connection's outbound queue, bounded in bytes and in age.
#[derive(Default)]
struct Outq {
    state: Mutex<QueueState>,
    /// Wakes the writer: a message or a close was queued.
    wake: Notify,
    /// Wakes the reader: the connection is closing (overflow, DELETE, writer ended).
    closing: Notify,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<(Instant, Utf8Bytes)>,
    bytes: usize,
    /// Set once: the close the writer sends after what is queued (nothing is queued after it).
    close: Option<(u16, &'static str)>,
}

impl Outq {
    /// Queues a message; false when the connection is closed or closes now for being too far
    /// behind (its queue is dropped at once).
    fn push(&self, text: Utf8Bytes, limits: &Limits) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.close.is_some() {
            return false;
        }
        let now = Instant::now();
        let too_old = s
            .items
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > limits.max_lag);
        if too_old || s.bytes.saturating_add(text.len()) > limits.max_queue_bytes {
            let (queued, bytes) = (s.items.len(), s.bytes);
            s.items = VecDeque::new();
            s.bytes = 0;
            s.close = Some((CLOSE_TOO_FAR_BEHIND, "too far behind"));
            drop(s);
            tracing::warn!(queued, bytes, "websocket client too far behind: closing it");
            self.wake.notify_one();
            self.closing.notify_one();
            return false;
        }
        s.bytes += text.len();
        s.items.push_back((now, text));
        drop(s);
        self.wake.notify_one();
        true
    }

    /// Closes the connection: after what is queued, or at once (`drop_queued`). False when it
    /// was already closing.
    fn close(&self, code: u16, reason: &'static str, drop_queued: bool) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.close.is_some() {
            return false;
        }
        if drop_queued {
            s.items = VecDeque::new();
            s.bytes = 0;
        }
        s.close = Some((code, reason));
        drop(s);
        self.wake.notify_one();
        true
    }

    /// Closing or closed: gone for the management API from that moment, although the socket
    /// task may not have removed the connection yet.
    fn is_closing(&self) -> bool {
        self.state.lock().map_or(true, |s| s.close.is_some())
    }

    fn next(&self, limits: &Limits) -> Option<Outbound> {
        let mut s = self.state.lock().ok()?;
        if let Some((at, text)) = s.items.pop_front() {
            s.bytes -= text.len();
            if at.elapsed() > limits.max_lag && s.close.is_none() {
                s.items = VecDeque::new();
                s.bytes = 0;
                s.close = Some((CLOSE_TOO_FAR_BEHIND, "too far behind"));
                return Some(Outbound::Close(CLOSE_TOO_FAR_BEHIND, "too far behind"));
            }
            return Some(Outbound::Text(text));
        }
        s.close.map(|(code, reason)| Outbound::Close(code, reason))
    }
}

/// Writes the queue to the socket. Each write is bounded by the lag limit: a socket that takes
/// longer is too far behind and is dropped (its client stopped reading).
async fn write_loop(q: Arc<Outq>, mut sink: SplitSink<WebSocket, Message>, limits: Limits) {
    loop {
        let Some(next) = q.next(&limits) else {
            q.wake.notified().await;
            continue;
        };
        match next {
            Outbound::Text(text) => {
                match tokio::time::timeout(limits.max_lag, sink.send(Message::Text(text))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        q.close(CLOSE_TOO_FAR_BEHIND, "too far behind", true);
                        tracing::warn!("websocket write stalled: closing the connection");
                        q.closing.notify_one();
                        // The frame is half written: no close frame can follow it.
                        return;
                    }
                }
            }
            Outbound::Close(code, reason) => {
                let frame = Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }));
                let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(frame)).await;
                break;
            }
        }
    }
    q.close(CLOSE_NORMAL, "closed", true);
    q.closing.notify_one();
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

struct Socket {
    queue: Arc<Outq>,
    connected_at: chrono::DateTime<Utc>,
    last_active: Arc<Mutex<chrono::DateTime<Utc>>>,
    source_ip: String,
    user_agent: Option<String>,
}

/// Where the WebSocket routes' events go: the shared handler in this process, or the
/// connections function through the Lambda Invoke API (`--lambda-endpoint`).
pub enum RouteTarget {
    InProcess(Arc<SubscriptionHandler>),
    Invoke {
        invoker: crate::lambda::Invoker,
        function: String,
    },
}

impl RouteTarget {
    /// The route's status (on `$connect`, anything but 200 refuses the connection). A failed
    /// invocation is API Gateway's 500.
    async fn route(&self, ev: ApiGatewayWebsocketProxyRequest) -> u16 {
        match self {
            RouteTarget::InProcess(handler) => handler.handle(websocket::request(ev)).await.status,
            RouteTarget::Invoke { invoker, function } => {
                let answer = match invoker.invoke(function, &ev).await {
                    Ok(bytes) => serde_json::from_slice::<
                        lambda_http::aws_lambda_events::apigw::ApiGatewayProxyResponse,
                    >(&bytes)
                    .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match answer {
                    Ok(r) => u16::try_from(r.status_code).unwrap_or(500),
                    Err(error) => {
                        tracing::error!(function, error, "WebSocket route invocation failed");
                        500
                    }
                }
            }
        }
    }
}

/// Who may call the management API besides this process's own client (which sends the
/// management key): with `--lambda-endpoint`, the functions, which sign with SigV4.
pub type ManagementSigners = Option<crate::lambda::sigv4::SigV4Verifier>;

pub struct Gateway {
    routes: RouteTarget,
    signers: ManagementSigners,
    sockets: Mutex<HashMap<ConnectionId, Socket>>,
    limits: Limits,
    faults: Faults,
    /// What the management API requires on every request (where AWS requires SigV4).
    management_key: ManagementKey,
    /// Socket tasks still running (closing ones included).
    running: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a socket task from its start to its very end.
struct Running(Arc<std::sync::atomic::AtomicUsize>);

impl Running {
    fn start(n: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(n.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
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
    pub fn new(
        routes: RouteTarget,
        signers: ManagementSigners,
        limits: Limits,
        faults: Faults,
        management_key: ManagementKey,
    ) -> Arc<Self> {
        Arc::new(Self {
            routes,
            signers,
            sockets: Mutex::new(HashMap::new()),
            limits,
            faults,
            management_key,
            running: Arc::default(),
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

    fn queue_of(&self, id: &ConnectionId) -> Option<Arc<Outq>> {
        self.sockets.lock().ok()?.get(id).map(|s| s.queue.clone())
    }

    /// Queues a message for a connection; false when it is gone (or just went, too far behind).
    fn post(&self, id: &ConnectionId, text: Utf8Bytes) -> bool {
        self.queue_of(id)
            .is_some_and(|q| q.push(text, &self.limits))
    }

    /// DeleteConnection: what is queued is written, then the close frame.
    fn close(&self, id: &ConnectionId) -> bool {
        self.queue_of(id)
            .is_some_and(|q| q.close(CLOSE_NORMAL, "closed by the server", false))
    }

    /// Closes every socket with 1001 (shutdown); returns how many were open.
    pub fn close_all(&self, reason: &'static str) -> usize {
        let queues: Vec<Arc<Outq>> = match self.sockets.lock() {
            Ok(s) => s.values().map(|s| s.queue.clone()).collect(),
            Err(_) => return 0,
        };
        for q in &queues {
            q.close(CLOSE_GOING_AWAY, reason, true);
            q.closing.notify_one();
        }
        queues.len()
    }

    /// Sockets still open or closing.
    pub fn open_sockets(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn run_socket(self: Arc<Self>, id: ConnectionId, socket: WebSocket, q: Arc<Outq>) {
        let _running = Running::start(&self.running);
        let (sink, mut stream) = socket.split();
        let last_active = self
            .sockets
            .lock()
            .ok()
            .and_then(|s| s.get(&id).map(|s| s.last_active.clone()));
        let mut writer = tokio::spawn(write_loop(q.clone(), sink, self.limits));
        let deadline = Instant::now() + self.limits.lifetime;
        loop {
            let next = tokio::select! {
                n = tokio::time::timeout(self.limits.idle, stream.next()) => n,
                _ = tokio::time::sleep_until(deadline) => {
                    q.close(CLOSE_GOING_AWAY, "connection lifetime reached", true);
                    break;
                }
                _ = q.closing.notified() => break,
            };
            let frame = match next {
                Err(_) => {
                    q.close(CLOSE_GOING_AWAY, "idle timeout", true);
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    if is_too_big(e) {
                        q.close(CLOSE_TOO_BIG, "message too big", true);
                    }
                    break;
                }
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
                q.close(CLOSE_TOO_BIG, "message too big", true);
                break;
            }
            let route = Self::route_of(&body);
            let ev = self.event(&id, route, "MESSAGE", Some(body));
            self.routes.route(ev).await;
        }
        // From here the connection is gone for the management API, whatever the socket does.
        q.close(CLOSE_NORMAL, "closed", false);
        let removed = self.sockets.lock().ok().and_then(|mut s| s.remove(&id));
        drop(removed);
        let ev = self.event(&id, "$disconnect", "DISCONNECT", None);
        self.routes.route(ev).await;
        // The writer gets a bounded time to send the close frame; a writer stuck on a socket
        // that is not read is dropped, and the TCP connection with it.
        if tokio::time::timeout(CLOSE_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        // The client's answering close frame (bounded): closing with unread input would reset
        // the connection before the client read our close frame. After a read error (a frame
        // over the limit, still arriving) nothing more can be read: the grace is waited out.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            loop {
                match stream.next().await {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(_)) => continue,
                    Some(Err(_)) => std::future::pending::<()>().await,
                }
            }
        })
        .await;
    }
}

/// Whether a read failed on the frame or message size limit.
fn is_too_big(e: axum::Error) -> bool {
    e.into_inner()
        .downcast_ref::<tungstenite::Error>()
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
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
    let status = gw.routes.route(ev).await;
    if status != 200 {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        return (status, axum::Json(json!({"error": "unauthorized"}))).into_response();
    }
    let queue = Arc::new(Outq::default());
    let socket = Socket {
        queue: queue.clone(),
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
    // A frame or message over the limit fails the read (before it is buffered whole), and the
    // loop closes the socket with 1009. The read buffer starts small: clients send a few
    // hundred bytes, and tungstenite's default (128 KiB, allocated up front) made each idle
    // socket cost ~136 KB (BENCHMARKS.md, "Memory and descriptors"); it grows when needed.
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_failed_upgrade(move |_| {
            if let Ok(mut s) = gw2.sockets.lock() {
                s.remove(&id2);
            }
        })
        .on_upgrade(move |socket| gw.run_socket(id, socket, queue))
}
