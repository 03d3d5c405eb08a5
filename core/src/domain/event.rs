//! Canonical events: the one vocabulary every stored event and browser message uses, whatever
//! family of payload it came from.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::bot_id::BotId;
use crate::domain::status::{BotError, Outcome, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "meeting.started")]
    MeetingStarted,
    #[serde(rename = "meeting.completed")]
    MeetingCompleted,
    #[serde(rename = "meeting.failed")]
    MeetingFailed,
    #[serde(rename = "transcription.available")]
    TranscriptionAvailable,
    #[serde(rename = "transcription.updated")]
    TranscriptionUpdated,
    #[serde(rename = "bot.status_change")]
    BotStatusChange,
    #[serde(rename = "chat.message")]
    ChatMessage,
    #[serde(rename = "unknown")]
    Unknown,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::MeetingStarted,
        EventKind::MeetingCompleted,
        EventKind::MeetingFailed,
        EventKind::TranscriptionAvailable,
        EventKind::TranscriptionUpdated,
        EventKind::BotStatusChange,
        EventKind::ChatMessage,
        EventKind::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MeetingStarted => "meeting.started",
            EventKind::MeetingCompleted => "meeting.completed",
            EventKind::MeetingFailed => "meeting.failed",
            EventKind::TranscriptionAvailable => "transcription.available",
            EventKind::TranscriptionUpdated => "transcription.updated",
            EventKind::BotStatusChange => "bot.status_change",
            EventKind::ChatMessage => "chat.message",
            EventKind::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which sender vocabulary a payload was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Seed,
    V1,
    V2,
    Unknown,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Seed => "seed",
            Family::V1 => "v1",
            Family::V2 => "v2",
            Family::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Family::Seed, Family::V1, Family::V2, Family::Unknown]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// Deterministic from (bot, idempotency key): a redelivery computes the same id, so a retry
/// after a crash can never mint a second event for one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    pub fn derive(bot: &BotId, idempotency_key: &str) -> Self {
        let mut h = Sha256::new();
        h.update(bot.as_str().as_bytes());
        h.update([0u8]);
        h.update(idempotency_key.as_bytes());
        let digest = h.finalize();
        Self(format!("evt_{}", hex::encode(&digest[..16])))
    }

    /// Accepts only the shape `derive` produces, so ids from URLs can go into keys safely.
    pub fn parse(raw: &str) -> Option<Self> {
        let hex_part = raw.strip_prefix("evt_")?;
        (hex_part.len() == 32
            && hex_part
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An authenticated, parsed delivery on its way into a store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub bot_id: BotId,
    pub event_id: EventId,
    pub idempotency_key: String,
    /// Kind as the payload alone says; the session may refine it (first in-call → started).
    pub kind: EventKind,
    pub source_event: String,
    pub family: Family,
    pub status_code: Option<String>,
    /// When the sender says it happened (`status.created_at`, `sent_at`), as sent.
    pub occurred_at: Option<String>,
    /// Error the sender reports (failure outcomes, failure signals such as `meeting_error`),
    /// for the session (boxed: most events have none, and the event travels by value).
    pub error: Option<Box<BotError>>,
    /// `status.attempt` / `status.max` of a v2 `retrying` signal.
    pub attempt: Option<u32>,
    pub max: Option<u32>,
    /// The outcome this event reports when its kind alone does not say (a `bot.reconciled`);
    /// overrides the kind's.
    pub outcome: Option<Outcome>,
    pub received_at: DateTime<Utc>,
    /// The body exactly as received (valid UTF-8 JSON).
    pub body: String,
}

/// An event as stored: what replay, the REST routes and the fan-out read.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub bot_id: BotId,
    pub event_id: EventId,
    pub seq: u64,
    pub idempotency_key: String,
    pub kind: EventKind,
    pub source_event: String,
    pub family: Family,
    pub status_code: Option<String>,
    pub occurred_at: Option<String>,
    pub received_at: DateTime<Utc>,
    /// Session status right after this event was applied.
    pub status: Status,
    /// Unix seconds after which the store may drop the event (`RETENTION_DAYS`).
    pub expires_at: i64,
    /// This event reports an outcome the session already had, first stored as this event: it
    /// changed nothing, and browsers show it as a repeat.
    pub repeat_of: Option<EventId>,
    pub body: String,
}

impl StoredEvent {
    pub fn from_new(
        new: NewEvent,
        seq: u64,
        kind: EventKind,
        status: Status,
        expires_at: i64,
        repeat_of: Option<EventId>,
    ) -> Self {
        Self {
            bot_id: new.bot_id,
            event_id: new.event_id,
            seq,
            idempotency_key: new.idempotency_key,
            kind,
            source_event: new.source_event,
            family: new.family,
            status_code: new.status_code,
            occurred_at: new.occurred_at,
            received_at: new.received_at,
            status,
            expires_at,
            repeat_of,
            body: new.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_scoped_by_bot_and_parse_back() {
        let a = BotId::parse("a").unwrap();
        let b = BotId::parse("b").unwrap();
        let ia = EventId::derive(&a, "k");
        assert_eq!(ia, EventId::derive(&a, "k"));
        assert_ne!(ia, EventId::derive(&b, "k"));
        assert_eq!(EventId::parse(ia.as_str()), Some(ia));
        assert_eq!(EventId::parse("evt_../../x"), None);
        assert_eq!(EventId::parse("evt_ABCDEF0123456789abcdef0123456789"), None);
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::json!(k.as_str())
            );
        }
    }
}
