//! Reconciliation and fresh artifacts against a fake MeetingBaaS whose answers pass the official
//! SDK's response schemas (`V2Zod.getBotStatusResponse`, `V2Zod.getBotDetailsResponse`, v1
//! `getMeetingDataResponse`): a session left open because a delivery never came is repaired
//! and broadcast within one interval, on SQLite and on DynamoDB (moto), and stays repaired
//! across a restart; a late real delivery is a repeat; a bot MeetingBaaS does not know stays
//! as it is; the account-level bot is never asked about.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::meetingbaas_fake::{NodeFake, assert_valid};
use support::*;

/// Bot ids MeetingBaaS's schemas accept (UUIDs).
const STUCK: &str = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c";
const UNKNOWN: &str = "4a3b2c1d-0e9f-4a8b-9c7d-6e5f4a3b2c1d";
const LONG: &str = "5b4c3d2e-1f0a-4b9c-8d8e-7f6a5b4c3d2e";
const FAILED: &str = "6c5d4e3f-2a1b-4c0d-9e9f-8a7b6c5d4e3f";

/// Idle time and interval of the relays under test.
const AFTER: &str = "2";
const INTERVAL: &str = "2";
/// Idle + interval + slack for a loaded machine.
const WITHIN: Duration = Duration::from_secs(20);

static TABLES: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug)]
enum Store {
    Sqlite,
    Moto,
}

/// The store arguments, the same on every start of one test (a restart finds its data).
fn store_args(store: Store) -> Vec<String> {
    match store {
        Store::Sqlite => Vec::new(),
        Store::Moto => {
            let endpoint = std::env::var("RELAY_TEST_DYNAMODB_ENDPOINT").expect(
                "RELAY_TEST_DYNAMODB_ENDPOINT is not set: run scripts/test (it starts moto) or set it to a DynamoDB-API endpoint",
            );
            let n = format!(
                "{:x}-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1),
                TABLES.fetch_add(1, Ordering::Relaxed)
            );
            vec![
                "--dynamodb-endpoint".into(),
                endpoint,
                "--events-table".into(),
                format!("rec-events-{n}"),
                "--connections-table".into(),
                format!("rec-conns-{n}"),
            ]
        }
    }
}

fn relay(dir: &Path, fake: &NodeFake, version: &str, args: &[String]) -> Relay {
    let mut opts = RelayOptions::new(dir);
    opts.extra_args = args.to_vec();
    opts.env = vec![
        ("MEETINGBAAS_API_URL".into(), fake.base.clone()),
        ("MEETINGBAAS_API_VERSION".into(), version.into()),
        ("MEETINGBAAS_TIMEOUT_MS".into(), "3000".into()),
        ("RECONCILE_AFTER_SECONDS".into(), AFTER.into()),
        ("RECONCILE_INTERVAL_SECONDS".into(), INTERVAL.into()),
    ];
    Relay::start(opts)
}

async fn deliver(relay: &Relay, body: Value) -> Value {
    let (status, json, text) =
        post_webhook(&http(), relay, &json_key_headers(), body.to_string()).await;
    assert_eq!(status, 200, "{text}");
    json
}

fn v2_signal(bot: &str, code: &str, at: &str) -> Value {
    json!({"event": "bot.status_change", "data": {"bot_id": bot, "event_id": format!("{bot}-{code}"),
           "status": {"code": code, "created_at": at}}})
}

