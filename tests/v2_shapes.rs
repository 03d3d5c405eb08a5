//! Every v2 fixture (tests/fixtures/v2-*.json: each status code, the outcomes with their error
//! codes, both callbacks, the calendar events; scripts/check-fixtures checks them against the
//! official SDK's types) delivered to the real `relay serve` as MeetingBaaS delivers it: webhooks
//! signed by the Standard Webhooks scheme with `svix-*` headers, callbacks with `x-mb-secret`.
//! Each is answered 200 with its canonical event and reads back whole from the events route;
//! account-level calendar events are kept under the reserved bot id, on both stores.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use relay_core::domain::auth::sign;
use serde_json::Value;
use support::*;

/// The bot id the contract reserves for account-level events that name no bot.
const ACCOUNT_BOT: &str = "calendar";

#[derive(Clone, Copy)]
enum Store {
    Sqlite,
    Moto,
}

static TABLES: AtomicU64 = AtomicU64::new(0);

fn start(store: Store, dir: &std::path::Path) -> Relay {
    let mut opts = RelayOptions::new(dir);
    if let Store::Moto = store {
        let endpoint = std::env::var("RELAY_TEST_DYNAMODB_ENDPOINT").expect(
            "RELAY_TEST_DYNAMODB_ENDPOINT is not set: run scripts/test (it starts moto) or set it",
        );
        let n = format!(
            "{}-{}",
            std::process::id(),
            TABLES.fetch_add(1, Ordering::Relaxed)
        );
        opts.extra_args.extend([
            "--dynamodb-endpoint".to_owned(),
            endpoint,
            "--events-table".to_owned(),
            format!("v2shapes-events-{n}"),
            "--connections-table".to_owned(),
            format!("v2shapes-conns-{n}"),
        ]);
    }
    Relay::start(opts)
}

fn v2_fixtures() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("v2-") && n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// Headers of one delivery: a callback carries the callback secret, a webhook is signed by
/// Svix over `{id}.{timestamp}.{body}` with a message id of its own.
fn headers_for(name: &str, body: &str) -> Vec<(&'static str, String)> {
    if name.starts_with("v2-callback-") {
        return vec![
            ("content-type", "application/json".into()),
            ("x-mb-secret", CALLBACK_SECRET.into()),
        ];
    }
    let id = format!("msg_{}", name.trim_end_matches(".json"));
    let ts = chrono::Utc::now().timestamp();
    vec![
        ("content-type", "application/json".into()),
        ("svix-id", id.clone()),
        ("svix-timestamp", ts.to_string()),
        (
            "svix-signature",
            sign(WEBHOOK_SECRET, &id, ts, body.as_bytes()).expect("sign"),
        ),
    ]
}

/// The canonical event the relay stores for a v2 event name (completed and failed bots become
/// `meeting.completed`/`meeting.failed`); `first_in_call` is whether this is the bot's first
/// in-call status (which is `meeting.started`).
fn canonical(source: &str, first_in_call: bool) -> &'static str {
    match source {
        "bot.status_change" if first_in_call => "meeting.started",
        "bot.status_change" => "bot.status_change",
        "bot.completed" => "meeting.completed",
        "bot.failed" => "meeting.failed",
        "bot.chat_message" => "chat.message",
        _ => "unknown",
    }
}

async fn get_json(relay: &Relay, path: &str, token: &str) -> (u16, String, Value) {
    let resp = http()
        .get(relay.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("text");
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, text, v)
}

async fn every_v2_fixture_is_stored_with_its_canonical_event(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(store, dir.path());
    let client = http();
    let all = token(&["*"], 3600);
    let names = v2_fixtures();
    // Each status code, nine failure codes, both callbacks and eight calendar events at least.
    assert!(names.len() >= 45, "v2 fixtures: {names:?}");
    let mut started = std::collections::HashSet::new();
    let mut completions: Vec<(String, String, String)> = Vec::new(); // (fixture, bot, event id)
    let mut calendar = Vec::new();
    for name in &names {
        let body = fixture(name);
        let v: Value = serde_json::from_str(&body).expect("fixture JSON");
        let source = v["event"].as_str().expect("a v2 body names its event");
        let bot = v["data"]["bot_id"]
            .as_str()
            .unwrap_or(ACCOUNT_BOT)
            .to_owned();
        let code = v["data"]["status"]["code"].as_str().unwrap_or_default();
        let in_call = matches!(code, "in_call_not_recording" | "in_call_recording");
        let want = canonical(source, in_call && started.insert(bot.clone()));

        let (status, json, text) =
            post_webhook(&client, &relay, &headers_for(name, &body), body.clone()).await;
        assert_eq!(status, 200, "{name}: {text}");
        assert_eq!(json["status"], "accepted", "{name}: {text}");
        assert_eq!(json["event"], want, "{name}: {text}");
        assert_eq!(json["bot_id"], bot.as_str(), "{name}: {text}");
        assert_eq!(json["duplicate"], false, "{name}: {text}");
        let id = json["event_id"].as_str().expect("event_id").to_owned();

        let (s, text, e) =
            get_json(&relay, &format!("/api/meeting-bot/{bot}/events/{id}"), &all).await;
        assert_eq!(s, 200, "{name}: {text}");
        assert_eq!(e["event"], want, "{name}: {text}");
        assert_eq!(e["source_event"], source, "{name}: {text}");
        assert_eq!(e["bot_id"], bot.as_str(), "{name}: {text}");
        assert_eq!(
            raw_payload(&text),
            body.trim(),
            "{name}: kept byte for byte"
        );
        if source == "bot.completed" {
            completions.push((name.clone(), bot.clone(), id.clone()));
        }
        if bot == ACCOUNT_BOT {
            calendar.push(source.to_owned());
        }
    }

    // The calendar events name no bot: every one is under the account-level id, readable as a
    // list like any bot's events.
    assert_eq!(calendar.len(), 8, "{calendar:?}");
    let (s, text, list) = get_json(
        &relay,
        &format!("/api/meeting-bot/{ACCOUNT_BOT}/events"),
        &all,
    )
    .await;
    assert_eq!(s, 200, "{text}");
    let listed: Vec<&str> = list["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array: {text}"))
        .iter()
        .filter_map(|e| e["source_event"].as_str())
        .collect();
    assert_eq!(listed, calendar, "in arrival order");

    // One outcome, two paths: the callback's completion of the bot the webhook already
    // completed is stored as a repeat of the first.
    let first = completions
        .iter()
        .find(|(n, ..)| n == "v2-bot.completed.json")
        .expect("the webhook completion");
    let (_, bot, callback_id) = completions
        .iter()
        .find(|(n, ..)| n == "v2-callback-bot.completed.json")
        .expect("the callback completion");
    assert_eq!(bot, &first.1, "the callback fixture completes the same bot");
    let (_, text, e) = get_json(
        &relay,
        &format!("/api/meeting-bot/{bot}/events/{callback_id}"),
        &all,
    )
    .await;
    assert_eq!(e["repeat_of"], first.2.as_str(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_v2_fixture_is_stored_on_sqlite() {
    every_v2_fixture_is_stored_with_its_canonical_event(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_v2_fixture_is_stored_on_dynamodb() {
    every_v2_fixture_is_stored_with_its_canonical_event(Store::Moto).await;
}
