//! The WebSocket routes (`$connect`, `$disconnect`, `$default` → subscribe / unsubscribe /
//! ping). Shared by the connections Lambda and `relay serve`, which both hand it API Gateway's
//! WebSocket proxy event. Replies go through the pusher (postToConnection), as on AWS.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use chrono::Utc;
use serde::Deserialize;

use crate::bot_id::BotId;
use crate::connection::{Connection, ConnectionId, ConnectionStore};
use crate::message;
use crate::push::{PushError, Pusher};
use crate::store::{EventStore, MAX_PAGE, StoreError};
use crate::token::TokenKeys;

pub struct SubscriptionHandler {
    tokens: TokenKeys,
    connections: Arc<dyn ConnectionStore>,
    events: Arc<dyn EventStore>,
    pusher: Arc<dyn Pusher>,
}

#[derive(Debug, Deserialize)]
struct ClientMessage {
    action: Option<String>,
    bot_id: Option<serde_json::Value>,
    since: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
enum RouteError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("push: {0}")]
    Push(#[from] PushError),
}

fn response(status: i64, body: Option<&str>) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = body.map(|b| Body::Text(b.to_owned()));
    r
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

    pub async fn handle(&self, req: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let started = Instant::now();
        let ctx = &req.request_context;
        let route = ctx
            .route_key
            .clone()
            .unwrap_or_else(|| "$default".to_owned());
        let request_id = ctx.request_id.clone().unwrap_or_default();
        let Some(id) = ctx.connection_id.as_deref().and_then(ConnectionId::parse) else {
            tracing::warn!(
                route,
                request_id,
                "websocket event without a valid connection id"
            );
            return response(400, Some(r#"{"error":"missing connection id"}"#));
        };
        let (status, outcome, bot) = match route.as_str() {
            "$connect" => self.connect(&id, &req).await,
            "$disconnect" => match self.connections.remove(&id).await {
                Ok(()) => (200, "disconnected".to_owned(), None),
                Err(e) => (500, format!("remove failed: {e}"), None),
            },
            _ => self.message(&id, req.body.as_deref().unwrap_or("")).await,
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            route,
            request_id,
            connection_id = id.as_str(),
            bot_id = bot,
            status,
            outcome,
            latency_ms,
            "websocket"
        );
        match status {
            200 => response(200, None),
            401 => response(401, Some(r#"{"error":"unauthorized"}"#)),
            _ => response(status, Some(r#"{"error":"internal error"}"#)),
        }
    }

    async fn connect(
        &self,
        id: &ConnectionId,
        req: &ApiGatewayWebsocketProxyRequest,
    ) -> (i64, String, Option<String>) {
        let Some(token) = req.query_string_parameters.first("token") else {
            return (401, "no token".into(), None);
        };
        let claims = match self.tokens.verify(token) {
            Ok(c) => c,
            Err(e) => return (401, format!("refused: {e}"), None),
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
            Ok(()) => (200, "connected".into(), None),
            Err(e) => (500, format!("store failed: {e}"), None),
        }
    }

    async fn message(&self, id: &ConnectionId, body: &str) -> (i64, String, Option<String>) {
        let msg: ClientMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(_) => {
                return self
                    .refuse(
                        id,
                        "bad_message",
                        "messages are JSON objects with an action",
                        None,
                    )
                    .await;
            }
        };
        let result = match msg.action.as_deref() {
            Some("ping") => self
                .pusher
                .send(id, &message::heartbeat(Utc::now()))
                .await
                .map(|_| "heartbeat".to_owned())
                .map_err(Into::into),
            Some("subscribe") | Some("unsubscribe") => {
                let bot = match msg
                    .bot_id
                    .as_ref()
                    .and_then(|v| v.as_str())
                    .map(BotId::parse)
                {
                    Some(Ok(b)) => b,
                    _ => {
                        return self
                            .refuse(id, "invalid_bot_id", "bot_id must be a valid bot id", None)
                            .await;
                    }
                };
                if msg.action.as_deref() == Some("unsubscribe") {
                    self.connections
                        .unsubscribe(id, &bot)
                        .await
                        .map(|_| "unsubscribed".to_owned())
                        .map_err(Into::into)
                } else {
                    let since = match &msg.since {
                        None | Some(serde_json::Value::Null) => None,
                        Some(v) => match v.as_u64() {
                            Some(n) => Some(n),
                            None => {
                                return self
                                    .refuse(
                                        id,
                                        "invalid_since",
                                        "since must be a whole number",
                                        Some(&bot),
                                    )
                                    .await;
                            }
                        },
                    };
                    return self.subscribe(id, bot, since).await;
                }
            }
            _ => {
                return self
                    .refuse(
                        id,
                        "unknown_action",
                        "action must be subscribe, unsubscribe or ping",
                        None,
                    )
                    .await;
            }
        };
        match result {
            Ok(outcome) => (200, outcome, None),
            Err(RouteError::Push(PushError::Gone)) => {
                let _ = self.connections.remove(id).await;
                (200, "connection gone".into(), None)
            }
            Err(e) => (500, e.to_string(), None),
        }
    }

    async fn refuse(
        &self,
        id: &ConnectionId,
        code: &str,
        text: &str,
        bot: Option<&BotId>,
    ) -> (i64, String, Option<String>) {
        let _ = self.pusher.send(id, &message::error(code, text)).await;
        (200, format!("refused: {code}"), bot.map(|b| b.to_string()))
    }

    /// Registers the subscription first, then reads the replay range: an event stored in
    /// between is both replayed and fanned out, never neither (the client drops the repeat).
    async fn subscribe(
        &self,
        id: &ConnectionId,
        bot: BotId,
        since: Option<u64>,
    ) -> (i64, String, Option<String>) {
        let bot_name = Some(bot.to_string());
        let connection = match self.connections.get(id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return self
                    .refuse(
                        id,
                        "not_connected",
                        "connection unknown; reconnect",
                        Some(&bot),
                    )
                    .await;
            }
            Err(e) => return (500, e.to_string(), bot_name),
        };
        if connection.token_exp <= Utc::now().timestamp() {
            return self
                .refuse(
                    id,
                    "token_expired",
                    "token expired; reconnect with a fresh token",
                    Some(&bot),
                )
                .await;
        }
        if !connection.allows_bot(&bot) {
            return self
                .refuse(
                    id,
                    "forbidden",
                    "the token does not allow this bot",
                    Some(&bot),
                )
                .await;
        }
        let result: Result<String, RouteError> = async {
            self.connections.subscribe(id, &bot).await?;
            self.pusher
                .send(id, &message::connected(bot.as_str()))
                .await?;
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
            Ok(outcome) => (200, outcome, bot_name),
            Err(RouteError::Push(PushError::Gone)) => {
                let _ = self.connections.remove(id).await;
                (200, "connection gone".into(), bot_name)
            }
            Err(e) => {
                let _ = self
                    .pusher
                    .send(id, &message::error("unavailable", "try again"))
                    .await;
                (500, e.to_string(), bot_name)
            }
        }
    }
}
