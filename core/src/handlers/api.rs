//! The REST operations shared by the api Lambda and `relay serve`: reads of a bot's session and
//! events, and the control calls to MeetingBaaS, each checked against the caller's client token.
//! The HTTP adapter (`relay-http`) routes requests to them and writes their answers.

use std::sync::Arc;

use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::domain::bot_id::BotId;
use crate::domain::event::{EventId, StoredEvent};
use crate::domain::report::Artifacts;
use crate::domain::token::{Claims, Scope, TokenKeys};
use crate::ports::meetingbaas::{ApiVersion, CallbackConfig, MeetingBaas, MeetingBaasError};
use crate::ports::store::{EventStore, MAX_PAGE, StoreError};

pub struct ApiHandler {
    tokens: TokenKeys,
    events: Arc<dyn EventStore>,
    control: Control,
}

/// What the control routes need: the MeetingBaaS client (and the API version it speaks), where
/// MeetingBaaS reaches us, and the secret v2 callbacks carry (`MEETINGBAAS_CALLBACK_SECRET`,
/// sent to MeetingBaaS in a v2 bot's `callback_config`; never logged).
pub struct Control {
    pub meetingbaas: Arc<dyn MeetingBaas>,
    pub public_base_url: Option<String>,
    pub callback_secret: Option<SecretString>,
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
    /// The route exists but not with the configured MeetingBaaS API (501).
    #[error("{0}")]
    NotImplemented(String),
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
            ApiError::NotImplemented(_)
            | ApiError::Upstream(MeetingBaasError::Unsupported { .. }) => {
                StatusCode::NOT_IMPLEMENTED
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
/// The sessions route's default and largest page.
pub const SESSIONS_DEFAULT_LIMIT: u32 = 50;
pub const SESSIONS_MAX_LIMIT: u32 = 200;

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

    /// The callback MeetingBaaS v2 delivers a bot's outcome to: this relay's webhook route,
    /// with `MEETINGBAAS_CALLBACK_SECRET` (without it the outcome could not be authenticated).
    fn callback(&self) -> Result<CallbackConfig, ApiError> {
        let secret = self
            .control
            .callback_secret
            .as_ref()
            .filter(|s| !s.expose_secret().trim().is_empty())
            .ok_or(ApiError::NotConfigured(
                "MEETINGBAAS_CALLBACK_SECRET is not set: with MEETINGBAAS_API_VERSION=v2 a bot's \
                 callbacks (bot.completed, bot.failed) carry it in x-mb-secret, and without it \
                 their outcome could not reach the relay; set it in the relay's settings",
            ))?;
        Ok(CallbackConfig {
            url: self.webhook_url()?,
            secret: secret.clone(),
        })
    }

    fn version(&self) -> ApiVersion {
        self.control.meetingbaas.version()
    }

    /// A control call about one bot: the control scope and that bot in the token.
    fn control_bot(&self, claims: &Claims, bot: &str) -> Result<BotId, ApiError> {
        self.control_claims(claims)?;
        let bot = parse_bot(bot)?;
        if !claims.allows_bot(&bot) {
            return Err(ApiError::Forbidden);
        }
        Ok(bot)
    }

    /// `POST /api/meeting-bot/start`: a bot into a meeting, reporting to this relay.
    pub async fn start(&self, claims: &Claims, body: &[u8]) -> Result<String, ApiError> {
        self.control_claims(claims)?;
        let version = self.version();
        let callback = match version {
            ApiVersion::V1 => None,
            ApiVersion::V2 => Some(self.callback()?),
        };
        let input: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
            ApiError::BadRequest("body must be a JSON object with meeting_url".into())
        })?;
        let body = match callback {
            None => v1_create_body(&input, &self.webhook_url()?)?,
            Some(callback) => v2_create_body(&input, &callback)?,
        };
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
        tracing::info!(bot_id = bot.as_str(), api = version.as_str(), "bot started");
        to_text(&json!({"bot_id": bot, "status": session.status, "token": token}))
    }

    /// `POST /api/meeting-bot/{bot_id}/stop`: the bot leaves its meeting.
    pub async fn stop(&self, claims: &Claims, bot: &str) -> Result<String, ApiError> {
        let bot = self.control_bot(claims, bot)?;
        self.control.meetingbaas.remove_bot(&bot).await?;
        tracing::info!(bot_id = bot.as_str(), "bot stopped");
        to_text(&json!({"bot_id": bot, "stopped": true}))
    }

    /// `POST /api/meeting-bot/{bot_id}/resend`: MeetingBaaS sends the bot's final webhook again
    /// (v2 only; the intake's idempotency absorbs a copy it already has).
    pub async fn resend(&self, claims: &Claims, bot: &str) -> Result<String, ApiError> {
        let bot = self.control_bot(claims, bot)?;
        if self.version() != ApiVersion::V2 {
            return Err(ApiError::NotImplemented(V2_ONLY_RESEND.into()));
        }
        self.control.meetingbaas.resend_final_webhook(&bot).await?;
        tracing::info!(bot_id = bot.as_str(), "final webhook resend requested");
        to_text(&json!({"bot_id": bot, "resend_requested": true}))
    }

    /// `POST /api/meeting-bot/{bot_id}/retry-callback`: MeetingBaaS sends the bot's callback
    /// again, to this relay's callback URL with its secret (v2 only).
    pub async fn retry_callback(&self, claims: &Claims, bot: &str) -> Result<String, ApiError> {
        let bot = self.control_bot(claims, bot)?;
        if self.version() != ApiVersion::V2 {
            return Err(ApiError::NotImplemented(V2_ONLY_RETRY.into()));
        }
        let callback = self.callback()?;
        self.control
            .meetingbaas
            .retry_callback(&bot, &callback)
            .await?;
        tracing::info!(bot_id = bot.as_str(), "callback retry requested");
        to_text(&json!({"bot_id": bot, "retry_requested": true, "callback_url": callback.url}))
    }

    /// `POST /api/meeting-bot/configure-webhook`: the account-level webhook URL (all bots).
    /// v2 has no API for it: 501 with what to set in the MeetingBaaS dashboard.
    pub async fn configure_webhook(
        &self,
        claims: &Claims,
        body: &[u8],
    ) -> Result<String, ApiError> {
        self.control_claims(claims)?;
        if !claims.allows_all_bots() {
            return Err(ApiError::Forbidden);
        }
        if self.version() == ApiVersion::V2 {
            let url = self
                .webhook_url()
                .unwrap_or_else(|_| "<PUBLIC_BASE_URL>/api/meeting-bot/webhook".to_owned());
            return Err(ApiError::NotImplemented(format!(
                "MeetingBaaS v2 has no API for the account webhook: in the MeetingBaaS dashboard, \
                 add a webhook endpoint with the URL {url}, then copy its signing secret \
                 (whsec_...) into the relay's MEETINGBAAS_WEBHOOK_SECRET setting"
            )));
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

    /// `GET /api/meeting-bot/{bot_id}/artifacts`: fresh artifact URLs, fetched from
    /// MeetingBaaS now (the ones stored with the completion expire after a few hours).
    pub async fn artifacts(&self, claims: &Claims, bot: &str) -> Result<String, ApiError> {
        let bot = self.read_claims(claims, bot)?;
        if bot.is_account_level() {
            return Err(ApiError::NotFound("the account-level bot has no artifacts"));
        }
        let details = self
            .control
            .meetingbaas
            .bot_details(&bot)
            .await?
            .ok_or(ApiError::NotFound("MeetingBaaS does not know this bot"))?;
        let artifacts = Artifacts::from_details(self.version(), &details);
        to_text(&artifacts.answer(&bot, chrono::Utc::now()))
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

    /// `GET /api/meeting-bot/sessions?limit=N`: the sessions changed most recently, open or
    /// final, newest first, each as the status route's snapshot. It names bots the caller did
    /// not ask for, so it takes a token for every bot (`"bots": ["*"]`), of either scope.
    pub async fn sessions(&self, claims: &Claims, limit: Option<&str>) -> Result<String, ApiError> {
        if !claims.scope.allows(Scope::Read) || !claims.allows_all_bots() {
            return Err(ApiError::Forbidden);
        }
        let limit = match limit {
            None => SESSIONS_DEFAULT_LIMIT,
            Some(v) => v
                .parse()
                .ok()
                .filter(|l| (1..=SESSIONS_MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("limit must be from 1 to {SESSIONS_MAX_LIMIT}"))
                })?,
        };
        let sessions = self.events.recent_sessions(limit).await?;
        let snapshots: Vec<serde_json::Value> = sessions
            .iter()
            .map(|s| crate::domain::message::snapshot_value(s.bot_id.as_str(), Some(s)))
            .collect();
        to_text(&json!({ "sessions": snapshots }))
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

const V2_ONLY_RESEND: &str = "resend is a MeetingBaaS v2 feature (POST /v2/bots/{bot_id}/resend-webhook): \
     this relay calls the v1 API; set MEETINGBAAS_API_VERSION=v2 to use it";
const V2_ONLY_RETRY: &str = "retry-callback is a MeetingBaaS v2 feature (POST /v2/bots/{bot_id}/retry-callback): \
     this relay calls the v1 API; set MEETINGBAAS_API_VERSION=v2 to use it";

fn meeting_url(input: &serde_json::Value) -> Result<&str, ApiError> {
    input
        .get("meeting_url")
        .and_then(|v| v.as_str())
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .ok_or_else(|| ApiError::BadRequest("meeting_url must be an http(s) URL".into()))
}

/// v2 wants a name of 1 to 255 characters: a blank one gets ours.
fn v2_bot_name(input: &serde_json::Value) -> &str {
    input
        .get("bot_name")
        .and_then(|v| v.as_str())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or("meeting-relay")
}

/// A field of the start body that is present and not null.
fn field<'a>(input: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    input.get(name).filter(|v| !v.is_null())
}

/// The v1 `POST /bots/` body: MeetingBaaS's own fields of the start body, as given, and our
/// webhook URL.
fn v1_create_body(
    input: &serde_json::Value,
    webhook_url: &str,
) -> Result<serde_json::Value, ApiError> {
    let mut body = json!({
        "bot_name": input.get("bot_name").and_then(|v| v.as_str()).unwrap_or("meeting-relay"),
        "meeting_url": meeting_url(input)?,
        "webhook_url": webhook_url,
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
    for name in PASSED_ON {
        if let Some(v) = field(input, name) {
            body[name] = v.clone();
        }
    }
    Ok(body)
}

/// The v2 `POST /v2/bots` body (the SDK's `createBotBody`): our callback instead of a webhook
/// URL, v2's own fields as given, and the v1 fields of the start body mapped to their v2
/// equivalents so a client need not change when the relay changes API:
/// - `bot_name`, `meeting_url`, `bot_image`, `entry_message`, `extra`, `recording_mode`: same;
/// - `automatic_leave{waiting_room_timeout, noone_joined_timeout, silence_timeout}` ->
///   `timeout_config{waiting_room_timeout, no_one_joined_timeout, silence_timeout}`;
/// - `speech_to_text{provider: Default|Gladia, api_key?}` (or the bare provider) ->
///   `transcription_enabled: true, transcription_config{provider: "gladia", api_key?}`;
///   `Runpod` has no v2 equivalent (400);
/// - `streaming{input, output, audio_frequency: 16khz|24khz}` -> `streaming_enabled: true,
///   streaming_config{input_url, output_url, audio_frequency: 16000|24000}`;
/// - `deduplication_key` is dropped: v2 has none (its `allow_multiple_bots` is a different
///   rule, pass it as such);
/// - `start_time` (a bot that joins later) is refused (400): v2 schedules bots through another
///   route, which this relay does not call, and starting the bot now would be wrong.
///
/// A v2 field given beside its v1 equivalent wins.
fn v2_create_body(
    input: &serde_json::Value,
    callback: &CallbackConfig,
) -> Result<serde_json::Value, ApiError> {
    let mut body = json!({
        "bot_name": v2_bot_name(input),
        "meeting_url": meeting_url(input)?,
        "callback_enabled": true,
        "callback_config": {"url": callback.url, "method": "POST", "secret": callback.secret.expose_secret()},
    });
    if field(input, "start_time").is_some() {
        return Err(ApiError::BadRequest(
            "start_time is not supported with MEETINGBAAS_API_VERSION=v2 (v2 schedules bots \
             through another route): start the bot when it should join"
                .into(),
        ));
    }
    for name in ["bot_image", "entry_message", "extra", "recording_mode"] {
        if let Some(v) = field(input, name) {
            body[name] = v.clone();
        }
    }
    if let Some(leave) = field(input, "automatic_leave") {
        let leave = leave
            .as_object()
            .ok_or_else(|| ApiError::BadRequest("automatic_leave must be an object".into()))?;
        let mut timeouts = serde_json::Map::new();
        for (v1, v2) in [
            ("waiting_room_timeout", "waiting_room_timeout"),
            ("noone_joined_timeout", "no_one_joined_timeout"),
            ("silence_timeout", "silence_timeout"),
        ] {
            if let Some(v) = leave.get(v1).filter(|v| !v.is_null()) {
                timeouts.insert(v2.to_owned(), v.clone());
            }
        }
        if !timeouts.is_empty() {
            body["timeout_config"] = timeouts.into();
        }
    }
    if let Some(stt) = field(input, "speech_to_text") {
        let (provider, api_key) = match stt {
            serde_json::Value::String(p) => (p.as_str(), None),
            serde_json::Value::Object(o) => (
                o.get("provider")
                    .and_then(|p| p.as_str())
                    .unwrap_or("Default"),
                o.get("api_key").filter(|k| !k.is_null()),
            ),
            _ => {
                return Err(ApiError::BadRequest(
                    "speech_to_text must be an object {provider, api_key?}".into(),
                ));
            }
        };
        if !matches!(provider, "Default" | "Gladia" | "gladia") {
            return Err(ApiError::BadRequest(format!(
                "speech_to_text provider {provider} is not available with MEETINGBAAS_API_VERSION=v2 \
                 (v2 transcribes with gladia)"
            )));
        }
        let mut config = json!({"provider": "gladia"});
        if let Some(key) = api_key {
            config["api_key"] = key.clone();
        }
        body["transcription_enabled"] = true.into();
        body["transcription_config"] = config;
    }
    if let Some(streaming) = field(input, "streaming") {
        let streaming = streaming
            .as_object()
            .ok_or_else(|| ApiError::BadRequest("streaming must be an object".into()))?;
        let mut config = serde_json::Map::new();
        for (v1, v2) in [("input", "input_url"), ("output", "output_url")] {
            if let Some(v) = streaming.get(v1).filter(|v| !v.is_null()) {
                config.insert(v2.to_owned(), v.clone());
            }
        }
        match streaming.get("audio_frequency").and_then(|f| f.as_str()) {
            Some("16khz") => {
                config.insert("audio_frequency".into(), 16_000.into());
            }
            Some("24khz") => {
                config.insert("audio_frequency".into(), 24_000.into());
            }
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "streaming.audio_frequency {other} is not one of 16khz, 24khz"
                )));
            }
            None => {}
        }
        body["streaming_enabled"] = true.into();
        body["streaming_config"] = config.into();
    }
    const V2_FIELDS: [&str; 7] = [
        "allow_multiple_bots",
        "timeout_config",
        "zoom_config",
        "streaming_enabled",
        "streaming_config",
        "transcription_enabled",
        "transcription_config",
    ];
    for name in V2_FIELDS {
        if let Some(v) = field(input, name) {
            body[name] = v.clone();
        }
    }
    Ok(body)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn callback() -> CallbackConfig {
        CallbackConfig {
            url: "https://relay.example.com/api/meeting-bot/webhook".into(),
            secret: "cb".into(),
        }
    }

    #[test]
    fn v2_body_has_our_callback_and_no_webhook_url() {
        let body = v2_create_body(
            &json!({"meeting_url": "https://zoom.us/j/1", "webhook_url": "https://x", "bot_name": " "}),
            &callback(),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({
                "bot_name": "meeting-relay",
                "meeting_url": "https://zoom.us/j/1",
                "callback_enabled": true,
                "callback_config": {
                    "url": "https://relay.example.com/api/meeting-bot/webhook",
                    "method": "POST",
                    "secret": "cb",
                },
            })
        );
    }

    #[test]
    fn v2_body_maps_v1_fields_and_lets_v2_fields_win() {
        let body = v2_create_body(
            &json!({
                "meeting_url": "https://zoom.us/j/1",
                "automatic_leave": {"silence_timeout": 900, "noone_joined_timeout": null},
                "timeout_config": {"waiting_room_timeout": 300},
                "speech_to_text": "Default",
                "streaming": {"input": "wss://in", "audio_frequency": "24khz"},
                "deduplication_key": "k",
            }),
            &callback(),
        )
        .unwrap();
        assert_eq!(body["timeout_config"], json!({"waiting_room_timeout": 300}));
        assert_eq!(body["transcription_config"], json!({"provider": "gladia"}));
        assert_eq!(
            body["streaming_config"],
            json!({"input_url": "wss://in", "audio_frequency": 24000})
        );
        assert!(body.get("deduplication_key").is_none());
        let err = |input: serde_json::Value| {
            v2_create_body(&input, &callback())
                .unwrap_err()
                .status()
                .as_u16()
        };
        assert_eq!(
            err(json!({"meeting_url": "https://zoom.us/j/1", "start_time": 5})),
            400
        );
        assert_eq!(
            err(
                json!({"meeting_url": "https://zoom.us/j/1", "streaming": {"audio_frequency": "8khz"}})
            ),
            400
        );
        assert_eq!(err(json!({"meeting_url": "zoom.us/j/1"})), 400);
    }

    #[test]
    fn v1_body_is_unchanged() {
        let body = v1_create_body(
            &json!({"meeting_url": "https://zoom.us/j/1", "start_time": 5, "callback_config": {}}),
            "https://relay.example.com/api/meeting-bot/webhook",
        )
        .unwrap();
        assert_eq!(
            body,
            json!({
                "bot_name": "meeting-relay",
                "meeting_url": "https://zoom.us/j/1",
                "webhook_url": "https://relay.example.com/api/meeting-bot/webhook",
                "start_time": 5,
            })
        );
    }

    #[test]
    fn statuses_of_the_new_errors() {
        assert_eq!(ApiError::NotImplemented("x".into()).status(), 501);
        assert_eq!(
            ApiError::Upstream(MeetingBaasError::Unsupported {
                call: "resend-webhook",
                version: ApiVersion::V1
            })
            .status(),
            501
        );
        assert_eq!(ApiError::NotConfigured("x").status(), 503);
    }
}
