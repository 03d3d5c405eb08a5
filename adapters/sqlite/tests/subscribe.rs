//! The subscribe route on the SQLite stores: what a browser receives, in order. `connected` is
//! the first message about a bot because it is sent before the subscription exists (the fan-out
//! cannot reach the connection for that bot earlier); a store failure after it is an
//! `unavailable` error that names the bot, so a client watching several asks again for that one.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use relay_core::BotId;
use relay_core::domain::token::{Claims, Scope, TokenKeys};
use relay_core::handlers::subscription::{SubscriptionHandler, WsRequest, WsRoute};
use relay_core::ports::connections::{Connection, ConnectionId, ConnectionStore, Subscriber};
use relay_core::ports::push::{PushError, Pusher};
use relay_core::ports::store::{Retention, StoreError};
use relay_core::testing::store_contract::fresh_bot;
use relay_sqlite::{SqliteConnections, SqliteStore};
use serde_json::{Value, json};

const SECRET: &str = "subscribe-order-secret-0123456789";
const CONNECTION: &str = "c0nnect10nId=";

/// Each message pushed, with whether the connection was a subscriber of the bot at that moment
/// (what the fan-out would have seen).
struct Recording {
    connections: Arc<dyn ConnectionStore>,
    bot: BotId,
    sent: Mutex<Vec<(Value, bool)>>,
}

#[async_trait]
impl Pusher for Recording {
    async fn send(&self, to: &ConnectionId, text: &str) -> Result<(), PushError> {
        let subscribed = self
            .connections
            .subscribers(&self.bot)
            .await
            .map_err(|e| PushError::Failed(e.to_string()))?
            .iter()
            .any(|s| s.id == *to);
        let value = serde_json::from_str(text).map_err(|e| PushError::Failed(e.to_string()))?;
        self.sent
            .lock()
            .map_err(|_| PushError::Failed("poisoned".into()))?
            .push((value, subscribed));
        Ok(())
    }
    async fn close(&self, _: &ConnectionId) -> Result<(), PushError> {
        Ok(())
    }
}

/// The SQLite connection store, except that storing a subscription fails when told to.
struct Flaky {
    inner: SqliteConnections,
    fail_subscribe: bool,
}

#[async_trait]
impl ConnectionStore for Flaky {
    async fn put(&self, c: &Connection) -> Result<(), StoreError> {
        self.inner.put(c).await
    }
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        self.inner.get(id).await
    }
    async fn remove(&self, id: &ConnectionId) -> Result<(), StoreError> {
        self.inner.remove(id).await
    }
    async fn subscribe(&self, c: &Connection, bot: &BotId) -> Result<(), StoreError> {
        if self.fail_subscribe {
            return Err(StoreError::Unavailable("injected".into()));
        }
        self.inner.subscribe(c, bot).await
    }
    async fn unsubscribe(&self, id: &ConnectionId, bot: &BotId) -> Result<(), StoreError> {
        self.inner.unsubscribe(id, bot).await
    }
    async fn subscribers(&self, bot: &BotId) -> Result<Vec<Subscriber>, StoreError> {
        self.inner.subscribers(bot).await
    }
}

/// Connects with a token for a fresh bot, subscribes to it (or, `to_another`, to a bot the token
/// does not name) and returns what was pushed.
async fn subscribe_once(fail_subscribe: bool, to_another: bool) -> (BotId, Vec<(Value, bool)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let connections: Arc<dyn ConnectionStore> = Arc::new(Flaky {
        inner: SqliteConnections::open(&dir.path().join("connections.sqlite3")).expect("open"),
        fail_subscribe,
    });
    let events = Arc::new(
        SqliteStore::open(&dir.path().join("events.sqlite3"), Retention::default()).expect("open"),
    );
    let bot = fresh_bot("order");
    let pusher = Arc::new(Recording {
        connections: connections.clone(),
        bot: bot.clone(),
        sent: Mutex::new(Vec::new()),
    });
    let keys = TokenKeys::new(SECRET).expect("keys");
    let token = keys
        .mint(&Claims {
            sub: "t".into(),
            exp: chrono::Utc::now().timestamp() + 600,
            bots: vec![bot.as_str().to_owned()],
            scope: Scope::Read,
        })
        .expect("mint");
    let handler = SubscriptionHandler::new(keys, connections, events, pusher.clone());
    let request = |route| WsRequest {
        connection_id: Some(CONNECTION.to_owned()),
        request_id: "r".into(),
        route,
    };
    let reply = handler
        .handle(request(WsRoute::Connect { token: Some(token) }))
        .await;
    assert_eq!(reply.status, 200, "connect accepted");
    let target = if to_another {
        fresh_bot("other")
    } else {
        bot.clone()
    };
    let frame = json!({"action": "subscribe", "bot_id": target.as_str()}).to_string();
    handler.handle(request(WsRoute::Message(frame))).await;
    let sent = pusher.sent.lock().expect("sent").clone();
    (bot, sent)
}

fn messages(sent: Vec<(Value, bool)>) -> Vec<Value> {
    sent.into_iter().map(|(m, _)| m).collect()
}

#[tokio::test]
async fn connected_is_sent_before_the_subscription_exists_then_the_snapshot() {
    let (bot, sent) = subscribe_once(false, false).await;
    let kinds: Vec<(&str, bool)> = sent
        .iter()
        .map(|(m, subscribed)| (m["type"].as_str().unwrap_or_default(), *subscribed))
        .collect();
    assert_eq!(
        kinds,
        vec![("connected", false), ("status_update", true)],
        "connected while no fan-out can reach the connection, the snapshot once it can: {sent:?}"
    );
    assert_eq!(
        sent[0].0,
        json!({"type": "connected", "bot_id": bot.as_str()})
    );
}

#[tokio::test]
async fn a_failed_subscription_after_connected_is_unavailable_naming_the_bot() {
    let (bot, sent) = subscribe_once(true, false).await;
    assert_eq!(
        messages(sent),
        vec![
            json!({"type": "connected", "bot_id": bot.as_str()}),
            json!({"type": "error", "code": "unavailable", "message": "try again", "bot_id": bot.as_str()}),
        ]
    );
}

#[tokio::test]
async fn a_refused_subscribe_is_the_plain_error_and_no_connected() {
    let (_, sent) = subscribe_once(false, true).await;
    assert_eq!(
        messages(sent),
        vec![
            json!({"type": "error", "code": "forbidden", "message": "the token does not allow this bot"})
        ]
    );
}
