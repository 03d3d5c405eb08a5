//! The REST operations shared by the api Lambda and `relay serve`: reads of a bot's session and
//! events, and the control calls to MeetingBaaS, each checked against the caller's client token.
//! The HTTP adapter (`relay-http`) routes requests to them and writes their answers.

use std::sync::Arc;

use http::StatusCode;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::domain::bot_id::BotId;
use crate::domain::event::{EventId, StoredEvent};
use crate::domain::token::{Claims, Scope, TokenKeys};
use crate::ports::meetingbaas::{MeetingBaas, MeetingBaasError};
use crate::ports::store::{EventStore, MAX_PAGE, StoreError};

pub struct ApiHandler {
    tokens: TokenKeys,
    events: Arc<dyn EventStore>,
    control: Control,
}

/// What the control routes need: the MeetingBaaS client and where MeetingBaaS reaches us.
pub struct Control {
    pub meetingbaas: Arc<dyn MeetingBaas>,
    pub public_base_url: Option<String>,
}

/// Lifetime of the read token `start` hands back: a meeting and its aftermath.
pub const START_TOKEN_TTL_SECS: i64 = 12 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("the token does not allow this")]
    Forbidden,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("event store unavailable, retry later")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Upstream(#[from] MeetingBaasError),
    #[error("{0}")]
    NotConfigured(&'static str),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(StoreError::Corrupt(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Upstream(MeetingBaasError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Upstream(MeetingBaasError::NoKey) | ApiError::NotConfigured(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The JSON body the caller gets: the reason, never a secret or a store internal.
    pub fn body(&self) -> serde_json::Value {
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
    pub fn new(tokens: TokenKeys, events: Arc<dyn EventStore>, control: Control) -> Self {
        Self {
            tokens,
            events,
            control,
        }
    }

    /// The claims of an `Authorization` header's bearer token (the scheme in any case).
    pub fn authorize(&self, authorization: Option<&str>) -> Result<Claims, ApiError> {
        let header = authorization.ok_or(ApiError::Unauthorized)?.trim();
        let (scheme, token) = header.split_once(' ').ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized);
        }
        self.tokens
            .verify(token.trim())
            .map_err(|_| ApiError::Unauthorized)
    }

    fn read_claims(&self, claims: &Claims, bot: &str) -> Result<BotId, ApiError> {
        let bot = parse_bot(bot)?;
        if !claims.scope.allows(Scope::Read) || !claims.allows_bot(&bot) {
            return Err(ApiError::Forbidden);
        }
        Ok(bot)
    }

    fn control_claims(&self, claims: &Claims) -> Result<(), ApiError> {
        if !claims.scope.allows(Scope::Control) {
            return Err(ApiError::Forbidden);
        }
        Ok(())
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
    pub async fn start(&self, claims: &Claims, body: &[u8]) -> Result<String, ApiError> {
        self.control_claims(claims)?;
        let input: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
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
    pub async fn stop(&self, claims: &Claims, bot: &str) -> Result<String, ApiError> {
        self.control_claims(claims)?;
        let bot = parse_bot(bot)?;
        if !claims.allows_bot(&bot) {
            return Err(ApiError::Forbidden);
        }
        self.control.meetingbaas.remove_bot(&bot).await?;
        tracing::info!(bot_id = bot.as_str(), "bot stopped");
        to_text(&json!({"bot_id": bot, "stopped": true}))
    }

    /// `POST /api/meeting-bot/configure-webhook`: the account-level webhook URL (all bots).
    pub async fn configure_webhook(
        &self,
        claims: &Claims,
        body: &[u8],
    ) -> Result<String, ApiError> {
        self.control_claims(claims)?;
        if !claims.allows_all_bots() {
            return Err(ApiError::Forbidden);
        }
        let input: serde_json::Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(body)
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

    /// `GET /api/meeting-bot/{bot_id}/status`: the session snapshot.
    pub async fn status(&self, claims: &Claims, bot: &str) -> Result<String, ApiError> {
        let bot = self.read_claims(claims, bot)?;
        let session = self
            .events
            .session(&bot)
            .await?
            .ok_or(ApiError::NotFound("no session for this bot"))?;
        Ok(crate::domain::message::snapshot(
            bot.as_str(),
            Some(&session),
        ))
    }

    /// `GET /api/meeting-bot/{bot_id}/events?since=N&limit=M`: one page, in `seq` order.
    pub async fn events(
        &self,
        claims: &Claims,
        bot: &str,
        page: PageQuery,
    ) -> Result<String, ApiError> {
        let bot = self.read_claims(claims, bot)?;
        let PageQuery { since, limit } = page;
        let page = self.events.events_after(&bot, since, limit).await?;
        let next_since = page.events.last().map(|e| e.seq).unwrap_or(since);
        let events = page
            .events
            .iter()
            .map(EventOut::of)
            .collect::<Result<Vec<_>, _>>()?;
        to_text(&ListOut {
            bot_id: &bot,
            events,
            more: page.more,
            next_since,
        })
    }

    /// `GET /api/meeting-bot/{bot_id}/events/{event_id}`: one event, body whole.
    pub async fn event(&self, claims: &Claims, bot: &str, id: &str) -> Result<String, ApiError> {
        let bot = self.read_claims(claims, bot)?;
        let id = EventId::parse(id).ok_or(ApiError::NotFound("no such event"))?;
        let event = self
            .events
            .event(&bot, &id)
            .await?
            .ok_or(ApiError::NotFound("no such event"))?;
        to_text(&EventOut::of(&event)?)
    }
}

fn parse_bot(raw: &str) -> Result<BotId, ApiError> {
    BotId::parse(raw).map_err(|e| ApiError::BadRequest(format!("invalid bot id: {e}")))
}

/// The events route's paging, parsed from its (already percent-decoded) query values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    pub since: u64,
    pub limit: u32,
}

impl PageQuery {
    pub fn parse(since: Option<&str>, limit: Option<&str>) -> Result<Self, ApiError> {
        let since = match since {
            None => 0,
            Some(v) => v
                .parse()
                .map_err(|_| ApiError::BadRequest("since must be a whole number".into()))?,
        };
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .parse()
                .ok()
                .filter(|l| (1..=MAX_PAGE).contains(l))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("limit must be from 1 to {MAX_PAGE}"))
                })?,
        };
        Ok(Self { since, limit })
    }
}

/// An event as the REST routes return it; `payload` is the original body, embedded verbatim
/// (byte for byte), so a client gets exactly what MeetingBaaS sent.
#[derive(Serialize)]
struct EventOut<'a> {
    event_id: &'a EventId,
    bot_id: &'a BotId,
    seq: u64,
    event: crate::domain::event::EventKind,
    source_event: &'a str,
    family: crate::domain::event::Family,
    status: crate::domain::session::Status,
    status_code: Option<&'a str>,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    repeat_of: Option<&'a EventId>,
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
            repeat_of: e.repeat_of.as_ref(),
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
