//! The items of the events table as serde structs (through `serde_dynamo`): one layout for the
//! table and for its stream's NEW_IMAGE, which the fan-out decodes.
//!
//! | item | `sk` | holds |
//! |---|---|---|
//! | session | `SESSION` | the bot's `Session` (a JSON document), whose `seq` is the last allocated event seq |
//! | event | `EVT#<seq:020>` | one `StoredEvent`, body zstd-compressed inline or in chunks |
//! | idempotency | `IDEM#<event_id>` | `event_id → seq`, the duplicate check and the lookup by id |
//! | chunk | `BLOB#<event_id>#<hash16>#<nnnn>` | part of a compressed body too big for one item |

use chrono::{DateTime, SecondsFormat, Utc};
use relay_core::domain::bot_id::BotId;
use relay_core::domain::event::{EventId, EventKind, Family, NewEvent, StoredEvent};
use relay_core::domain::session::Status;
use relay_core::ports::store::StoreError;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::body::StoredBody;

pub(crate) const KIND_SESSION: &str = "session";
pub(crate) const KIND_EVENT: &str = "event";
pub(crate) const KIND_IDEM: &str = "idem";
pub(crate) const KIND_CHUNK: &str = "chunk";
pub(crate) const SESSION_SK: &str = "SESSION";

pub(crate) fn pk(bot: &BotId) -> String {
    format!("BOT#{bot}")
}

pub(crate) fn evt_sk(seq: u64) -> String {
    format!("EVT#{seq:020}")
}

pub(crate) fn idem_sk(event_id: &EventId) -> String {
    format!("IDEM#{event_id}")
}

/// An event item. The body is inline (`body`) or in chunks (`body_chunks`, `body_hash`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EventDoc {
    pub pk: String,
    pub sk: String,
    pub kind: String,
    pub bot_id: BotId,
    pub seq: u64,
    pub event_id: EventId,
    pub idem_key: String,
    pub event: EventKind,
    pub source_event: String,
    pub family: Family,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// RFC 3339 to the nanosecond, as written since the first release.
    pub received_at: String,
    pub status: Status,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_of: Option<EventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<ByteBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_chunks: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hash: Option<String>,
}

/// What storing an event gave it, beside what the delivery said.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored<'a> {
    pub seq: u64,
    /// Kind after the session refined it (first in-call status → `meeting.started`).
    pub kind: EventKind,
    pub status: Status,
    pub expires_at: i64,
    pub repeat_of: Option<&'a EventId>,
}

/// Where an event item's body is.
pub(crate) enum BodyRef {
    Inline(Vec<u8>),
    Chunked { count: usize, hash: String },
}

/// An event item read back, its body not yet fetched or decompressed (`meta.body` is empty).
pub(crate) struct EventItem {
    pub(crate) meta: StoredEvent,
    pub(crate) body: BodyRef,
}

impl EventDoc {
    /// The item of `event` stored at `seq` (the fields the session gave it passed in).
    pub(crate) fn new(event: &NewEvent, stored: Stored<'_>, body: &StoredBody) -> Self {
        let (inline, chunks, hash) = match body {
            StoredBody::Inline(bytes) => (Some(ByteBuf::from(bytes.clone())), None, None),
            StoredBody::Chunked { hash, chunks } => (None, Some(chunks.len()), Some(hash.clone())),
        };
        Self {
            pk: pk(&event.bot_id),
            sk: evt_sk(stored.seq),
            kind: KIND_EVENT.to_owned(),
            bot_id: event.bot_id.clone(),
            seq: stored.seq,
            event_id: event.event_id.clone(),
            idem_key: event.idempotency_key.clone(),
            event: stored.kind,
            source_event: event.source_event.clone(),
            family: event.family,
            status_code: event.status_code.clone(),
            occurred_at: event.occurred_at.clone(),
            received_at: event
                .received_at
                .to_rfc3339_opts(SecondsFormat::Nanos, true),
            status: stored.status,
            expires_at: stored.expires_at,
            repeat_of: stored.repeat_of.cloned(),
            body: inline,
            body_chunks: chunks,
            body_hash: hash,
        }
    }

    /// The event it holds, checked against the bot it was read for.
    pub(crate) fn into_event(self, bot: &BotId) -> Result<EventItem, StoreError> {
        let corrupt =
            |what: &str| StoreError::Corrupt(format!("item {} / {}: {what}", self.pk, self.sk));
        if self.kind != KIND_EVENT {
            return Err(corrupt("not an event item"));
        }
        if &self.bot_id != bot {
            return Err(corrupt("event item belongs to another bot"));
        }
        let received_at = DateTime::parse_from_rfc3339(&self.received_at)
            .map_err(|_| corrupt("bad received_at"))?
            .with_timezone(&Utc);
        let body = match (self.body, self.body_chunks, self.body_hash) {
            (Some(bytes), _, _) => BodyRef::Inline(bytes.into_vec()),
            (None, Some(count), Some(hash)) => BodyRef::Chunked { count, hash },
            _ => return Err(corrupt("event item has no body")),
        };
        Ok(EventItem {
            meta: StoredEvent {
                bot_id: self.bot_id,
                event_id: self.event_id,
                seq: self.seq,
                idempotency_key: self.idem_key,
                kind: self.event,
                source_event: self.source_event,
                family: self.family,
                status_code: self.status_code,
                occurred_at: self.occurred_at,
                received_at,
                status: self.status,
                expires_at: self.expires_at,
                repeat_of: self.repeat_of,
                body: String::new(),
            },
            body,
        })
    }
}

/// The idempotency record of a delivery: what a duplicate is answered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IdemDoc {
    pub pk: String,
    pub sk: String,
    pub kind: String,
    pub seq: u64,
    pub event: EventKind,
    pub event_id: EventId,
    /// Random per write attempt: a writer whose transaction outcome it did not see recognises
    /// its own record.
    pub writer: String,
    pub expires_at: i64,
}

/// The session item: the session as a JSON document, and the attributes conditions use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SessionDoc {
    pub pk: String,
    pub sk: String,
    pub kind: String,
    pub seq: u64,
    pub status: Status,
    pub doc: String,
    pub expires_at: i64,
    /// The open-session index's keys: present only while the session is open (a sparse index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_sk: Option<String>,
    /// The recent-session index's keys: on every session but the account-level bot's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_sk: Option<String>,
}

/// One chunk of a compressed body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChunkDoc {
    pub pk: String,
    pub sk: String,
    pub kind: String,
    pub data: ByteBuf,
    pub expires_at: i64,
}
