//! The AsyncAPI document (core/asyncapi.json) against the messages the relay really produces:
//! every server message of `domain::message` made from real webhook bodies through the real
//! intake path (authentication, parsing, idempotency key, session rules), and the client
//! messages `ClientMessage::parse` accepts, each validated with the schema the document gives it.

use http::{HeaderMap, HeaderValue};
use jsonschema::{Draft, Validator};
use relay_core::domain::auth::{AuthSettings, Authenticator};
use relay_core::domain::event::{EventKind, StoredEvent};
use relay_core::domain::message;
use relay_core::domain::session::{Session, Status};
use relay_core::handlers::subscription::ClientMessage;
use relay_core::handlers::webhook::Intake;
use relay_core::testing::testdata;
use serde_json::{Value, json};

const KEY: &str = "asyncapi-test-key";

fn document() -> Value {
    serde_json::from_str(message::ASYNCAPI_JSON).expect("core/asyncapi.json is JSON")
}

/// The validator of one message of the document (by its name under the channel's messages),
/// its `$ref`s resolved inside the document.
fn validator(doc: &Value, message: &str) -> Validator {
    let payload = &doc["channels"]["relay"]["messages"][message]["payload"];
    assert!(payload.is_object(), "no message {message} in the document");
    let schema = json!({"allOf": [payload], "components": doc["components"]});
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema of {message}: {e}"))
}

fn assert_valid(doc: &Value, message: &str, text: &str) {
    let value: Value = serde_json::from_str(text).expect("a message is JSON");
    if let Err(e) = validator(doc, message).validate(&value) {
        panic!(
            "{message} does not match core/asyncapi.json: {e} at {}\n{text:.2000}",
            e.instance_path()
        );
    }
    // And no other server message's schema: the client tells them apart by shape.
    for other in ["connected", "snapshot", "event", "heartbeat", "error"] {
        if other != message {
            assert!(
                !validator(doc, other).is_valid(&value),
                "{message} also matches {other}: {text:.500}"
            );
        }
    }
}

/// Runs bodies through the intake and the session rules as a store does, returning each stored
/// event (and the session at the end).
struct Pipeline {
    intake: Intake,
    session: Option<Session>,
}

impl Pipeline {
    fn new() -> Self {
        let auth = Authenticator::new(&AuthSettings {
            api_keys: AuthSettings::key_list(KEY),
            webhook_secret: None,
            callback_secret: None,
        })
        .unwrap();
        Self {
            intake: Intake::new(auth, 6 * 1024 * 1024),
            session: None,
        }
    }

    fn deliver(&mut self, body: &str, idempotency_key: Option<&str>) -> StoredEvent {
        let mut headers = HeaderMap::new();
        headers.insert("x-meeting-baas-api-key", HeaderValue::from_static(KEY));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        if let Some(k) = idempotency_key {
            headers.insert("idempotency-key", HeaderValue::from_str(k).unwrap());
        }
        let now = chrono::Utc::now();
        let event = self
            .intake
            .prepare(&headers, body.as_bytes(), now)
            .expect("accepted");
        let session = self
            .session
            .get_or_insert_with(|| Session::new(event.bot_id.clone(), now));
        let applied = session.apply(&event);
        StoredEvent::from_new(
            event,
            session.seq,
            applied.kind,
            session.status,
            0,
            applied.repeat_of,
        )
    }
}

const BOT: &str = "2d3f8a8e-6a4b-4c1e-9f51-0b1c2d3e4f50";