async fn get(relay: &Relay, path: &str, bot: &str) -> (u16, Value) {
    let resp = http()
        .get(relay.url(path))
        .bearer_auth(token(&[bot], 600))
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn session(relay: &Relay, bot: &str) -> Value {
    let (status, body) = get(relay, &format!("/api/meeting-bot/{bot}/status"), bot).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn events(relay: &Relay, bot: &str) -> Vec<Value> {
    let (status, body) = get(relay, &format!("/api/meeting-bot/{bot}/events"), bot).await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

async fn subscribe(relay: &Relay, bot: &str) -> WsClient {
    let mut c = WsClient::connect(relay, &token(&[bot], 3600))
        .await
        .expect("connect");
    c.send(json!({"action": "subscribe", "bot_id": bot}));
    let first = c.next(WITHIN).await.expect("connected");
    assert_eq!(first["type"], "connected");
    let snap = c.next(WITHIN).await.expect("snapshot");
    c.resume_from(bot, snap["seq"].as_u64().expect("seq"));
    c
}

/// What MeetingBaaS was asked, by bot.
async fn asked_about(fake: &NodeFake) -> Vec<String> {
    fake.requests()
        .await
        .iter()
        .filter_map(|r| r["bot_id"].as_str().map(str::to_owned))
        .collect()
}

async fn v2_stuck_session_is_repaired(store: Store) {
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let args = store_args(store);
    let r = relay(dir.path(), &fake, "v2", &args);

    // The bot recorded, left, and its completion never came.
    deliver(
        &r,
        v2_signal(STUCK, "in_call_recording", "2026-12-01T09:05:00Z"),
    )
    .await;
    // MeetingBaaS does not know this one: it stays as it is.
    deliver(
        &r,
        v2_signal(UNKNOWN, "joining_call", "2026-12-01T09:00:00Z"),
    )
    .await;
    // Still in its meeting, no events for a while: asked, nothing changes.
    deliver(
        &r,
        v2_signal(LONG, "in_call_recording", "2026-12-01T09:00:00Z"),
    )
    .await;
    // Account-level: never asked about.
    deliver(
        &r,
        json!({"event": "calendar.event_created", "data": {"calendar_id": "c-1"}}),
    )
    .await;
    fake.set_bot(
        json!({"bot_id": STUCK, "status": "completed", "updated_at": "2026-12-01T09:40:00Z"}),
    )
    .await;
    fake.set_bot(json!({"bot_id": LONG, "status": "in_call_recording", "updated_at": "2026-12-01T09:00:00Z"}))
        .await;
    let mut ws = subscribe(&r, STUCK).await;

    let got = ws.events(STUCK, 1, WITHIN).await;
    assert_eq!(got[0]["event"], "bot.reconciled", "{:#}", got[0]);
    assert_eq!(got[0]["source_event"], "completed");
    assert_eq!(got[0]["status"], "completed");
    assert!(
        got[0]["data"]["details"]["video"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://storage.example.com/")),
        "the fresh URLs come with it: {:#}",
        got[0]
    );
    assert_eq!(session(&r, STUCK).await["status"], "completed");
    assert_eq!(session(&r, UNKNOWN).await["status"], "joining");
    assert_eq!(session(&r, LONG).await["status"], "recording");

    // Every request passed MeetingBaaS's schemas; the details only for the final status; the
    // account-level bot never; the unknown bot asked (and answered 404).
    for req in fake.requests().await {
        if req["status"] == 404 {
            assert_eq!(req["bot_id"], UNKNOWN, "{req:#}");
        } else {
            assert_valid(&req);
        }
    }
    // A pass may have found the stuck bot idle before the other two (each is asked once it has
    // been idle long enough): the next pass asks about them.
    let deadline = std::time::Instant::now() + WITHIN;
    let asked = loop {
        let asked = asked_about(&fake).await;
        if (asked.iter().any(|b| b == UNKNOWN) && asked.iter().any(|b| b == LONG))
            || std::time::Instant::now() > deadline
        {
            break asked;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!asked.iter().any(|b| b == "calendar"), "{asked:?}");
    assert!(
        asked.iter().any(|b| b == UNKNOWN) && asked.iter().any(|b| b == LONG),
        "{asked:?}"
    );
    let details: Vec<Value> = fake
        .requests()
        .await
        .into_iter()
        .filter(|q| q["schema"] == "v2Details")
        .collect();
    assert!(
        details.iter().all(|q| q["bot_id"] == STUCK),
        "details only when final: {details:#?}"
    );

    // The real completion arrives late: a repeat, broadcast as such, nothing changes.
    let late = deliver(
        &r,
        json!({"event": "bot.completed", "data": {"bot_id": STUCK, "event_id": "late-1",
               "sent_at": "2026-12-01T12:00:00Z"}}),
    )
    .await;
    assert_eq!(late["duplicate"], false);
    let repeat = ws.events(STUCK, 1, WITHIN).await;
    assert_eq!(repeat[0]["repeat"], true, "{:#}", repeat[0]);
    assert_eq!(repeat[0]["status"], "completed");
    let stored = events(&r, STUCK).await;
    assert_eq!(stored.len(), 3, "signal, reconciled, repeat: {stored:#?}");
    ws.close().await;

    // The repair survives a restart, and later passes add nothing.
    drop(r);
    let r = relay(dir.path(), &fake, "v2", &args);
    assert_eq!(session(&r, STUCK).await["status"], "completed");
    let before = fake.requests().await.len();
    let deadline = std::time::Instant::now() + WITHIN;
    while fake.requests().await.len() == before && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        fake.requests().await.len() > before,
        "passes go on after the restart"
    );
    assert_eq!(events(&r, STUCK).await.len(), 3);
    let asked_after: Vec<Value> = fake.requests().await.split_off(before);
    assert!(
        asked_after.iter().all(|q| q["bot_id"] != STUCK),
        "a final session is not asked about: {asked_after:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_v2_stuck_session_is_repaired_and_broadcast() {
    v2_stuck_session_is_repaired(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_v2_stuck_session_is_repaired_and_broadcast() {
    v2_stuck_session_is_repaired(Store::Moto).await;
}

/// v1: the outcome is inferred from the meeting data; a failure carries its error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_meeting_data_with_errors_ends_failed() {
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let r = relay(dir.path(), &fake, "v1", &[]);
    deliver(
        &r,
        json!({"event": "bot.status_change", "data": {"bot_id": FAILED,
               "status": {"code": "joining_call", "created_at": "2026-12-01T09:00:00Z"}}}),
    )
    .await;
    fake.set_bot(
        json!({"bot_id": FAILED, "status": "failed", "error_code": "BotNotAccepted",
                        "updated_at": "2026-12-01T09:10:00Z"}),
    )
    .await;
    let deadline = std::time::Instant::now() + WITHIN;
    let mut s = session(&r, FAILED).await;
    while s["status"] != "failed" && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        s = session(&r, FAILED).await;
    }
    assert_eq!(s["status"], "failed", "{s:#}");
    assert_eq!(s["session"]["error"]["code"], "BotNotAccepted", "{s:#}");
    let asked: Vec<Value> = fake.requests().await;
    assert!(asked.iter().all(|q| q["schema"] == "v1MeetingData"));
    for q in &asked {
        assert_valid(q);
    }
    let stored = events(&r, FAILED).await;
    let body = serde_json::to_string(&stored).expect("json");
    assert!(
        !body.contains("customer-stt-key-never-shown"),
        "MeetingBaaS's answer is curated, never stored whole"
    );
}

/// The artifacts route answers MeetingBaaS's current URLs (fresh on every call), for a read
/// token of that bot; `relay bots artifacts` prints them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifacts_are_fetched_fresh() {
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let r = relay(dir.path(), &fake, "v2", &[]);
    fake.set_bot(
        json!({"bot_id": STUCK, "status": "completed", "updated_at": "2026-12-01T09:40:00Z"}),
    )
    .await;
    let path = format!("/api/meeting-bot/{STUCK}/artifacts");
    let (status, first) = get(&r, &path, STUCK).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = get(&r, &path, STUCK).await;
    assert_eq!(first["bot_id"], STUCK);
    for field in ["video", "audio", "transcription"] {
        assert!(
            first[field]
                .as_str()
                .is_some_and(|u| u.starts_with("https://storage.example.com/")),
            "{field}: {first:#}"
        );
    }
    assert_ne!(first["video"], second["video"], "signed anew each time");
    assert!(first["fetched_at"].is_string());
    for q in fake.requests().await {
        assert_valid(&q);
    }

    // Another bot's token: 403; a bot MeetingBaaS does not know: 404.
    let resp = http()
        .get(r.url(&path))
        .bearer_auth(token(&[UNKNOWN], 600))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 403);
    let (status, body) = get(
        &r,
        &format!("/api/meeting-bot/{UNKNOWN}/artifacts"),
        UNKNOWN,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["bots", "artifacts", STUCK, "--api-url", &r.base])
        .env("RELAY_CLIENT_SECRET", CLIENT_SECRET)
        .output()
        .expect("relay bots artifacts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(printed["video"].as_str().is_some_and(|u| u.contains(STUCK)));
}

/// `relay reconcile --once` runs one pass against the store of a data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconcile_once_runs_one_pass_against_the_store() {
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut opts = RelayOptions::new(dir.path());
        // No pass of its own: the interval is longer than the test.
        opts.env = vec![
            ("MEETINGBAAS_API_URL".into(), fake.base.clone()),
            ("MEETINGBAAS_API_VERSION".into(), "v2".into()),
            ("RECONCILE_INTERVAL_SECONDS".into(), "3600".into()),
        ];
        let r = Relay::start(opts);
        deliver(
            &r,
            v2_signal(STUCK, "in_call_recording", "2026-12-01T09:05:00Z"),
        )
        .await;
    }
    fake.set_bot(
        json!({"bot_id": STUCK, "status": "completed", "updated_at": "2026-12-01T09:40:00Z"}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let once = |after: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["reconcile", "--once", "--data-dir"])
            .arg(dir.path())
            .env("MEETINGBAAS_API_KEY", API_KEY)
            .env("MEETINGBAAS_API_URL", &fake.base)
            .env("MEETINGBAAS_API_VERSION", "v2")
            .env("RECONCILE_AFTER_SECONDS", after)
            .output()
            .expect("relay reconcile --once")
    };
    let out = once("1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(
        (report["checked"].as_u64(), report["reconciled"].as_u64()),
        (Some(1), Some(1)),
        "{report:#}"
    );
    assert_eq!(
        report["meetingbaas_calls"], 2,
        "status, then details: {report:#}"
    );
    // A second pass adds nothing: the session is final now.
    let again: Value = serde_json::from_slice(&once("1").stdout).expect("JSON report");
    assert_eq!(again["checked"], 0, "{again:#}");
}
