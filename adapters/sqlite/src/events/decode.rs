//! Errors and decoding: stored rows back into domain values, and the store's internal error.

use chrono::{DateTime, Utc};
use relay_core::domain::bot_id::BotId;
use relay_core::domain::event::{EventId, EventKind, Family, StoredEvent};
use relay_core::domain::session::{Session, Status};
use relay_core::ports::store::StoreError;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row};

// ---------------------------------------------------------------------------------------------
// Errors

/// Internal error, so `?` works on rusqlite results without a crate-wide `From` impl.
#[derive(Debug)]
pub(crate) enum Fault {
    Unavailable(String),
    Corrupt(String),
}

impl From<rusqlite::Error> for Fault {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::Error as E;
        match &e {
            // A value that does not decode as the schema says: retrying will not help.
            E::FromSqlConversionFailure(..)
            | E::IntegralValueOutOfRange(..)
            | E::InvalidColumnType(..)
            | E::Utf8Error(..) => Fault::Corrupt(e.to_string()),
            // A damaged file, or (on the writer) a seq clash: the session no longer matches
            // the events stored for its bot.
            E::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    ErrorCode::DatabaseCorrupt
                        | ErrorCode::NotADatabase
                        | ErrorCode::ConstraintViolation
                ) =>
            {
                Fault::Corrupt(e.to_string())
            }
            // Busy, locked, I/O, full disk, ...: the sender should retry later.
            _ => Fault::Unavailable(e.to_string()),
        }
    }
}

impl From<Fault> for StoreError {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Unavailable(m) => StoreError::Unavailable(m),
            Fault::Corrupt(m) => StoreError::Corrupt(m),
        }
    }
}

pub(super) fn writer_gone() -> StoreError {
    StoreError::Unavailable("the SQLite writer has stopped".into())
}

pub(super) fn corrupt(what: &str, value: impl std::fmt::Debug) -> Fault {
    Fault::Corrupt(format!("stored {what} {value:?} does not decode"))
}

// ---------------------------------------------------------------------------------------------
// Decoding

pub(super) fn load_session(conn: &Connection, bot: &BotId) -> Result<Option<Session>, Fault> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM sessions WHERE bot_id = ?1")?
        .query_row([bot.as_str()], |r| r.get(0))
        .optional()?;
    let Some(doc) = doc else { return Ok(None) };
    let session: Session = serde_json::from_str(&doc)
        .map_err(|e| Fault::Corrupt(format!("session of bot {bot} does not decode: {e}")))?;
    if &session.bot_id != bot {
        return Err(Fault::Corrupt(format!(
            "session stored under bot {bot} belongs to {}",
            session.bot_id
        )));
    }
    Ok(Some(session))
}

/// Decodes a row selected with [`EVENT_COLUMNS`].
pub(super) fn read_event(row: &Row<'_>) -> Result<StoredEvent, Fault> {
    let bot: String = row.get(1)?;
    let event_id: String = row.get(2)?;
    let family: String = row.get(7)?;
    let received_at: String = row.get(10)?;
    let status: String = row.get(11)?;
    Ok(StoredEvent {
        bot_id: BotId::parse(&bot).map_err(|_| corrupt("bot id", &bot))?,
        event_id: EventId::parse(&event_id).ok_or_else(|| corrupt("event id", &event_id))?,
        seq: decode_seq(row.get(3)?)?,
        idempotency_key: row.get(4)?,
        kind: decode_kind(&row.get::<_, String>(5)?)?,
        source_event: row.get(6)?,
        family: Family::parse(&family).ok_or_else(|| corrupt("family", &family))?,
        status_code: row.get(8)?,
        occurred_at: row.get(9)?,
        received_at: DateTime::parse_from_rfc3339(&received_at)
            .map_err(|_| corrupt("received_at", &received_at))?
            .with_timezone(&Utc),
        status: Status::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        expires_at: row.get(12)?,
        repeat_of: match row.get::<_, Option<String>>(13)? {
            Some(id) => Some(EventId::parse(&id).ok_or_else(|| corrupt("repeat_of", &id))?),
            None => None,
        },
        body: row.get(14)?,
    })
}

pub(super) fn decode_seq(seq: i64) -> Result<u64, Fault> {
    u64::try_from(seq).map_err(|_| corrupt("seq", seq))
}

pub(super) fn decode_kind(kind: &str) -> Result<EventKind, Fault> {
    EventKind::parse(kind).ok_or_else(|| corrupt("kind", kind))
}
