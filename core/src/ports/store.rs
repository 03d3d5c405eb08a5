//! The event store port. Adapters: `relay-sqlite` (embedded, the default for `relay serve`) and
//! `relay-dynamodb` (AWS, and any DynamoDB-API endpoint); both pass the one suite in
//! `testing::store_contract`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::bot_id::BotId;
use crate::domain::event::{EventId, EventKind, NewEvent, StoredEvent};
use crate::domain::session::{Session, Status};

/// Result of offering an event to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// First delivery: stored at `seq` and applied to the session.
    Stored(StoredEvent),
    /// The idempotency key was seen before; nothing changed.
    Duplicate {
        event_id: EventId,
        seq: u64,
        kind: EventKind,
    },
}

impl Appended {
    pub fn event_id(&self) -> &EventId {
        match self {
            Appended::Stored(e) => &e.event_id,
            Appended::Duplicate { event_id, .. } => event_id,
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            Appended::Stored(e) => e.seq,
            Appended::Duplicate { seq, .. } => *seq,
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            Appended::Stored(e) => e.kind,
            Appended::Duplicate { kind, .. } => *kind,
        }
    }

    pub fn is_duplicate(&self) -> bool {
        matches!(self, Appended::Duplicate { .. })
    }
}

/// One page of a bot's events in `seq` order.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    /// More events exist after the last one returned.
    pub more: bool,
}

/// One entry of the open-session index: a session that is not final (never the account-level
/// bot), with when it last changed. Also the cursor a pass resumes after: the index is ordered
/// by (`last_updated`, `bot_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    pub bot_id: BotId,
    pub status: Status,
    pub last_updated: DateTime<Utc>,
}

impl OpenSession {
    pub fn of(session: &Session) -> Option<Self> {
        session.is_open().then(|| Self {
            bot_id: session.bot_id.clone(),
            status: session.status,
            last_updated: session.last_updated,
        })
    }

    /// The index's sort key, the same text in both stores: the instant at nanosecond precision
    /// (fixed width, so text order is time order), then the bot.
    pub fn index_key(&self) -> String {
        index_key(self.last_updated, &self.bot_id)
    }
}

/// See [`OpenSession::index_key`].
pub fn index_key(at: DateTime<Utc>, bot: &BotId) -> String {
    format!(
        "{}#{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        bot
    )
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Unreachable, throttled or timed out after retries: the sender should retry (503).
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// Stored data that cannot be read back; a bug or tampering, never the sender's fault.
    #[error("event store data is corrupt: {0}")]
    Corrupt(String),
}

/// Retention of stored items, from `RETENTION_DAYS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self { days: 30 }
    }
}

impl Retention {
    /// Unix seconds at which something written at `from` may be dropped.
    pub fn expires_at(self, from: chrono::DateTime<chrono::Utc>) -> i64 {
        from.timestamp() + i64::from(self.days) * 86_400
    }
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Stores `event` unless its (bot, idempotency key) was stored before, and applies it to
    /// the bot's session in the same atomic step. Returns only once the write is durable.
    async fn append(&self, event: NewEvent) -> Result<Appended, StoreError>;

    async fn session(&self, bot: &BotId) -> Result<Option<Session>, StoreError>;

    /// Creates the bot's session in `starting` unless it exists (a bot was just started and no
    /// webhook has arrived yet); returns the session as stored. Never disturbs an existing one.
    async fn ensure_session(&self, bot: &BotId, now: DateTime<Utc>) -> Result<Session, StoreError>;

    /// Events with `seq > after`, ascending, at most `limit` (1..=1000).
    async fn events_after(
        &self,
        bot: &BotId,
        after: u64,
        limit: u32,
    ) -> Result<EventPage, StoreError>;

    /// One event, body whole.
    async fn event(
        &self,
        bot: &BotId,
        event_id: &EventId,
    ) -> Result<Option<StoredEvent>, StoreError>;

    /// Open sessions (not final, not the account-level bot) last changed before
    /// `idle_before`, oldest first, after `cursor` in (`last_updated`, `bot_id`) order, at most
    /// `limit` (1..=[`MAX_PAGE`]). Read from an index the appends maintain, never a scan of
    /// the events; the DynamoDB index is eventually consistent, so an entry may be a moment
    /// stale: read the session before acting on it.
    async fn open_sessions(
        &self,
        idle_before: DateTime<Utc>,
        cursor: Option<&OpenSession>,
        limit: u32,
    ) -> Result<Vec<OpenSession>, StoreError>;

    /// The sessions changed most recently, open or final (never the account-level bot), newest
    /// first, at most `limit` (1..=[`MAX_PAGE`]): what an operator watching the relay wants to
    /// see first. Read from an index, never a scan of the events; on DynamoDB the index is
    /// eventually consistent, so a session may show a moment-old state (the live messages and
    /// `session` give the current one).
    async fn recent_sessions(&self, limit: u32) -> Result<Vec<Session>, StoreError>;
}

/// Largest page the stores return, whatever is asked.
pub const MAX_PAGE: u32 = 1000;
