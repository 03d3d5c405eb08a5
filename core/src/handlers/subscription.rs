//! The WebSocket routes (`$connect`, `$disconnect`, `$default` → subscribe / unsubscribe /
//! ping). Shared by the connections Lambda and `relay serve`: the API Gateway adapter turns the
//! WebSocket proxy event into a [`WsRequest`] and the [`WsReply`] back into the route's answer.
//! Replies to a client go through the pusher (postToConnection), as on AWS.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use crate::domain::bot_id::BotId;
use crate::domain::message;
use crate::domain::token::TokenKeys;
use crate::ports::connections::{Connection, ConnectionId, ConnectionStore};
use crate::ports::push::{PushError, Pusher};
use crate::ports::store::{EventStore, MAX_PAGE, StoreError};
use crate::telemetry::metrics as m;

/// The `outcome` labels of [`m::SUBSCRIBES`].
const SUBSCRIBED: &str = "subscribed";
const REFUSED: &str = "refused";
const FAILED: &str = "failed";

pub struct SubscriptionHandler {
    tokens: TokenKeys,
    connections: Arc<dyn ConnectionStore>,
    events: Arc<dyn EventStore>,
    pusher: Arc<dyn Pusher>,
}

/// Which WebSocket route an event is for, with what that route needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsRoute {
    /// `$connect`, with the `token` query parameter when there is one.
    Connect {
        token: Option<String>,
    },
    Disconnect,
    /// `$default`: a client frame.
    Message(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsRequest {
    /// The connection id as the gateway gave it (checked here, not trusted).
    pub connection_id: Option<String>,
    pub request_id: String,
    pub route: WsRoute,
}

/// The route's answer to the gateway: on `$connect`, anything but 200 refuses the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsReply {
    pub status: u16,
    pub body: Option<&'static str>,
}

/// A client frame, parsed at the edge of the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Subscribe { bot: BotId, since: Option<u64> },
    Unsubscribe { bot: BotId },
    Ping,
}

/// Why a client frame was refused: the `error` message's code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: &'static str,
    /// The bot the frame named, when it named a valid one (for the log line).
    pub bot: Option<BotId>,
}

impl Refusal {
    fn new(code: &'static str, message: &'static str) -> Self {
        Self {
            code,
            message,
            bot: None,
        }
    }
}

impl ClientMessage {
    pub fn parse(frame: &str) -> Result<Self, Refusal> {
        let Ok(serde_json::Value::Object(msg)) = serde_json::from_str::<serde_json::Value>(frame)
        else {
            return Err(Refusal::new(
                "bad_message",
                "messages are JSON objects with an action",
            ));
        };
        // An action that is there but not a string (or null) is not a message at all.
        let action = match msg.get("action") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(a)) => Some(a.as_str()),
            Some(_) => {
                return Err(Refusal::new(
                    "bad_message",
                    "messages are JSON objects with an action",
                ));
            }
        };
        let bot = || match msg.get("bot_id").and_then(|v| v.as_str()).map(BotId::parse) {
            Some(Ok(b)) => Ok(b),
            _ => Err(Refusal::new(
                "invalid_bot_id",
                "bot_id must be a valid bot id",
            )),
        };
        match action {
            Some("ping") => Ok(ClientMessage::Ping),
            Some("unsubscribe") => Ok(ClientMessage::Unsubscribe { bot: bot()? }),
            Some("subscribe") => {
                let bot = bot()?;
                let since = match msg.get("since") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(v) => match v.as_u64() {
                        Some(n) => Some(n),
                        None => {
                            return Err(Refusal {
                                bot: Some(bot),
                                ..Refusal::new("invalid_since", "since must be a whole number")
                            });
                        }
                    },
                };
                Ok(ClientMessage::Subscribe { bot, since })
            }
            _ => Err(Refusal::new(
                "unknown_action",
                "action must be subscribe, unsubscribe or ping",
            )),
        }
    }
}

/// What one route event did, for the log line and the reply.
struct RouteOutcome {
    status: u16,
    outcome: String,
    bot: Option<BotId>,
}

