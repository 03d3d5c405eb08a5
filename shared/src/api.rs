//! The REST routes (CONTRACT §6) shared by the api Lambda and `relay serve`: reads of a bot's
//! session and events, with `Authorization: Bearer <client token>` and CORS.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::bot_id::BotId;
use crate::event::{EventId, StoredEvent};
use crate::meetingbaas::{MeetingBaas, MeetingBaasError};
use crate::store::{EventStore, MAX_PAGE, StoreError};
use crate::token::{Claims, Scope, TokenKeys};
use crate::webhook::{json_response, request_id};

pub struct ApiHandler {
    tokens: TokenKeys,
    events: Arc<dyn EventStore>,
    cors_origins: Vec<String>,
    control: Control,
}

/// What the control routes need: the MeetingBaaS client and where MeetingBaaS reaches us.
pub struct Control {
    pub meetingbaas: MeetingBaas,
    pub public_base_url: Option<String>,
}

/// Lifetime of the read token `start` hands back: a meeting and its aftermath.
pub const START_TOKEN_TTL_SECS: i64 = 12 * 3600;

#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("the token does not allow this")]
    Forbidden,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("event store unavailable, retry later")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Upstream(#[from] MeetingBaasError),
    #[error("{0}")]
    NotConfigured(&'static str),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(StoreError::Corrupt(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Upstream(MeetingBaasError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Upstream(MeetingBaasError::NoKey) | ApiError::NotConfigured(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn body(&self) -> serde_json::Value {
        match self {
            ApiError::Upstream(MeetingBaasError::Upstream { status, message }) => {
                json!({"error": "MeetingBaaS refused the request", "meetingbaas_status": status, "message": message})
            }
            other => json!({"error": other.to_string()}),
        }
    }
}

/// The default page size of the events route.
pub const DEFAULT_LIMIT: u32 = 100;

