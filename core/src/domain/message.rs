//! Messages to browsers (the README's "Live updates"). Every message is one JSON object with a
//! `type`, and none exceeds API Gateway's 128 KB frame: bulky fields give way to `"truncated": true`, and
//! the client fetches the whole event from the REST route.

use serde_json::{Map, Value, json};

use crate::domain::event::{EventKind, StoredEvent};
use crate::domain::session::Session;

/// The AsyncAPI 3 description of these messages and of the client's (`core/asyncapi.json`,
/// served by `relay serve` at `GET /asyncapi.json`). `tests/asyncapi-check/asyncapi.rs` validates what this
/// module produces against it; `tests/web/asyncapi.test.mjs` holds the browser client's types to it.
pub const ASYNCAPI_JSON: &str = include_str!("../../asyncapi.json");

/// API Gateway's WebSocket frame limit.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// Above this, bulky fields are left out (room for the envelope around them).
pub const TRUNCATE_ABOVE_BYTES: usize = 120 * 1024;

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn connected(bot_id: &str) -> String {
    json!({"type": "connected", "bot_id": bot_id}).to_string()
}

pub fn heartbeat(now: chrono::DateTime<chrono::Utc>) -> String {
    json!({"type": "heartbeat", "timestamp": rfc3339(now)}).to_string()
}

pub fn error(code: &str, message: &str) -> String {
    json!({"type": "error", "code": code, "message": message}).to_string()
}

/// [`error`] naming the bot whose subscribe failed after its `connected` (`unavailable`): a
/// client watching several knows which to ask again. Refusals keep the plain shape.
pub fn bot_error(code: &str, message: &str, bot_id: &str) -> String {
    json!({"type": "error", "code": code, "message": message, "bot_id": bot_id}).to_string()
}

/// The snapshot sent after a subscribe; `None`: the bot has no session yet.
pub fn snapshot(bot_id: &str, session: Option<&Session>) -> String {
    snapshot_value(bot_id, session).to_string()
}

/// [`snapshot`] as a JSON value, for answers that hold several.
pub fn snapshot_value(bot_id: &str, session: Option<&Session>) -> Value {
    match session {
        Some(s) => json!({
            "type": "status_update",
            "bot_id": bot_id,
            "status": s.status,
            "last_updated": rfc3339(s.last_updated),
            "session": {
                "status": s.status,
                "status_code": s.status_code,
                "last_event": s.last_event,
                "last_event_id": s.last_event_id,
                "meeting_started": s.meeting_started,
                "error": s.error,
                "attempt": s.attempt,
                "max": s.max,
                "created_at": rfc3339(s.created_at),
                "last_updated": rfc3339(s.last_updated),
            },
            "seq": s.seq,
        }),
        None => json!({
            "type": "status_update",
            "bot_id": bot_id,
            "status": null,
            "last_updated": null,
            "session": null,
            "seq": 0,
        }),
    }
}

/// Where a completion payload keeps its transcript inline: v1 `data.transcript`, or a
/// `data.transcription` that is the transcript itself. A v2 `bot.completed`'s `transcription` is
/// a signed URL of the transcript file, not a transcript: it stays in `data` as it came.
fn transcript_of(kind: EventKind, data: &Map<String, Value>) -> Option<Value> {
    if kind != EventKind::MeetingCompleted && kind != EventKind::TranscriptionAvailable {
        return None;
    }
    data.get("transcript")
        .or_else(|| data.get("transcription"))
        .filter(|t| t.is_array() || t.is_object())
        .cloned()
}

/// Fields that can be megabytes; dropped first when a message would be too big.
const BULKY: [&str; 6] = [
    "transcript",
    "transcription",
    "raw_transcription",
    "diarization",
    "participants",
    "speakers",
];

