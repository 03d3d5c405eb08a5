//! Parsing a delivery body into what the relay needs to know about it. Three families arrive
//! (the seed/test shape, MeetingBaaS v1 and v2); anything else that is an authenticated JSON
//! object with a bot id is kept as `unknown` rather than dropped.

use crate::domain::body::{Body, Json};
use crate::domain::bot_id::{BotId, BotIdError};
use crate::domain::event::{EventKind, Family};

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
    pub error: Option<String>,
}

/// A payload and the parsed body it came from (for the body's idempotency key).
pub struct Parsed<'a> {
    pub payload: Payload,
    pub body: Body<'a>,
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
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        Self::parse_body(body, false).map(|p| p.payload)
    }

    /// Parses `body`; with `canonical`, its canonical JSON is written in the same pass (for
    /// the idempotency key of a delivery that names no id).
    pub fn parse_body(body: &[u8], canonical: bool) -> Result<Parsed<'_>, PayloadError> {
        let text = std::str::from_utf8(body).map_err(|_| PayloadError::NotUtf8)?;
        // Nesting beyond 128 levels is refused, so hostile depth costs nothing.
        let parsed =
            Body::parse(text, canonical).map_err(|e| PayloadError::NotJson(json_reason(&e)))?;
        Ok(Parsed {
            payload: Self::from_body(parsed.root())?,
            body: parsed,
        })
    }

    fn from_body(obj: &Json) -> Result<Self, PayloadError> {
        if !obj.is_object() {
            return Err(PayloadError::NotObject);
        }
        let data = obj.get("data").filter(|d| d.is_object());
        let event_name = str_at(obj, "event");
        let type_name = str_at(obj, "type");

        let (family, kind, source_event) = match (event_name, type_name) {
            (Some(name), _) => {
                let (family, kind) = classify_event(name, obj, data);
                (family, kind, name.to_owned())
            }
            (None, Some(name)) => (Family::Seed, seed_kind(name), name.to_owned()),
            (None, None) => (Family::Unknown, EventKind::Unknown, "unknown".to_owned()),
        };

        let bot_id = match find_bot_id(obj, data)? {
            Some(id) => id,
            None if source_event.starts_with("calendar.") => BotId::parse(CALENDAR_BOT)?,
            None => return Err(PayloadError::NoBotId),
        };

        let status = data.and_then(|d| d.get("status"));
        let status_code = match status {
            Some(s @ Json::Object(_)) => str_at(s, "code").map(str::to_owned),
            Some(Json::String(code)) => Some(code.to_string()),
            _ => None,
        };
        let occurred_at = status
            .filter(|s| s.is_object())
            .and_then(|s| str_at(s, "created_at"))
            .or_else(|| data.and_then(|d| str_at(d, "sent_at")))
            .map(str::to_owned);
        let error = data.and_then(error_of);

        Ok(Self {
            bot_id,
            family,
            kind,
            source_event,
            status_code,
            occurred_at,
            error,
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

fn str_at<'a>(obj: &'a Json, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Json::as_str)
}

fn classify_event(name: &str, obj: &Json, data: Option<&Json>) -> (Family, EventKind) {
    match name {
        "complete" => (Family::V1, EventKind::MeetingCompleted),
        "failed" => (Family::V1, EventKind::MeetingFailed),
        "transcription_complete" => (Family::V1, EventKind::TranscriptionAvailable),
        "bot.completed" => (Family::V2, EventKind::MeetingCompleted),
        "bot.failed" => (Family::V2, EventKind::MeetingFailed),
        "bot.chat_message" => (Family::V2, EventKind::ChatMessage),
        "bot.status_change" => {
            // Both versions use this name; v2 bodies carry `data.event_id` or a top-level `extra`.
            let v2 = data.is_some_and(|d| d.contains_key("event_id")) || obj.contains_key("extra");
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

fn find_bot_id(obj: &Json, data: Option<&Json>) -> Result<Option<BotId>, PayloadError> {
    let candidates = data
        .into_iter()
        .flat_map(|d| [d.get("bot_id"), d.get("botId")])
        .chain([obj.get("bot_id"), obj.get("botId")]);
    for candidate in candidates.flatten() {
        match candidate {
            Json::Null => continue,
            Json::String(s) => return Ok(Some(BotId::parse(s)?)),
            _ => return Err(PayloadError::BotIdNotString),
        }
    }
    Ok(None)
}

fn error_of(data: &Json) -> Option<String> {
    let status = data.get("status").filter(|s| s.is_object());
    let code = str_at(data, "error_code")
        .or_else(|| str_at(data, "error"))
        .or_else(|| status.and_then(|s| str_at(s, "error_type")));
    let message = str_at(data, "error_message")
        .or_else(|| str_at(data, "message"))
        .or_else(|| status.and_then(|s| str_at(s, "error_message")));
    match (code, message) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    }
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
}
