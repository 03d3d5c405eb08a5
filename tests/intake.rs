//! Webhook intake through the real `relay serve` over real HTTP: every family's fixture, the
//! bad-input table, secrets never leaking, development mode and a clean shutdown.

mod support;

use relay_core::domain::auth::sign;
use relay_core::ports::store::EventStore;
use relay_core::{BotId, Status};
use relay_dynamodb::DynamoStore;
use relay_sqlite::events::SqliteStore;
use serde_json::{Value, json};
use support::*;

/// The relay's SQLite store, opened beside the running server (WAL allows concurrent readers).
/// The relay's event store, opened beside it: the embedded one, or (`RELAY_TEST_HOST=lambda`)
/// the functions' table on moto.
enum Stores {
    Sqlite(SqliteStore),
    Dynamo(DynamoStore, aws_sdk_dynamodb::Client, String),
}

async fn store(relay: &Relay) -> Stores {
    match &relay.dynamodb {
        None => Stores::Sqlite(
            SqliteStore::open(&relay.data_dir.join("events.sqlite3"), Default::default())
                .expect("open store"),
        ),
        Some(tables) => {
            let client = relay_dynamodb::client_for(Some(&tables.endpoint)).await;
            Stores::Dynamo(
                DynamoStore::new(client.clone(), tables.events.clone(), Default::default()),
                client,
                tables.events.clone(),
            )
        }
    }
}

impl Stores {
    fn events(&self) -> &dyn EventStore {
        match self {
            Stores::Sqlite(s) => s,
            Stores::Dynamo(s, _, _) => s,
        }
    }
}

/// Every event stored, of every bot.
async fn total_events(store: &Stores) -> usize {
    match store {
        Stores::Sqlite(s) => s
            .events_since_position(0, 100_000)
            .await
            .expect("feed")
            .len(),
        Stores::Dynamo(_, client, table) => {
            let mut n = 0;
            let mut start = None;
            loop {
                let out = client
                    .scan()
                    .table_name(table)
                    .filter_expression("kind = :e")
                    .expression_attribute_values(
                        ":e",
                        aws_sdk_dynamodb::types::AttributeValue::S("event".into()),
                    )
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .expect("scan");
                n += out.items().len();
                start = out.last_evaluated_key().cloned();
                if start.is_none() {
                    return n;
                }
            }
        }
    }
}