#[test]
fn server_messages_match_their_schemas() {
    let doc = document();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let mut p = Pipeline::new();
    let mut events = vec![
        p.deliver(
            &json!({"type": "meeting.started", "data": {"botId": BOT}}).to_string(),
            None,
        ),
        p.deliver(
            &testdata::v1_status_change(BOT, "joining_call", "2025-01-01T10:00:00Z"),
            None,
        ),
        p.deliver(
            &testdata::v1_status_change(BOT, "bot_rejected", "2025-01-01T10:00:05Z"),
            None,
        ),
        p.deliver(
            &json!({"event": "bot.status_change", "data": {"bot_id": BOT, "status": {
                "code": "retrying", "created_at": "2025-01-01T10:00:10Z", "attempt": 2, "max": 3}}})
            .to_string(),
            None,
        ),
        p.deliver(
            &testdata::v1_status_change(BOT, "in_call_recording", "2025-01-01T10:01:00Z"),
            None,
        ),
        p.deliver(
            &json!({"event": "bot.chat_message", "data": {"bot_id": BOT, "message": "hi"}})
                .to_string(),
            None,
        ),
        p.deliver(
            &json!({"event": "something.new", "data": {"bot_id": BOT}, "n": [1, 2]}).to_string(),
            None,
        ),
        // A completion that fits (with its transcript), the same outcome again by another path
        // (a repeat), and one too big for a frame (truncated).
        p.deliver(&testdata::v1_complete(BOT, 2, 1), Some("first")),
        p.deliver(&testdata::v1_complete(BOT, 2, 1), Some("second")),
        p.deliver(&testdata::v2_completed(BOT, 120, 2), None),
    ];
    let session = p.session.clone().unwrap();
    assert_eq!(session.status, Status::Completed);
    assert!(session.attempt.is_some(), "a retrying was applied");
    let mut seen = (false, false, false, false);
    for e in &events {
        let text = message::status_update(e, Some(&e.body));
        let m: Value = serde_json::from_str(&text).unwrap();
        seen.0 |= m.get("transcript").is_some();
        seen.1 |= m.get("repeat").is_some();
        seen.2 |= m.get("truncated").is_some();
        seen.3 |= m.get("status_code").is_some();
        assert_valid(&doc, "event", &text);
    }
    assert_eq!(
        seen,
        (true, true, true, true),
        "transcript, repeat, truncated, status_code"
    );
    // A body the store could not inline.
    let last = events.pop().unwrap();
    assert_valid(&doc, "event", &message::status_update(&last, None));

    assert_valid(&doc, "snapshot", &message::snapshot(BOT, Some(&session)));
    assert_valid(&doc, "snapshot", &message::snapshot(BOT, None));
    assert_valid(&doc, "connected", &message::connected(BOT));
    assert_valid(&doc, "heartbeat", &message::heartbeat(chrono::Utc::now()));
    let codes = doc["components"]["schemas"]["ErrorMessage"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    for code in &codes {
        assert_valid(
            &doc,
            "error",
            &message::error(code.as_str().unwrap(), "why"),
        );
        assert_valid(
            &doc,
            "error",
            &message::bot_error(code.as_str().unwrap(), "why", BOT),
        );
    }
}

/// The codes the relay sends in `error` messages are the document's.
#[test]
fn error_codes_in_the_code_are_documented() {
    let doc = document();
    let documented: Vec<&str> = doc["components"]["schemas"]["ErrorMessage"]["properties"]["code"]
        ["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let sources = [
        include_str!("../../core/src/handlers/subscription.rs"),
        include_str!("../../core/src/handlers/fanout.rs"),
    ];
    let mut found = Vec::new();
    for src in sources {
        // `Refusal::new("code", …)`, `refuse(id, "code", …)`, `message::error("code", …)`,
        // `message::bot_error("code", …)`.
        for marker in [
            "Refusal::new(",
            "message::error(",
            "message::bot_error(",
            ".refuse(",
        ] {
            for (i, _) in src.match_indices(marker) {
                let rest = &src[i + marker.len()..];
                let Some(q) = rest.find('"') else { continue };
                // The first string literal of the call (after `id, ` for refuse).
                if rest[..q].contains(')') {
                    continue;
                }
                let code: String = rest[q + 1..].chars().take_while(|c| *c != '"').collect();
                found.push(code);
            }
        }
    }
    assert!(found.len() >= 5, "found codes: {found:?}");
    for code in &found {
        assert!(
            documented.contains(&code.as_str()),
            "error code {code} is sent but not in core/asyncapi.json"
        );
    }
}

#[test]
fn client_messages_match_their_schemas() {
    let doc = document();
    for (name, text) in [
        ("subscribe", json!({"action": "subscribe", "bot_id": BOT})),
        (
            "subscribe",
            json!({"action": "subscribe", "bot_id": BOT, "since": 12}),
        ),
        (
            "subscribe",
            json!({"action": "subscribe", "bot_id": BOT, "since": null}),
        ),
        (
            "unsubscribe",
            json!({"action": "unsubscribe", "bot_id": BOT}),
        ),
        ("ping", json!({"action": "ping"})),
    ] {
        assert!(
            ClientMessage::parse(&text.to_string()).is_ok(),
            "the relay refuses {text}"
        );
        assert!(
            validator(&doc, name).is_valid(&text),
            "{text} does not match {name}"
        );
    }
    // What the relay refuses, the document does not allow either.
    for (name, text) in [
        ("subscribe", json!({"action": "subscribe"})),
        (
            "subscribe",
            json!({"action": "subscribe", "bot_id": BOT, "since": -1}),
        ),
        (
            "subscribe",
            json!({"action": "subscribe", "bot_id": BOT, "since": "3"}),
        ),
        ("subscribe", json!({"action": "subscribe", "bot_id": "a/b"})),
        (
            "unsubscribe",
            json!({"action": "unsubscribe", "bot_id": ""}),
        ),
    ] {
        assert!(ClientMessage::parse(&text.to_string()).is_err(), "{text}");
        assert!(
            !validator(&doc, name).is_valid(&text),
            "{text} matches {name}"
        );
    }
}

/// The enums of the document are the code's.
#[test]
fn enums_are_the_codes() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let list = |name: &str| -> Vec<String> {
        schemas[name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let statuses: Vec<String> = Status::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(list("SessionStatus"), statuses);
    let kinds = list("EventType");
    for k in EventKind::ALL {
        assert!(
            kinds.contains(&k.as_str().to_owned()),
            "{k} not in EventType"
        );
    }
}
