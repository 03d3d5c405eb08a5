//! The connection store port: which WebSocket connections exist and which bots each one
//! watches. Adapters: `relay-sqlite` and `relay-dynamodb`, both under the one suite in
//! `testing::connection_contract`.
//! Finding a bot's subscribers is a lookup by bot (a DynamoDB Query), never a scan.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::bot_id::BotId;
use crate::domain::token::Scope;
use crate::ports::store::StoreError;

/// API Gateway closes every WebSocket after two hours; records outlive that by a margin and
/// then expire (TTL), so a connection that vanished without `$disconnect` cleans itself up.
pub const CONNECTION_LIFETIME_SECS: i64 = 2 * 3600;
pub const CONNECTION_TTL_MARGIN_SECS: i64 = 15 * 60;

/// An API Gateway connection id (base64-like, e.g. `L0SM9cOFvHcCIhw=`), or the local host's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(String);

impl ConnectionId {
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
            });
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A connection accepted at `$connect`, with what its token allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub id: ConnectionId,
    /// The token's subject.
    pub sub: String,
    /// Bot ids the token names (`*` for all).
    pub bots: Vec<String>,
    pub scope: Scope,
    /// The token's expiry (unix seconds).
    pub token_exp: i64,
    pub connected_at: DateTime<Utc>,
    /// When the store may drop the record (connected + 2 h + margin), unix seconds.
    pub expires_at: i64,
}

impl Connection {
    pub fn allows_bot(&self, bot: &BotId) -> bool {
        self.bots.iter().any(|b| b == "*" || b == bot.as_str())
    }

    pub fn expiry_for(connected_at: DateTime<Utc>) -> i64 {
        connected_at.timestamp() + CONNECTION_LIFETIME_SECS + CONNECTION_TTL_MARGIN_SECS
    }
}

/// A subscriber of a bot, with what the fan-out needs to know before it sends to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subscriber {
    pub id: ConnectionId,
    /// Its token's expiry (unix seconds): past it, the connection gets nothing but the
    /// `token_expired` error and is closed.
    pub token_exp: i64,
}

#[async_trait]
pub trait ConnectionStore: Send + Sync + 'static {
    async fn put(&self, connection: &Connection) -> Result<(), StoreError>;

    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError>;

    /// Removes the connection and every subscription it has. Removing an unknown id is fine.
    async fn remove(&self, id: &ConnectionId) -> Result<(), StoreError>;

    /// Idempotent. `connection` is the record as [`get`](Self::get) returned it (the caller
    /// has just checked its token): its expiries go onto the subscription without a second
    /// read. A connection no longer stored (removed meanwhile) or expired gets no subscription.
    async fn subscribe(&self, connection: &Connection, bot: &BotId) -> Result<(), StoreError>;

    async fn unsubscribe(&self, id: &ConnectionId, bot: &BotId) -> Result<(), StoreError>;

    /// Connections subscribed to `bot` (each once) with their token's expiry, by one lookup
    /// on the bot (the expiry is stored with the subscription, never read per connection).
    async fn subscribers(&self, bot: &BotId) -> Result<Vec<Subscriber>, StoreError>;
}