impl ApiHandler {
    pub fn new(
        tokens: TokenKeys,
        events: Arc<dyn EventStore>,
        cors_origins: Vec<String>,
        control: Control,
    ) -> Self {
        Self {
            tokens,
            events,
            cors_origins,
            control,
        }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        let started = Instant::now();
        let rid = request_id(&req);
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        let path = req.uri().path().to_owned();
        let mut resp = if req.method() == Method::OPTIONS {
            let mut r = Response::new(Body::Empty);
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        } else {
            match self.route(&req).await {
                Ok(text) => {
                    let mut r = Response::new(Body::Text(text));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r
                }
                Err(e) => {
                    let status = e.status();
                    if matches!(e, ApiError::Store(_) | ApiError::Upstream(_)) {
                        tracing::warn!(request_id = rid, error = %e, "api upstream error");
                    }
                    json_response(status, &e.body())
                }
            }
        };
        self.cors(origin.as_ref(), resp.headers_mut());
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            request_id = rid,
            path,
            status = resp.status().as_u16(),
            latency_ms,
            "api"
        );
        resp
    }

    fn cors(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        let Some(origin) = origin else { return };
        let allowed = self
            .cors_origins
            .iter()
            .any(|o| o == "*" || origin.as_bytes() == o.as_bytes());
        if !allowed {
            return;
        }
        headers.insert("access-control-allow-origin", origin.clone());
        headers.insert("vary", HeaderValue::from_static("Origin"));
        headers.insert(
            "access-control-allow-headers",
            HeaderValue::from_static("authorization, content-type"),
        );
        headers.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert("access-control-max-age", HeaderValue::from_static("600"));
    }

    fn claims(&self, req: &Request) -> Result<Claims, ApiError> {
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(ApiError::Unauthorized)?;
        self.tokens
            .verify(token.trim())
            .map_err(|_| ApiError::Unauthorized)
    }

    async fn route(&self, req: &Request) -> Result<String, ApiError> {
        let segments: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
        let ["api", "meeting-bot", bot, rest @ ..] = segments.as_slice() else {
            return Err(ApiError::NotFound("no such route"));
        };
        match (*bot, rest) {
            ("start", []) => {
                self.post_only(req)?;
                return self.start(req).await;
            }
            ("configure-webhook", []) => {
                self.post_only(req)?;
                return self.configure_webhook(req).await;
            }
            (bot, ["stop"]) => {
                self.post_only(req)?;
                return self.stop(req, bot).await;
            }
            _ => {}
        }
        if req.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        let claims = self.claims(req)?;
        let bot =
            BotId::parse(bot).map_err(|e| ApiError::BadRequest(format!("invalid bot id: {e}")))?;
        if !claims.scope.allows(Scope::Read) || !claims.allows_bot(&bot) {
            return Err(ApiError::Forbidden);
        }
        match rest {
            ["status"] => self.status(&bot).await,
            ["events"] => {
                let (since, limit) = query(req)?;
                self.list(&bot, since, limit).await
            }
            ["events", id] => {
                let id = EventId::parse(id).ok_or(ApiError::NotFound("no such event"))?;
                let event = self
                    .events
                    .event(&bot, &id)
                    .await?
                    .ok_or(ApiError::NotFound("no such event"))?;
                to_text(&EventOut::of(&event)?)
            }
            _ => Err(ApiError::NotFound("no such route")),
        }
    }

    fn post_only(&self, req: &Request) -> Result<(), ApiError> {
        if req.method() == Method::POST {
            Ok(())
        } else {
            Err(ApiError::MethodNotAllowed)
        }
    }

    fn control_claims(&self, req: &Request) -> Result<Claims, ApiError> {
        let claims = self.claims(req)?;
        if !claims.scope.allows(Scope::Control) {
            return Err(ApiError::Forbidden);
        }
        Ok(claims)
    }

    fn webhook_url(&self) -> Result<String, ApiError> {
        let base = self
            .control
            .public_base_url
            .as_deref()
            .ok_or(ApiError::NotConfigured("PUBLIC_BASE_URL is not set"))?;
        Ok(format!(
            "{}/api/meeting-bot/webhook",
            base.trim_end_matches('/')
        ))
    }

    /// `POST /api/meeting-bot/start`: a bot into a meeting, reporting to this relay.
    async fn start(&self, req: &Request) -> Result<String, ApiError> {
        self.control_claims(req)?;
        let input: serde_json::Value =
            serde_json::from_slice(req.body().as_ref()).map_err(|_| {
                ApiError::BadRequest("body must be a JSON object with meeting_url".into())
            })?;
        let meeting_url = input
            .get("meeting_url")
            .and_then(|v| v.as_str())
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or_else(|| ApiError::BadRequest("meeting_url must be an http(s) URL".into()))?;
        let mut body = json!({
            "bot_name": input.get("bot_name").and_then(|v| v.as_str()).unwrap_or("meeting-relay"),
            "meeting_url": meeting_url,
            "webhook_url": self.webhook_url()?,
        });
        const PASSED_ON: [&str; 9] = [
            "recording_mode",
            "speech_to_text",
            "automatic_leave",
            "bot_image",
            "entry_message",
            "extra",
            "deduplication_key",
            "start_time",
            "streaming",
        ];
        for field in PASSED_ON {
            if let Some(v) = input.get(field).filter(|v| !v.is_null()) {
                body[field] = v.clone();
            }
        }
        let bot_id = self.control.meetingbaas.create_bot(&body).await?;
        let bot =
            BotId::parse(&bot_id).map_err(|_| ApiError::Upstream(MeetingBaasError::NoBotId))?;
        let session = self.events.ensure_session(&bot, chrono::Utc::now()).await?;
        let token = self
            .tokens
            .mint(&Claims {
                sub: format!("bot:{bot}"),
                exp: chrono::Utc::now().timestamp() + START_TOKEN_TTL_SECS,
                bots: vec![bot.to_string()],
                scope: Scope::Read,
            })
            .map_err(|_| ApiError::NotConfigured("client tokens cannot be signed"))?;
        tracing::info!(bot_id = bot.as_str(), "bot started");
        to_text(&json!({"bot_id": bot, "status": session.status, "token": token}))
    }

    /// `POST /api/meeting-bot/{bot_id}/stop`: the bot leaves its meeting.
    async fn stop(&self, req: &Request, bot: &str) -> Result<String, ApiError> {
        let claims = self.control_claims(req)?;
        let bot =
            BotId::parse(bot).map_err(|e| ApiError::BadRequest(format!("invalid bot id: {e}")))?;
        if !claims.allows_bot(&bot) {
            return Err(ApiError::Forbidden);
        }
        self.control.meetingbaas.remove_bot(bot.as_str()).await?;
        tracing::info!(bot_id = bot.as_str(), "bot stopped");
        to_text(&json!({"bot_id": bot, "stopped": true}))
    }

    /// `POST /api/meeting-bot/configure-webhook`: the account-level webhook URL (all bots).
    async fn configure_webhook(&self, req: &Request) -> Result<String, ApiError> {
        let claims = self.control_claims(req)?;
        if !claims.allows_all_bots() {
            return Err(ApiError::Forbidden);
        }
        let input: serde_json::Value = if req.body().is_empty() {
            json!({})
        } else {
            serde_json::from_slice(req.body().as_ref())
                .map_err(|_| ApiError::BadRequest("body must be a JSON object".into()))?
        };
        let url = match input.get("webhook_url").and_then(|v| v.as_str()) {
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => u.to_owned(),
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "webhook_url must be an http(s) URL".into(),
                ));
            }
            None => self.webhook_url()?,
        };
        self.control.meetingbaas.set_account_webhook(&url).await?;
        to_text(&json!({"webhook_url": url, "configured": true}))
    }

    async fn status(&self, bot: &BotId) -> Result<String, ApiError> {
        let session = self
            .events
            .session(bot)
            .await?
            .ok_or(ApiError::NotFound("no session for this bot"))?;
        Ok(crate::message::snapshot(bot.as_str(), Some(&session)))
    }

    async fn list(&self, bot: &BotId, since: u64, limit: u32) -> Result<String, ApiError> {
        let page = self.events.events_after(bot, since, limit).await?;
        let next_since = page.events.last().map(|e| e.seq).unwrap_or(since);
        let events = page
            .events
            .iter()
            .map(EventOut::of)
            .collect::<Result<Vec<_>, _>>()?;
        to_text(&ListOut {
            bot_id: bot,
            events,
            more: page.more,
            next_since,
        })
    }
}