/// One `status_update` per stored event. `body` is `None` when the store could not inline it
/// (a body that large never fits a frame anyway).
pub fn status_update(event: &StoredEvent, body: Option<&str>) -> String {
    let parsed: Option<Value> = body.and_then(|b| serde_json::from_str(b).ok());
    let mut data = match parsed {
        Some(Value::Object(mut obj)) => match obj.remove("data") {
            Some(Value::Object(d)) => d,
            Some(other) => Map::from_iter([("data".to_owned(), other)]),
            None => obj,
        },
        _ => Map::new(),
    };
    let transcript = transcript_of(event.kind, &data);
    let mut msg = Map::new();
    msg.insert("type".into(), json!("status_update"));
    msg.insert("bot_id".into(), json!(event.bot_id));
    msg.insert("status".into(), json!(event.status));
    msg.insert("timestamp".into(), json!(rfc3339(event.received_at)));
    msg.insert("event".into(), json!(event.kind));
    msg.insert("source_event".into(), json!(event.source_event));
    msg.insert("event_id".into(), json!(event.event_id));
    msg.insert("seq".into(), json!(event.seq));
    if let Some(code) = &event.status_code {
        msg.insert("status_code".into(), json!(code));
    }
    // An outcome the session already had, by another path: changed nothing, not news.
    if let Some(first) = &event.repeat_of {
        msg.insert("repeat".into(), json!(true));
        msg.insert("repeat_of".into(), json!(first));
    }
    let body_missing = body.is_none();
    // The transcript travels once, at the top level, not twice.
    if transcript.is_some() {
        data.remove("transcript");
        if data.get("transcription").is_some_and(|t| !t.is_string()) {
            data.remove("transcription");
        }
    }
    msg.insert("data".into(), Value::Object(data));
    if let Some(t) = transcript {
        msg.insert("transcript".into(), t);
    }
    if body_missing {
        msg.insert("truncated".into(), json!(true));
    }
    let text = Value::Object(msg.clone()).to_string();
    if text.len() <= TRUNCATE_ABOVE_BYTES {
        return text;
    }
    // Too big: drop the transcript, then the bulky data fields, then all of data.
    msg.remove("transcript");
    msg.insert("truncated".into(), json!(true));
    if let Some(Value::Object(d)) = msg.get_mut("data") {
        for field in BULKY {
            d.remove(field);
        }
    }
    let text = Value::Object(msg.clone()).to_string();
    if text.len() <= TRUNCATE_ABOVE_BYTES {
        return text;
    }
    msg.insert("data".into(), json!({}));
    Value::Object(msg).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bot_id::BotId;
    use crate::domain::event::{EventId, Family};
    use crate::domain::session::Status;

    fn stored(kind: EventKind, body: &str) -> StoredEvent {
        let bot = BotId::parse("b-1").unwrap();
        StoredEvent {
            event_id: EventId::derive(&bot, "k"),
            bot_id: bot,
            seq: 7,
            idempotency_key: "k".into(),
            kind,
            source_event: "complete".into(),
            family: Family::V1,
            status_code: None,
            occurred_at: None,
            received_at: chrono::Utc::now(),
            status: Status::Completed,
            expires_at: 0,
            repeat_of: None,
            body: body.into(),
        }
    }

    #[test]
    fn a_repeat_says_so() {
        let mut e = stored(
            EventKind::MeetingCompleted,
            r#"{"event":"complete","data":{}}"#,
        );
        let plain: serde_json::Value =
            serde_json::from_str(&status_update(&e, Some(&e.body))).unwrap();
        assert!(plain.get("repeat").is_none());
        let first = EventId::derive(&e.bot_id, "first");
        e.repeat_of = Some(first.clone());
        let msg: serde_json::Value =
            serde_json::from_str(&status_update(&e, Some(&e.body))).unwrap();
        assert_eq!(
            (&msg["repeat"], &msg["repeat_of"]),
            (&json!(true), &json!(first))
        );
    }

    #[test]
    fn a_v2_transcription_url_stays_in_data_and_is_no_transcript() {
        let body = r#"{"event":"bot.completed","data":{"bot_id":"b","transcription":"https://files.example/t.json?sig=1"}}"#;
        let e = stored(EventKind::MeetingCompleted, body);
        let m: Value = serde_json::from_str(&status_update(&e, Some(body))).expect("json");
        assert!(m["transcript"].is_null(), "{m}");
        assert_eq!(
            m["data"]["transcription"],
            "https://files.example/t.json?sig=1"
        );
    }

    #[test]
    fn small_completion_carries_its_transcript() {
        let body = crate::testing::testdata::v1_complete("b-1", 2, 1);
        let e = stored(EventKind::MeetingCompleted, &body);
        let m: Value = serde_json::from_str(&status_update(&e, Some(&body))).unwrap();
        assert_eq!(m["type"], "status_update");
        assert_eq!(
            (m["seq"].as_u64(), m["event"].as_str(), m["status"].as_str()),
            (Some(7), Some("meeting.completed"), Some("completed"))
        );
        assert!(m["transcript"].as_array().is_some_and(|t| !t.is_empty()));
        assert!(m["data"]["transcript"].is_null(), "not sent twice");
        assert_eq!(
            m["data"]["mp4"].as_str().map(|s| s.starts_with("https://")),
            Some(true)
        );
        assert!(m.get("truncated").is_none());
    }

    #[test]
    fn big_payloads_are_truncated_under_the_frame_limit() {
        for body in [
            crate::testing::testdata::v1_complete("b-1", 240, 1),
            crate::testing::testdata::v2_completed("b-1", 120, 2),
        ] {
            let e = stored(EventKind::MeetingCompleted, &body);
            let text = status_update(&e, Some(&body));
            assert!(text.len() <= TRUNCATE_ABOVE_BYTES, "{} bytes", text.len());
            let m: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(m["truncated"], true);
            assert!(m["transcript"].is_null());
            assert_eq!(m["event_id"], json!(e.event_id));
        }
        // Not inlined by the store: truncated, still a valid message.
        let e = stored(EventKind::MeetingCompleted, "");
        let m: Value = serde_json::from_str(&status_update(&e, None)).unwrap();
        assert_eq!(
            (m["truncated"].as_bool(), m["seq"].as_u64()),
            (Some(true), Some(7))
        );
    }

    #[test]
    fn snapshot_and_small_messages() {
        let s: Value = serde_json::from_str(&snapshot("b", None)).unwrap();
        assert_eq!(
            (s["type"].as_str(), s["seq"].as_u64()),
            (Some("status_update"), Some(0))
        );
        let c: Value = serde_json::from_str(&connected("b")).unwrap();
        assert_eq!(c, json!({"type": "connected", "bot_id": "b"}));
        let e: Value = serde_json::from_str(&error("forbidden", "no")).unwrap();
        assert_eq!(e["type"], "error");
    }
}
