//! Parsing a delivery body into what the relay needs to know about it. Three families arrive
//! (the seed/test shape, MeetingBaaS v1 and v2); anything else that is an authenticated JSON
//! object with a bot id is kept as `unknown` rather than dropped.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::domain::bot_id::{BotId, BotIdError};
use crate::domain::envelope::{self, Data, Envelope, Status, Top, text};
use crate::domain::event::{EventKind, Family};
use crate::domain::session::BotError;

/// Bot id under which account-level calendar events (which name no bot) are kept, so that an
/// authenticated delivery is never refused (Svix would retry a 4xx for days, then disable us).
pub const CALENDAR_BOT: &str = "calendar";

#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub bot_id: BotId,
    pub family: Family,
    pub kind: EventKind,
    /// The sender's own name for the event (`event` or `type`), or `unknown`.
    pub source_event: String,
    pub status_code: Option<String>,
    pub occurred_at: Option<String>,
    /// The reported error as one line (`code: message`), for display.
    pub error: Option<String>,
    /// The reported error as `{code, message}`.
    pub error_info: Option<BotError>,
    /// `status.attempt` / `status.max` (v2 `retrying`).
    pub attempt: Option<u32>,
    pub max: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body must be a JSON object")]
    NotObject,
    #[error("no bot id found: expected data.bot_id (or data.botId)")]
    NoBotId,
    #[error("bot id must be a string")]
    BotIdNotString,
    #[error("invalid bot id: {0}")]
    BadBotId(#[from] BotIdError),
}

impl Payload {
    /// Reads what the relay needs of a delivery body. Valid JSON is never refused for what lies
    /// where no field is read; only the grammar, the top level and the bot id are checked.
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        let text = std::str::from_utf8(body).map_err(|_| PayloadError::NotUtf8)?;
        match Top::read(text) {
            Ok(top) => Self::from_top(top),
            Err(e) => {
                // Valid JSON with a value serde_json cannot decode where the reader looked (a
                // lone surrogate escape in a key, `data` or the whole body out of range) is
                // read again, tolerantly, from a copy with lone surrogate escapes replaced.
                if serde_json::from_str::<IgnoredAny>(text).is_err() {
                    return Err(PayloadError::NotJson(json_reason(&e)));
                }
                let clean = envelope::replace_lone_surrogates(text);
                let top = Top::read_tolerant(&clean)
                    .map_err(|e| PayloadError::NotJson(json_reason(&e)))?;
                Self::from_top(top)
            }
        }
    }

    fn from_top(top: Top<'_>) -> Result<Self, PayloadError> {
        let Top::Object(obj) = top else {
            return Err(PayloadError::NotObject);
        };
        let data = obj.data.as_ref();
        let event_name = obj.event.and_then(text);
        let type_name = obj.type_.and_then(text);

        let (family, kind, source_event) = match (event_name, type_name) {
            (Some(name), _) => {
                let (family, kind) = classify_event(&name, &obj, data);
                (family, kind, name.into_owned())
            }
            (None, Some(name)) => (Family::Seed, seed_kind(&name), name.into_owned()),
            (None, None) => (Family::Unknown, EventKind::Unknown, "unknown".to_owned()),
        };

        let bot_id = match find_bot_id(&obj, data)? {
            Some(id) => id,
            None if source_event.starts_with("calendar.") => BotId::parse(CALENDAR_BOT)?,
            None => return Err(PayloadError::NoBotId),
        };

        let status_raw = data.and_then(|d| d.status);
        let status = status_raw.and_then(Status::read);
        let status_code = match &status {
            Some(s) => s.code.clone(),
            None => status_raw.and_then(text),
        };
        let occurred_at = match &status {
            Some(s) => s.created_at.clone(),
            None => None,
        }
        .or_else(|| data.and_then(|d| d.sent_at).and_then(text));
        let error_info = data.and_then(|d| error_parts(d, status.as_ref()));
        let count = |n: Option<u64>| n.and_then(|n| u32::try_from(n).ok());
        let (attempt, max) = match &status {
            Some(s) => (count(s.attempt), count(s.max)),
            None => (None, None),
        };

        Ok(Self {
            bot_id,
            family,
            kind,
            source_event,
            status_code: status_code.map(Cow::into_owned),
            occurred_at: occurred_at.map(Cow::into_owned),
            error: error_info.as_ref().map(BotError::to_string),
            error_info,
            attempt,
            max,
        })
    }
}

fn json_reason(e: &serde_json::Error) -> String {
    // serde_json's messages name a position and a category, never the input text.
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input".to_owned(),
        _ => e.to_string(),
    }
}

