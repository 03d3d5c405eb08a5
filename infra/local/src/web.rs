//! The demo page, the operations view (`/ops`) and the browser client module, embedded in the binary so that `relay serve`
//! serves them with no extra step; plus the development-mode helpers the page uses when no
//! MeetingBaaS is involved (a client token and a test event), only when `relay serve` runs on
//! its own development secrets.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use relay_core::domain::token::{Claims, Scope, TokenKeys};
use relay_core::handlers::webhook::WebhookHandler;
use serde::Deserialize;
use serde_json::json;

/// Route, file under `web/` (also where `RELAY_WEB_DIR` is read from), embedded body, type.
/// The client module is the npm package in `web/client/` (`@meeting-relay/client`); it is served
/// at `/relay-client.js` as before.
const FILES: &[(&str, &str, &str, &str)] = &[
    (
        "/",
        "index.html",
        include_str!("../../../web/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/index.html",
        "index.html",
        include_str!("../../../web/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/app.js",
        "app.js",
        include_str!("../../../web/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/style.css",
        "style.css",
        include_str!("../../../web/style.css"),
        "text/css; charset=utf-8",
    ),
    (
        "/page.js",
        "page.js",
        include_str!("../../../web/page.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/ops",
        "ops.html",
        include_str!("../../../web/ops.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/ops.html",
        "ops.html",
        include_str!("../../../web/ops.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/ops.js",
        "ops.js",
        include_str!("../../../web/ops.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/ops.css",
        "ops.css",
        include_str!("../../../web/ops.css"),
        "text/css; charset=utf-8",
    ),
    (
        "/relay-client.js",
        "client/relay-client.js",
        include_str!("../../../web/client/relay-client.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/relay-client.d.ts",
        "client/relay-client.d.ts",
        include_str!("../../../web/client/relay-client.d.ts"),
        "text/plain; charset=utf-8",
    ),
];

/// Serves an embedded file, or `None` when `path` is not one. With `RELAY_WEB_DIR` set (a copy
/// of `web/`), the same files are read from that folder instead (for working on the page
/// without rebuilding).
pub fn static_file(path: &str) -> Option<Response> {
    let (_, file, body, content_type) = FILES.iter().find(|(p, _, _, _)| *p == path)?;
    let from_disk = std::env::var_os("RELAY_WEB_DIR")
        .and_then(|dir| std::fs::read_to_string(std::path::Path::new(&dir).join(file)).ok());
    let body = from_disk.unwrap_or_else(|| (*body).to_owned());
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    Some(resp)
}

/// What the development helpers need; absent when real secrets are configured.
pub struct DevMode {
    pub api_key: String,
    pub tokens: TokenKeys,
}

pub struct DevState {
    pub dev: Option<DevMode>,
    pub webhook: Arc<WebhookHandler>,
}

#[derive(Deserialize)]
pub struct TokenRequest {
    bot_id: String,
}

#[derive(Deserialize)]
pub struct TestEventRequest {
    bot_id: String,
    /// A seed event type (`meeting.started`, …) or a MeetingBaaS status code (`joining_call`, …).
    #[serde(rename = "type")]
    event_type: String,
}

fn dev_only<'a>(
    state: &'a DevState,
    peer: &SocketAddr,
) -> Result<&'a DevMode, (StatusCode, &'static str)> {
    if !peer.ip().is_loopback() {
        return Err((
            StatusCode::FORBIDDEN,
            "development helpers answer this machine only",
        ));
    }
    state.dev.as_ref().ok_or((
        StatusCode::NOT_FOUND,
        "development mode is off (real secrets are configured)",
    ))
}

/// The `Host` values a request from this machine carries: `localhost`, `127.0.0.1`, `[::1]` and
/// the listen address, each with the listen port.
fn local_hosts(listen: SocketAddr) -> [String; 4] {
    let port = listen.port();
    [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        listen.to_string(),
    ]
}

/// Why a development-helper request is refused, if it is: a `Host` this machine is not reached
/// by, or an `Origin` (when present) other than that same origin. A page on another site that
/// resolves its own name to 127.0.0.1 (DNS rebinding) sends its own name as `Host`.
pub fn foreign_request(headers: &HeaderMap, listen: SocketAddr) -> Option<&'static str> {
    let Some(host) = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase)
    else {
        return Some("development helpers need a Host header naming this machine");
    };
    if !local_hosts(listen).contains(&host) {
        return Some("development helpers answer requests to localhost only");
    }
    match headers.get(http::header::ORIGIN) {
        None => None,
        Some(origin) => {
            let same = origin
                .to_str()
                .is_ok_and(|o| o.eq_ignore_ascii_case(&format!("http://{host}")));
            (!same).then_some("development helpers answer this page's own origin only")
        }
    }
}

/// The guard on every `/api/dev/*` route (a layer: no helper can forget it).
pub async fn same_machine_only(
    State(listen): State<SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match foreign_request(req.headers(), listen) {
        Some(why) => refuse((StatusCode::FORBIDDEN, why)),
        None => next.run(req).await,
    }
}

/// A body the JSON extractor refused, as a JSON error (its status: 400, 415, 422, 413).
fn bad_body(rejection: JsonRejection) -> Response {
    (
        rejection.status(),
        axum::Json(json!({"error": rejection.body_text()})),
    )
        .into_response()
}

fn refuse((status, msg): (StatusCode, &'static str)) -> Response {
    (status, axum::Json(json!({"error": msg}))).into_response()
}

/// `GET /api/dev/info`: whether the page may offer the development helpers.
pub async fn info(State(state): State<Arc<DevState>>) -> Response {
    axum::Json(json!({"development": state.dev.is_some()})).into_response()
}

/// `POST /api/dev/token {"bot_id"}` → a one-hour read token for that bot.
pub async fn token(
    State(state): State<Arc<DevState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Result<axum::Json<TokenRequest>, JsonRejection>,
) -> Response {
    let req = match req {
        Ok(axum::Json(req)) => req,
        Err(rejection) => return bad_body(rejection),
    };
    let dev = match dev_only(&state, &peer) {
        Ok(d) => d,
        Err(why) => return refuse(why),
    };
    if relay_core::BotId::parse(&req.bot_id).is_err() && req.bot_id != "*" {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid bot id"})),
        )
            .into_response();
    }
    let claims = Claims {
        sub: "demo-page".into(),
        exp: chrono::Utc::now().timestamp() + 3600,
        bots: vec![req.bot_id],
        scope: Scope::Read,
    };
    match dev.tokens.mint(&claims) {
        Ok(t) => axum::Json(json!({"token": t, "expires_in": 3600})).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": "could not mint a token"})),
        )
            .into_response(),
    }
}

/// `POST /api/dev/test-event {"bot_id","type"}`: a webhook as MeetingBaaS would send it, signed
/// with the development key, through the same webhook handler.
pub async fn test_event(
    State(state): State<Arc<DevState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Result<axum::Json<TestEventRequest>, JsonRejection>,
) -> Response {
    let req = match req {
        Ok(axum::Json(req)) => req,
        Err(rejection) => return bad_body(rejection),
    };
    let dev = match dev_only(&state, &peer) {
        Ok(d) => d,
        Err(why) => return refuse(why),
    };
    let body = if req.event_type.contains('.') {
        json!({"type": req.event_type, "data": {"botId": req.bot_id, "sent_at": chrono::Utc::now().to_rfc3339()}})
    } else {
        json!({"event": "bot.status_change", "data": {"bot_id": req.bot_id, "status": {"code": req.event_type, "created_at": chrono::Utc::now().to_rfc3339()}}})
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&dev.api_key) {
        headers.insert("x-meeting-baas-api-key", v);
    }
    let reply = state
        .webhook
        .handle(&headers, body.to_string().as_bytes(), "dev-test-event")
        .await;
    (
        reply.status,
        [(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        reply.body,
    )
        .into_response()
}