impl RouteOutcome {
    fn ok(outcome: impl Into<String>, bot: Option<BotId>) -> Self {
        Self {
            status: 200,
            outcome: outcome.into(),
            bot,
        }
    }

    fn status(status: u16, outcome: impl Into<String>, bot: Option<BotId>) -> Self {
        Self {
            status,
            outcome: outcome.into(),
            bot,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RouteError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("push: {0}")]
    Push(#[from] PushError),
}

impl SubscriptionHandler {
    pub fn new(
        tokens: TokenKeys,
        connections: Arc<dyn ConnectionStore>,
        events: Arc<dyn EventStore>,
        pusher: Arc<dyn Pusher>,
    ) -> Self {
        Self {
            tokens,
            connections,
            events,
            pusher,
        }
    }

    pub async fn handle(&self, req: WsRequest) -> WsReply {
        let started = Instant::now();
        let WsRequest {
            connection_id,
            request_id,
            route,
        } = req;
        let route_key = match &route {
            WsRoute::Connect { .. } => "$connect",
            WsRoute::Disconnect => "$disconnect",
            WsRoute::Message(_) => "$default",
        };
        let Some(id) = connection_id.as_deref().and_then(ConnectionId::parse) else {
            tracing::warn!(
                route = route_key,
                request_id,
                "websocket event without a valid connection id"
            );
            return WsReply {
                status: 400,
                body: Some(r#"{"error":"missing connection id"}"#),
            };
        };
        let outcome = match route {
            WsRoute::Connect { token } => self.connect(&id, token.as_deref()).await,
            WsRoute::Disconnect => {
                // Closed whether or not its record could be removed (it expires anyway).
                m::connection_closed();
                match self.connections.remove(&id).await {
                    Ok(()) => RouteOutcome::ok("disconnected", None),
                    Err(e) => RouteOutcome::status(500, format!("remove failed: {e}"), None),
                }
            }
            WsRoute::Message(body) => self.message(&id, &body).await,
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            route = route_key,
            request_id,
            connection_id = id.as_str(),
            bot_id = outcome.bot.as_ref().map(BotId::as_str),
            status = outcome.status,
            outcome = outcome.outcome,
            latency_ms,
            "websocket"
        );
        match outcome.status {
            200 => WsReply {
                status: 200,
                body: None,
            },
            401 => WsReply {
                status: 401,
                body: Some(r#"{"error":"unauthorized"}"#),
            },
            status => WsReply {
                status,
                body: Some(r#"{"error":"internal error"}"#),
            },
        }
    }

    async fn connect(&self, id: &ConnectionId, token: Option<&str>) -> RouteOutcome {
        let Some(token) = token else {
            return RouteOutcome::status(401, "no token", None);
        };
        let claims = match self.tokens.verify(token) {
            Ok(c) => c,
            Err(e) => return RouteOutcome::status(401, format!("refused: {e}"), None),
        };
        let now = Utc::now();
        let connection = Connection {
            id: id.clone(),
            sub: claims.sub,
            bots: claims.bots,
            scope: claims.scope,
            token_exp: claims.exp,
            connected_at: now,
            expires_at: Connection::expiry_for(now),
        };
        match self.connections.put(&connection).await {
            Ok(()) => {
                m::connection_opened();
                RouteOutcome::ok("connected", None)
            }
            Err(e) => RouteOutcome::status(500, format!("store failed: {e}"), None),
        }
    }

    async fn message(&self, id: &ConnectionId, body: &str) -> RouteOutcome {
        let msg = match ClientMessage::parse(body) {
            Ok(m) => m,
            Err(refusal) => {
                return self
                    .refuse(id, refusal.code, refusal.message, refusal.bot)
                    .await;
            }
        };
        let (result, bot) = match msg {
            ClientMessage::Ping => (
                self.pusher
                    .send(id, &message::heartbeat(Utc::now()))
                    .await
                    .map(|_| "heartbeat".to_owned())
                    .map_err(RouteError::from),
                None,
            ),
            ClientMessage::Unsubscribe { bot } => (
                self.connections
                    .unsubscribe(id, &bot)
                    .await
                    .map(|_| "unsubscribed".to_owned())
                    .map_err(RouteError::from),
                Some(bot),
            ),
            ClientMessage::Subscribe { bot, since } => {
                let (outcome, counted) = self.subscribe(id, bot, since).await;
                metrics::counter!(m::SUBSCRIBES, "outcome" => counted).increment(1);
                return outcome;
            }
        };
        match result {
            Ok(outcome) => RouteOutcome::ok(outcome, bot),
            Err(RouteError::Push(PushError::Gone)) => {
                let _ = self.connections.remove(id).await;
                RouteOutcome::ok("connection gone", bot)
            }
            Err(e) => RouteOutcome::status(500, e.to_string(), bot),
        }
    }

    async fn refuse(
        &self,
        id: &ConnectionId,
        code: &str,
        text: &str,
        bot: Option<BotId>,
    ) -> RouteOutcome {
        let _ = self.pusher.send(id, &message::error(code, text)).await;
        RouteOutcome::ok(format!("refused: {code}"), bot)
    }

    /// Says `connected` first, so it is the first message about the bot on this connection: the
    /// fan-out cannot reach the connection for the bot before the subscription is stored. Then
    /// registers the subscription, then reads the replay range: an event stored in between is
    /// both replayed and fanned out, never neither (the client drops the repeat). A failure
    /// after `connected` is an `unavailable` error naming the bot, so the client asks again.
    /// Also returns the `outcome` it is counted under ([`m::SUBSCRIBES`]).
    async fn subscribe(
        &self,
        id: &ConnectionId,
        bot: BotId,
        since: Option<u64>,
    ) -> (RouteOutcome, &'static str) {
        let connection = match self.connections.get(id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                let refused = self
                    .refuse(
                        id,
                        "not_connected",
                        "connection unknown; reconnect",
                        Some(bot),
                    )
                    .await;
                return (refused, REFUSED);
            }
            Err(e) => {
                return (RouteOutcome::status(500, e.to_string(), Some(bot)), FAILED);
            }
        };
        if connection.token_exp <= Utc::now().timestamp() {
            let refused = self
                .refuse(
                    id,
                    "token_expired",
                    "token expired; reconnect with a fresh token",
                    Some(bot),
                )
                .await;
            return (refused, REFUSED);
        }
        if !connection.allows_bot(&bot) {
            let refused = self
                .refuse(
                    id,
                    "forbidden",
                    "the token does not allow this bot",
                    Some(bot),
                )
                .await;
            return (refused, REFUSED);
        }
        let result: Result<String, RouteError> = async {
            self.pusher
                .send(id, &message::connected(bot.as_str()))
                .await?;
            self.connections.subscribe(&connection, &bot).await?;
            match since {
                None => {
                    let session = self.events.session(&bot).await?;
                    self.pusher
                        .send(id, &message::snapshot(bot.as_str(), session.as_ref()))
                        .await?;
                    Ok("subscribed".to_owned())
                }
                Some(after) => {
                    let mut after = after;
                    let mut replayed = 0u64;
                    loop {
                        let page = self
                            .events
                            .events_after(&bot, after, MAX_PAGE.min(200))
                            .await?;
                        for e in &page.events {
                            self.pusher
                                .send(id, &message::status_update(e, Some(&e.body)))
                                .await?;
                            after = e.seq;
                            replayed += 1;
                        }
                        if !page.more || page.events.is_empty() {
                            break;
                        }
                    }
                    Ok(format!("subscribed, replayed {replayed}"))
                }
            }
        }
        .await;
        match result {
            Ok(outcome) => (RouteOutcome::ok(outcome, Some(bot)), SUBSCRIBED),
            Err(RouteError::Push(PushError::Gone)) => {
                let _ = self.connections.remove(id).await;
                (RouteOutcome::ok("connection gone", Some(bot)), FAILED)
            }
            Err(e) => {
                let _ = self
                    .pusher
                    .send(
                        id,
                        &message::bot_error("unavailable", "try again", bot.as_str()),
                    )
                    .await;
                (RouteOutcome::status(500, e.to_string(), Some(bot)), FAILED)
            }
        }
    }
}