fn classify_event(name: &str, obj: &Envelope<'_>, data: Option<&Data<'_>>) -> (Family, EventKind) {
    match name {
        "complete" => (Family::V1, EventKind::MeetingCompleted),
        "failed" => (Family::V1, EventKind::MeetingFailed),
        "transcription_complete" => (Family::V1, EventKind::TranscriptionAvailable),
        "bot.completed" => (Family::V2, EventKind::MeetingCompleted),
        "bot.failed" => (Family::V2, EventKind::MeetingFailed),
        "bot.chat_message" => (Family::V2, EventKind::ChatMessage),
        "bot.status_change" => {
            // Both versions use this name; v2 bodies carry `data.event_id` or a top-level `extra`.
            let v2 = data.is_some_and(|d| d.has_event_id) || obj.has_extra;
            (
                if v2 { Family::V2 } else { Family::V1 },
                EventKind::BotStatusChange,
            )
        }
        other if other.starts_with("calendar.") => (
            if other == "calendar.sync_events" {
                Family::V1
            } else {
                Family::V2
            },
            EventKind::Unknown,
        ),
        other => match seed_kind(other) {
            EventKind::Unknown => (Family::Unknown, EventKind::Unknown),
            kind => (Family::Seed, kind),
        },
    }
}

fn seed_kind(name: &str) -> EventKind {
    match name {
        "meeting.started" => EventKind::MeetingStarted,
        "meeting.completed" => EventKind::MeetingCompleted,
        "meeting.failed" => EventKind::MeetingFailed,
        "transcription.available" => EventKind::TranscriptionAvailable,
        "transcription.updated" => EventKind::TranscriptionUpdated,
        _ => EventKind::Unknown,
    }
}

/// The first of `data.bot_id`, `data.botId`, `bot_id`, `botId` that is not null.
fn find_bot_id(obj: &Envelope<'_>, data: Option<&Data<'_>>) -> Result<Option<BotId>, PayloadError> {
    let candidates: [Option<&RawValue>; 4] = [
        data.and_then(|d| d.bot_id),
        data.and_then(|d| d.bot_id_camel),
        obj.bot_id,
        obj.bot_id_camel,
    ];
    for candidate in candidates.into_iter().flatten() {
        if envelope::is_null(candidate) {
            continue;
        }
        return match text(candidate) {
            Some(s) => Ok(Some(BotId::parse(&s)?)),
            None => Err(PayloadError::BotIdNotString),
        };
    }
    Ok(None)
}