fn signed(body: &str, id: &str, ts: i64) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("svix-id", id.into()),
        ("svix-timestamp", ts.to_string()),
        (
            "svix-signature",
            sign(WEBHOOK_SECRET, id, ts, body.as_bytes()).expect("sign"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fixture_is_accepted_with_its_canonical_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(RelayOptions::new(dir.path()));
    let client = http();
    // (fixture, canonical event expected). Sent in this order to one bot per family.
    let table = [
        ("seed-meeting.started.json", "meeting.started"),
        ("v1-status-joining_call.json", "bot.status_change"),
        ("v1-status-in_waiting_room.json", "bot.status_change"),
        ("v1-status-in_call_not_recording.json", "meeting.started"),
        ("v1-status-in_call_recording.json", "bot.status_change"),
        ("v1-status-recording_paused.json", "bot.status_change"),
        ("v1-status-recording_resumed.json", "bot.status_change"),
        ("v1-status-call_ended.json", "bot.status_change"),
        ("v1-status-meeting_error.json", "bot.status_change"),
        ("v1-transcription_complete.json", "transcription.available"),
        ("v1-complete.json", "meeting.completed"),
        ("v1-failed.json", "meeting.failed"),
        ("v1-calendar-sync_events.json", "unknown"),
        ("v2-bot.status_change.json", "meeting.started"),
        ("v2-bot.chat_message.json", "chat.message"),
        ("v2-bot.failed.json", "meeting.failed"),
        ("v2-bot.completed.json", "meeting.completed"),
    ];
    for (name, want) in table {
        let body = fixture(name);
        let (status, json, text) =
            post_webhook(&client, &relay, &json_key_headers(), body.clone()).await;
        assert_eq!(status, 200, "{name}: {text}");
        assert_eq!(json["event"], want, "{name}");
        assert_eq!(json["duplicate"], false, "{name}");
        let v: Value = serde_json::from_str(&body).expect("fixture json");
        let bot = v["data"]["bot_id"]
            .as_str()
            .or(v["data"]["botId"].as_str())
            .unwrap_or("calendar");
        assert_eq!(json["bot_id"], bot, "{name}");
    }
    // The v2 callback form, authenticated with x-mb-secret.
    let headers = vec![
        ("content-type", "application/json".to_owned()),
        ("x-mb-secret", CALLBACK_SECRET.to_owned()),
    ];
    let (status, json, _) = post_webhook(
        &client,
        &relay,
        &headers,
        fixture("v2-callback-bot.completed.json"),
    )
    .await;
    assert_eq!(
        (status, json["event"].as_str()),
        (200, Some("meeting.completed"))
    );

    let store = store(&relay).await;
    let v1 = BotId::parse("8f0f6c1e-2a7d-4d1b-9c55-0f6f7e3b1a21").expect("bot");
    let s = store
        .events()
        .session(&v1)
        .await
        .expect("session")
        .expect("exists");
    // meeting_error ended the call with a provisional error; the complete that follows is
    // the outcome (completed), and the failure outcome after it is recorded as the error.
    assert_eq!(s.status, Status::Completed);
    assert_eq!(
        s.error.as_ref().map(ToString::to_string).as_deref(),
        Some("CannotJoinMeeting: Meeting does not exist or has ended")
    );
    assert_eq!(s.seq, 11);
    let events = store
        .events()
        .events_after(&v1, 0, 100)
        .await
        .expect("list")
        .events;
    let bodies: Vec<&str> = events.iter().map(|e| e.body.as_str()).collect();
    assert_eq!(
        bodies[9],
        fixture("v1-complete.json"),
        "original body kept byte for byte"
    );
    let v2 = BotId::parse("0b5e1e7c-8e0f-4c3a-9f57-2f1d1a9b7c11").expect("bot");
    // bot.failed, then bot.completed (and its callback): completed beats failed.
    assert_eq!(
        store
            .events()
            .session(&v2)
            .await
            .expect("session")
            .map(|s| s.status),
        Some(Status::Completed)
    );
}

struct Row {
    name: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    /// Substring of the `error` (or the `event` for a 200).
    says: &'static str,
    stores: bool,
}

fn row(
    name: &'static str,
    headers: Vec<(&'static str, String)>,
    body: impl Into<Vec<u8>>,
    status: u16,
    says: &'static str,
    stores: bool,
) -> Row {
    Row {
        name,
        headers,
        body: body.into(),
        status,
        says,
        stores,
    }
}

fn key(k: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("x-meeting-baas-api-key", k.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(RelayOptions::new(dir.path()));
    let client = http();
    let store = store(&relay).await;
    let now = chrono::Utc::now().timestamp();
    let good = r#"{"event":"bot.status_change","data":{"bot_id":"bad-input-bot","status":{"code":"joining_call","created_at":"2026-11-29T09:00:00Z"}}}"#;
    let v2body =
        r#"{"event":"bot.failed","data":{"bot_id":"bad-input-v2","error_code":"BOT_CRASHED"}}"#;
    let mut partly = signed(v2body, "msg_partly", now);
    partly.retain(|(k, _)| *k != "svix-signature");
    let mut wrong_sig = signed(v2body, "msg_wrong", now);
    wrong_sig[3].1 = sign(WEBHOOK_SECRET, "msg_other", now, v2body.as_bytes()).expect("sign");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let seven_mb = format!(
        r#"{{"event":"complete","data":{{"bot_id":"big","pad":"{}"}}}}"#,
        "x".repeat(7 * 1024 * 1024)
    );
    let mut text_plain = key(API_KEY);
    text_plain[0].1 = "text/plain".into();

    let rows = vec![
        row(
            "no key",
            vec![("content-type", "application/json".into())],
            good,
            401,
            "unauthorized",
            false,
        ),
        row(
            "wrong key",
            key("test-api-key-4f1c9b"),
            good,
            401,
            "unauthorized",
            false,
        ),
        row(
            "key of another length",
            key("short"),
            good,
            401,
            "unauthorized",
            false,
        ),
        row(
            "key prefix",
            key(&API_KEY[..10]),
            good,
            401,
            "unauthorized",
            false,
        ),
        row("empty body", key(API_KEY), "", 400, "not valid JSON", false),
        row(
            "not JSON",
            key(API_KEY),
            "event=complete",
            400,
            "not valid JSON",
            false,
        ),
        row(
            "JSON array",
            key(API_KEY),
            r#"[{"data":{"bot_id":"x"}}]"#,
            400,
            "must be a JSON object",
            false,
        ),
        row(
            "JSON string",
            key(API_KEY),
            r#""hello""#,
            400,
            "must be a JSON object",
            false,
        ),
        // Valid JSON (nesting is no limit of the grammar), but not an object.
        row(
            "nesting 100,000 deep",
            key(API_KEY),
            deep,
            400,
            "must be a JSON object",
            false,
        ),
        row(
            "no bot id",
            key(API_KEY),
            r#"{"event":"complete","data":{}}"#,
            400,
            "no bot id",
            false,
        ),
        row(
            "bot id of the wrong type",
            key(API_KEY),
            r#"{"event":"complete","data":{"bot_id":42}}"#,
            400,
            "must be a string",
            false,
        ),
        row(
            "bot id too long",
            key(API_KEY),
            format!(
                r#"{{"event":"complete","data":{{"bot_id":"{}"}}}}"#,
                "a".repeat(129)
            ),
            400,
            "longer than 128",
            false,
        ),
        row(
            "bot id with /",
            key(API_KEY),
            r#"{"event":"complete","data":{"bot_id":"a/b"}}"#,
            400,
            "invalid bot id",
            false,
        ),
        row(
            "bot id ..",
            key(API_KEY),
            r#"{"event":"complete","data":{"bot_id":".."}}"#,
            400,
            "invalid bot id",
            false,
        ),
        row(
            "bot id ../x",
            key(API_KEY),
            r#"{"event":"complete","data":{"bot_id":"../x"}}"#,
            400,
            "invalid bot id",
            false,
        ),
        row(
            "7 MB body",
            key(API_KEY),
            seven_mb,
            413,
            "payload too large",
            false,
        ),
        row(
            "text/plain",
            text_plain,
            good,
            415,
            "application/json",
            false,
        ),
        row(
            "invalid UTF-8",
            key(API_KEY),
            b"{\"event\":\"complete\",\"data\":{\"bot_id\":\"\xff\xfe\"}}".to_vec(),
            400,
            "UTF-8",
            false,
        ),
        row(
            "v2 signature wrong",
            wrong_sig,
            v2body,
            401,
            "unauthorized",
            false,
        ),
        row(
            "v2 timestamp 10 minutes old",
            signed(v2body, "msg_old", now - 600),
            v2body,
            401,
            "unauthorized",
            false,
        ),
        row(
            "v2 headers partly missing",
            partly,
            v2body,
            401,
            "unauthorized",
            false,
        ),
        row(
            "unknown shape with a bot id",
            key(API_KEY),
            r#"{"kind":"mystery","bot_id":"bad-input-unknown"}"#,
            200,
            "unknown",
            true,
        ),
        row(
            "first delivery",
            key(API_KEY),
            good,
            200,
            "bot.status_change",
            true,
        ),
        row(
            "duplicate",
            key(API_KEY_2),
            good,
            200,
            "bot.status_change",
            false,
        ),
        row(
            "v2 signed",
            signed(v2body, "msg_ok", now),
            v2body,
            200,
            "meeting.failed",
            true,
        ),
        row(
            "v2 redelivery, same svix-id",
            signed(v2body, "msg_ok", now),
            v2body,
            200,
            "meeting.failed",
            false,
        ),
    ];

    for r in rows {
        let before = total_events(&store).await;
        let (status, json, text) = post_webhook(&client, &relay, &r.headers, r.body.clone()).await;
        let after = total_events(&store).await;
        assert_eq!(status, r.status, "{}: {text}", r.name);
        let said = if status == 200 {
            json["event"].as_str()
        } else if lambda_host() && r.name == "7 MB body" {
            // Over Lambda's 6 MB invocation payload: API Gateway answers, no function runs.
            json["message"].as_str().map(|m| {
                if m == "Request Entity Too Large" {
                    r.says
                } else {
                    m
                }
            })
        } else {
            json["error"].as_str()
        };
        assert!(
            said.is_some_and(|s| s.contains(r.says)),
            "{}: {text}",
            r.name
        );
        assert!(
            json.is_object(),
            "{}: every answer is a JSON object: {text}",
            r.name
        );
        assert_eq!(after - before, usize::from(r.stores), "{}: stored?", r.name);
        if r.name.starts_with("duplicate") || r.name.contains("redelivery") {
            assert_eq!(json["duplicate"], true, "{}", r.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_never_reach_a_log_or_a_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(RelayOptions::new(dir.path()));
    let client = http();
    let mut responses = Vec::new();
    let body = r#"{"event":"bot.status_change","data":{"bot_id":"leak-check","status":{"code":"joining_call"}}}"#;
    let now = chrono::Utc::now().timestamp();
    let mut attempts: Vec<Vec<(&'static str, String)>> = vec![
        key(API_KEY),
        key(API_KEY_2),
        key("nope"),
        signed(body, "m1", now),
        signed(body, "m2", now - 900),
    ];
    attempts.push(vec![
        ("content-type", "application/json".into()),
        ("x-mb-secret", CALLBACK_SECRET.into()),
    ]);
    attempts.push(vec![
        ("content-type", "application/json".into()),
        ("x-mb-secret", format!("{CALLBACK_SECRET}x")),
    ]);
    // A sender that echoes our secrets back inside the body must not make us log them.
    let echo =
        json!({"event": "bot.status_change", "data": {"bot_id": "leak-check", "note": API_KEY}})
            .to_string();
    for h in &attempts {
        responses.push(post_webhook(&client, &relay, h, body).await.2);
    }
    responses.push(post_webhook(&client, &relay, &key(API_KEY), echo).await.2);
    responses.push(
        post_webhook(&client, &relay, &key(API_KEY), "{oops")
            .await
            .2,
    );
    // Give the log pipes a moment to drain.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let logs = relay.output();
    assert!(
        logs.iter().filter(|l| l.contains("\"webhook")).count() >= attempts.len(),
        "one log line per request:\n{}",
        logs.join("\n")
    );
    for line in logs.iter().chain(responses.iter()) {
        for secret in SECRETS {
            // Neither the secret nor its first or last 8 characters.
            for part in [secret, &secret[..8], &secret[secret.len() - 8..]] {
                assert!(!line.contains(part), "secret material in: {line}");
            }
        }
    }
    let accepted: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "webhook")
        .collect();
    let first = &accepted[0];
    for field in [
        "bot_id",
        "event",
        "event_id",
        "duplicate",
        "latency_ms",
        "request_id",
    ] {
        assert!(!first[field].is_null(), "log line lacks {field}: {first}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn development_mode_and_the_seed_curl_example() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = RelayOptions::new(dir.path());
    opts.bare = true;
    let mut relay = Relay::start(opts);
    let printed = relay.output().join("\n");
    let dev = serde_json::from_slice::<Value>(
        &std::fs::read(dir.path().join("dev-secrets.json")).expect("dev secrets"),
    )
    .expect("json");
    let dev_key = dev["api_key"].as_str().expect("api_key").to_owned();
    assert!(
        printed.contains(&dev_key),
        "the development key is printed for the user: {printed}"
    );

    // The seed's curl example with the printed key: 200, then a duplicate.
    let client = http();
    let seed = r#"{"type":"meeting.started","data":{"botId":"test-123"}}"#;
    let (s1, j1, _) = post_webhook(&client, &relay, &key(&dev_key), seed).await;
    let (s2, j2, _) = post_webhook(&client, &relay, &key(&dev_key), seed).await;
    assert_eq!(
        (s1, &j1["duplicate"], &j1["status"]),
        (200, &json!(false), &json!("accepted"))
    );
    assert_eq!(
        (s2, &j2["duplicate"], &j2["event_id"]),
        (200, &json!(true), &j1["event_id"])
    );
    assert_eq!(j1["event"], "meeting.started");

    // `relay send-test-event` finds the same key in the data dir.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .args([
            "send-test-event",
            "--url",
            &relay.url("/api/meeting-bot/webhook"),
            "--bot",
            "cli-bot",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("MEETINGBAAS_API_KEY")
        .output()
        .expect("run send-test-event");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout.starts_with("200 ")
            && stdout.contains("\"bot_id\":\"cli-bot\""),
        "{stdout}"
    );

    // `relay token` mints with the development client secret.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .args([
            "token",
            "--bot",
            "cli-bot",
            "--scope",
            "control",
            "--ttl",
            "2h",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("RELAY_CLIENT_SECRET")
        .output()
        .expect("run token");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let keys =
        relay_core::domain::token::TokenKeys::new(dev["client_secret"].as_str().expect("secret"))
            .expect("keys");
    let claims = keys.verify(&token).expect("valid token");
    assert_eq!(claims.bots, vec!["cli-bot"]);
    assert_eq!(claims.scope, relay_core::domain::token::Scope::Control);
    let ttl = claims.exp - chrono::Utc::now().timestamp();
    assert!((7000..=7200).contains(&ttl), "ttl {ttl}");

    // SIGTERM: a clean exit, and the data is there on the next start with the same key.
    assert!(relay.terminate().success());
    let mut opts = RelayOptions::new(dir.path());
    opts.bare = true;
    let relay = Relay::start(opts);
    let (s3, j3, _) = post_webhook(&client, &relay, &key(&dev_key), seed).await;
    assert_eq!((s3, &j3["duplicate"]), (200, &json!(true)));
}

/// Authenticated bodies that are valid JSON by the RFC 8259 grammar but unusual are stored, and
/// read back byte for byte; each is one event however often it is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unusual_but_valid_bodies_are_stored_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(RelayOptions::new(dir.path()));
    let client = http();
    let deep_inside = format!(
        r#"{{"event":"complete","data":{{"bot_id":"odd-deep","nested":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let bodies = [
        (
            "odd-surrogate",
            r#"{"event":"failed","data":{"bot_id":"odd-surrogate","error":"E","message":"cut \ud83d"}}"#.to_owned(),
        ),
        (
            "odd-surrogate-key",
            r#"{"\ud83d":1,"event":"bot.status_change","data":{"bot_id":"odd-surrogate-key","status":{"code":"joining_call","created_at":"2026-11-29T09:00:00Z"}}}"#.to_owned(),
        ),
        (
            "odd-number",
            r#"{"event":"bot.status_change","data":{"bot_id":"odd-number","n":1e400,"m":-1e-400,"status":{"code":"joining_call"}}}"#.to_owned(),
        ),
        ("odd-deep", deep_inside),
    ];
    let token = token(&["*"], 600);
    for (bot, body) in &bodies {
        let (status, first, text) =
            post_webhook(&client, &relay, &key(API_KEY), body.clone()).await;
        assert_eq!(status, 200, "{bot}: {text}");
        assert_eq!(first["duplicate"], false, "{bot}");
        let (status, again, _) = post_webhook(&client, &relay, &key(API_KEY), body.clone()).await;
        assert_eq!(
            (status, &again["duplicate"]),
            (200, &Value::Bool(true)),
            "{bot}"
        );
        assert_eq!(again["event_id"], first["event_id"], "{bot}");
        let url = relay.url(&format!(
            "/api/meeting-bot/{bot}/events/{}",
            first["event_id"].as_str().expect("id")
        ));
        let resp = client
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status().as_u16(), 200, "{bot}");
        let text = resp.text().await.expect("text");
        // The payload is embedded verbatim: the body's own bytes are in the answer.
        assert!(text.contains(body.as_str()), "{bot}: {text}");
    }
}