fn query(req: &Request) -> Result<(u64, u32), ApiError> {
    let mut since = 0;
    let mut limit = DEFAULT_LIMIT;
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "since" => {
                since = v
                    .parse()
                    .map_err(|_| ApiError::BadRequest("since must be a whole number".into()))?
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE).contains(l))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("limit must be from 1 to {MAX_PAGE}"))
                    })?
            }
            _ => {}
        }
    }
    Ok((since, limit))
}

/// An event as the REST routes return it; `payload` is the original body, embedded verbatim
/// (byte for byte), so a client gets exactly what MeetingBaaS sent.
#[derive(Serialize)]
struct EventOut<'a> {
    event_id: &'a EventId,
    bot_id: &'a BotId,
    seq: u64,
    event: crate::event::EventKind,
    source_event: &'a str,
    family: crate::event::Family,
    status: crate::session::Status,
    status_code: Option<&'a str>,
    timestamp: String,
    payload: &'a RawValue,
}

impl<'a> EventOut<'a> {
    fn of(e: &'a StoredEvent) -> Result<Self, ApiError> {
        let payload: &RawValue = serde_json::from_str(&e.body)
            .map_err(|_| ApiError::Store(StoreError::Corrupt("stored body is not JSON".into())))?;
        Ok(Self {
            event_id: &e.event_id,
            bot_id: &e.bot_id,
            seq: e.seq,
            event: e.kind,
            source_event: &e.source_event,
            family: e.family,
            status: e.status,
            status_code: e.status_code.as_deref(),
            timestamp: e
                .received_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            payload,
        })
    }
}

#[derive(Serialize)]
struct ListOut<'a> {
    bot_id: &'a BotId,
    events: Vec<EventOut<'a>>,
    more: bool,
    next_since: u64,
}

fn to_text(v: &impl Serialize) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|e| ApiError::Store(StoreError::Corrupt(e.to_string())))
}