/// The error a delivery reports, as `{code, message}`: v2 `error_code`/`error_message`, v1
/// `error`/`message`, or a status change's `status.error_type`/`status.error_code` and
/// `status.error_message`.
fn error_parts(data: &Data<'_>, status: Option<&Status<'_>>) -> Option<BotError> {
    let code = data
        .error_code
        .and_then(text)
        .or_else(|| data.error.and_then(text))
        .or_else(|| status.and_then(|s| s.error_type.clone()))
        .or_else(|| status.and_then(|s| s.error_code.clone()));
    let message = data
        .error_message
        .and_then(text)
        .or_else(|| data.message.and_then(text))
        .or_else(|| status.and_then(|s| s.error_message.clone()));
    BotError::new(code.map(Cow::into_owned), message.map(Cow::into_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(v: Value) -> Result<Payload, PayloadError> {
        Payload::parse(v.to_string().as_bytes())
    }

    #[test]
    fn the_three_families_and_unknown() {
        let seed =
            parse(json!({"type": "meeting.started", "data": {"botId": "test-123"}})).unwrap();
        assert_eq!(
            (seed.family, seed.kind, seed.bot_id.as_str()),
            (Family::Seed, EventKind::MeetingStarted, "test-123")
        );

        let v1 = parse(json!({"event": "failed", "data": {"bot_id": "b1", "error": "CannotJoinMeeting", "message": "no"}})).unwrap();
        assert_eq!((v1.family, v1.kind), (Family::V1, EventKind::MeetingFailed));
        assert_eq!(v1.error.as_deref(), Some("CannotJoinMeeting: no"));

        let v2 = parse(
            json!({"event": "bot.status_change", "data": {"bot_id": "b2", "event_id": null,
            "status": {"code": "in_waiting_room", "created_at": "2026-11-29T09:00:00Z"}}}),
        )
        .unwrap();
        assert_eq!(
            (v2.family, v2.kind, v2.status_code.as_deref()),
            (
                Family::V2,
                EventKind::BotStatusChange,
                Some("in_waiting_room")
            )
        );
        assert_eq!(v2.occurred_at.as_deref(), Some("2026-11-29T09:00:00Z"));

        let odd = parse(json!({"kind": "whatever", "bot_id": "b3"})).unwrap();
        assert_eq!(
            (odd.family, odd.kind, odd.source_event.as_str()),
            (Family::Unknown, EventKind::Unknown, "unknown")
        );
        let odd2 = parse(json!({"event": "bot.new_thing", "data": {"bot_id": "b3"}})).unwrap();
        assert_eq!(
            (odd2.kind, odd2.source_event.as_str()),
            (EventKind::Unknown, "bot.new_thing")
        );
    }

    #[test]
    fn calendar_events_are_kept_under_the_calendar_bot() {
        let p = parse(json!({"event": "calendar.sync_events", "data": {"calendar_id": "c", "affected_event_uuids": []}})).unwrap();
        assert_eq!(
            (p.bot_id.as_str(), p.kind),
            (CALENDAR_BOT, EventKind::Unknown)
        );
    }

    #[test]
    fn clear_errors() {
        assert_eq!(Payload::parse(b"\xff\xfe"), Err(PayloadError::NotUtf8));
        assert!(matches!(
            Payload::parse(b"{"),
            Err(PayloadError::NotJson(_))
        ));
        assert!(matches!(Payload::parse(b""), Err(PayloadError::NotJson(_))));
        assert_eq!(Payload::parse(b"[1]"), Err(PayloadError::NotObject));
        assert_eq!(Payload::parse(b"\"s\""), Err(PayloadError::NotObject));
        assert_eq!(
            parse(json!({"event": "complete", "data": {}})),
            Err(PayloadError::NoBotId)
        );
        assert_eq!(
            parse(json!({"event": "complete", "data": {"bot_id": 7}})),
            Err(PayloadError::BotIdNotString)
        );
        assert_eq!(
            parse(json!({"event": "complete", "data": {"bot_id": "../x"}})),
            Err(PayloadError::BadBotId(BotIdError::InvalidCharacter))
        );
        let deep = "[".repeat(100_000);
        assert!(matches!(
            Payload::parse(deep.as_bytes()),
            Err(PayloadError::NotJson(_))
        ));
    }

    /// Valid JSON is never refused for what lies where no field is read, and a field serde_json
    /// cannot decode is read as well as it can be.
    #[test]
    fn unusual_but_valid_bodies_are_read() {
        let deep = format!(
            r#"{{"event":"complete","data":{{"bot_id":"b1","x":{}1{}}}}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        let p = Payload::parse(deep.as_bytes()).unwrap();
        assert_eq!(
            (p.bot_id.as_str(), p.kind),
            ("b1", EventKind::MeetingCompleted)
        );

        let p = Payload::parse(
            br#"{"event":"complete","data":{"bot_id":"b1","n":1e400,"s":"\ud83d"}}"#,
        )
        .unwrap();
        assert_eq!(p.bot_id.as_str(), "b1");

        // A cut emoji in a field that is read: the field survives, the lone half replaced.
        let p = Payload::parse(
            br#"{"event":"failed","data":{"bot_id":"b1","error":"E","message":"bye \ud83d"}}"#,
        )
        .unwrap();
        assert_eq!(p.error.as_deref(), Some("E: bye \u{fffd}"));

        // ... and in a key the reader looks at, at the top and in `status`.
        let p = Payload::parse(
            br#"{"\udc00":1,"event":"bot.status_change","data":{"bot_id":"b2","status":{"\ud800x":0,"code":"joining_call"}}}"#,
        )
        .unwrap();
        assert_eq!(
            (p.bot_id.as_str(), p.status_code.as_deref()),
            ("b2", Some("joining_call"))
        );

        // Repeated keys: the last one counts; a `data` that is not an object is no data.
        let p = Payload::parse(
            br#"{"type":"x","type":"meeting.started","data":{"botId":"a"},"data":{"botId":"b"}}"#,
        )
        .unwrap();
        assert_eq!(
            (p.kind, p.bot_id.as_str()),
            (EventKind::MeetingStarted, "b")
        );
        assert_eq!(
            Payload::parse(br#"{"type":"meeting.started","data":[{"botId":"b"}]}"#),
            Err(PayloadError::NoBotId)
        );
        // A null id gives way to the next place an id may be.
        let p =
            Payload::parse(br#"{"event":"complete","data":{"bot_id":null,"botId":"c"}}"#).unwrap();
        assert_eq!(p.bot_id.as_str(), "c");
        // Deep nesting at the top is still a valid value, just not an object.
        let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            Payload::parse(deep_array.as_bytes()),
            Err(PayloadError::NotObject)
        );
        assert_eq!(Payload::parse(b"1e400"), Err(PayloadError::NotObject));
        // A `data` serde_json cannot decode is no data; the id at the top still counts.
        for body in [
            br#"{"type":"meeting.started","data":1e400,"bot_id":"t1"}"#.as_slice(),
            br#"{"type":"meeting.started","data":"\ud83d","bot_id":"t1"}"#.as_slice(),
        ] {
            assert_eq!(Payload::parse(body).unwrap().bot_id.as_str(), "t1");
        }
    }
}
