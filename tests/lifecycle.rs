//! The session lifecycle through the real `relay serve` over HTTP, on SQLite and on moto:
//! MeetingBaaS's realistic sequences, each delivered in a seeded sample of orders with
//! redeliveries mixed in, must end in the same session (status, error, attempt) whatever the
//! order. The pure rules are tested over every order in `core/src/domain/session.rs`.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use support::*;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Sqlite,
    Moto,
}

static TABLES: AtomicU64 = AtomicU64::new(0);

fn start(mode: Mode, dir: &std::path::Path) -> Relay {
    let mut opts = RelayOptions::new(dir);
    if let Mode::Moto = mode {
        let endpoint = std::env::var("RELAY_TEST_DYNAMODB_ENDPOINT").expect(
            "RELAY_TEST_DYNAMODB_ENDPOINT is not set: run scripts/test (it starts moto) or set it to a DynamoDB-API endpoint",
        );
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let n = format!("{n:x}-{}", TABLES.fetch_add(1, Ordering::Relaxed));
        opts.extra_args.extend([
            "--dynamodb-endpoint".to_owned(),
            endpoint,
            "--events-table".to_owned(),
            format!("life-events-{n}"),
            "--connections-table".to_owned(),
            format!("life-conns-{n}"),
        ]);
    }
    Relay::start(opts)
}

/// One delivery: its body and how it comes: a v1 webhook (API key), a v2 webhook (Svix-signed,
/// its message id stable across redeliveries) or the v2 per-bot callback (`x-mb-secret`).
#[derive(Clone)]
struct Delivery {
    body: String,
    callback: bool,
}

fn is_v2(body: &str) -> bool {
    body.contains("\"event_id\"")
}

fn at(minute: u32) -> String {
    format!("2026-11-30T10:{minute:02}:00.000Z")
}

fn signal(v2: bool, bot: &str, code: &str, minute: u32) -> Delivery {
    let data = if v2 {
        json!({"bot_id": bot, "event_id": null, "status": {"code": code, "created_at": at(minute)}})
    } else {
        json!({"bot_id": bot, "status": {"code": code, "created_at": at(minute)}})
    };
    Delivery {
        body: json!({"event": "bot.status_change", "data": data}).to_string(),
        callback: false,
    }
}

fn retrying(bot: &str, minute: u32, attempt: u32, max: u32) -> Delivery {
    Delivery {
        body: json!({"event": "bot.status_change", "data": {"bot_id": bot, "event_id": null,
            "status": {"code": "retrying", "created_at": at(minute), "attempt": attempt, "max": max}}})
        .to_string(),
        callback: false,
    }
}

fn v1_complete(bot: &str) -> Delivery {
    Delivery {
        body: json!({"event": "complete", "data": {"bot_id": bot, "mp4": "https://example.com/v.mp4", "speakers": ["A"]}}).to_string(),
        callback: false,
    }
}

fn v2_completed(bot: &str, callback: bool) -> Delivery {
    Delivery {
        body: json!({"event": "bot.completed", "data": {"bot_id": bot, "event_id": null,
            "duration_seconds": 1800, "video": "https://example.com/v.mp4", "sent_at": at(59)}})
        .to_string(),
        callback,
    }
}

fn v2_failed(bot: &str, code: &str) -> Delivery {
    Delivery {
        body: json!({"event": "bot.failed", "data": {"bot_id": bot, "event_id": null,
            "error_code": code, "error_message": "the bot gave up", "sent_at": at(58)}})
        .to_string(),
        callback: false,
    }
}

/// A sequence and the session it must end in: (status, error code, attempt).
struct Case {
    name: &'static str,
    deliveries: fn(&str) -> Vec<Delivery>,
    status: &'static str,
    error_code: Option<&'static str>,
    attempt: Option<u64>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "removed after recording, then complete",
            deliveries: |b| {
                vec![
                    signal(false, b, "joining_call", 1),
                    signal(false, b, "in_call_recording", 3),
                    signal(false, b, "bot_removed", 30),
                    v1_complete(b),
                ]
            },
            status: "completed",
            error_code: None,
            attempt: None,
        },
        Case {
            name: "rejected, retried, recording",
            deliveries: |b| {
                vec![
                    signal(true, b, "queued", 0),
                    signal(true, b, "joining_call", 1),
                    signal(true, b, "bot_rejected", 2),
                    retrying(b, 3, 2, 3),
                    signal(true, b, "joining_call", 4),
                    signal(true, b, "in_call_recording", 6),
                ]
            },
            status: "recording",
            error_code: None,
            attempt: Some(2),
        },
        Case {
            name: "waiting room timeout, then bot.failed",
            deliveries: |b| {
                vec![
                    signal(true, b, "joining_call", 1),
                    signal(true, b, "waiting_room_timeout", 11),
                    v2_failed(b, "TIMEOUT_WAITING_TO_START"),
                ]
            },
            status: "failed",
            error_code: Some("TIMEOUT_WAITING_TO_START"),
            attempt: None,
        },
        Case {
            name: "v1 happy path",
            deliveries: |b| {
                vec![
                    signal(false, b, "joining_call", 1),
                    signal(false, b, "in_waiting_room", 2),
                    signal(false, b, "in_call_not_recording", 3),
                    signal(false, b, "in_call_recording", 4),
                    signal(false, b, "call_ended", 40),
                    v1_complete(b),
                ]
            },
            status: "completed",
            error_code: None,
            attempt: None,
        },
        Case {
            name: "v2 happy path with post-call statuses, webhook and callback",
            deliveries: |b| {
                vec![
                    signal(true, b, "joining_call", 1),
                    signal(true, b, "in_call_recording", 3),
                    signal(true, b, "call_ended", 40),
                    signal(true, b, "recording_succeeded", 41),
                    signal(true, b, "transcribing", 42),
                    signal(true, b, "completed", 45),
                    v2_completed(b, false),
                    v2_completed(b, true),
                ]
            },
            status: "completed",
            error_code: None,
            attempt: None,
        },
    ]
}

/// A stable id per body (FNV-1a), as Svix keeps one message id across redeliveries.
fn message_id(body: &str) -> u64 {
    body.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Seeded orders: the given one first, then shuffles (xorshift, Fisher-Yates).
fn orders(n: usize, count: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = vec![(0..n).collect::<Vec<_>>()];
    while out.len() < count {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        out.push(order);
    }
    out
}

async fn deliver(relay: &Relay, d: &Delivery) {
    let headers = if d.callback {
        vec![
            ("content-type", "application/json".to_owned()),
            ("x-mb-secret", CALLBACK_SECRET.to_owned()),
        ]
    } else if is_v2(&d.body) {
        let id = format!("msg_{:x}", message_id(&d.body));
        let ts = chrono::Utc::now().timestamp();
        let sig = relay_core::domain::auth::sign(WEBHOOK_SECRET, &id, ts, d.body.as_bytes())
            .expect("sign");
        vec![
            ("content-type", "application/json".to_owned()),
            ("svix-id", id),
            ("svix-timestamp", ts.to_string()),
            ("svix-signature", sig),
        ]
    } else {
        json_key_headers()
    };
    let client = http();
    // A busy moto can answer 503; the sender retries, as MeetingBaaS does.
    for _ in 0..20 {
        let (status, _, text) = post_webhook(&client, relay, &headers, d.body.clone()).await;
        match status {
            200 => return,
            503 => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            other => panic!("{other}: {text}"),
        }
    }
    panic!("the relay kept answering 503");
}

async fn each_order_ends_in_the_same_session(mode: Mode, per_case: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path());
    let token = token(&["*"], 3600);
    for (c, case) in cases().into_iter().enumerate() {
        let n = (case.deliveries)("x").len();
        for (k, order) in orders(n, per_case, 0x5EED + c as u64)
            .into_iter()
            .enumerate()
        {
            let bot = format!("life-{c}-{k}-{:x}", std::process::id());
            let deliveries = (case.deliveries)(&bot);
            for (i, &at) in order.iter().enumerate() {
                deliver(&relay, &deliveries[at]).await;
                // Redeliveries mixed in: every third delivery arrives twice.
                if (i + k) % 3 == 0 {
                    deliver(&relay, &deliveries[at]).await;
                }
            }
            let resp = http()
                .get(relay.url(&format!("/api/meeting-bot/{bot}/status")))
                .bearer_auth(&token)
                .send()
                .await
                .expect("status");
            let snap: Value = resp.json().await.expect("json");
            let session = &snap["session"];
            let got = (
                snap["status"].as_str().map(str::to_owned),
                session["error"]["code"].as_str().map(str::to_owned),
                session["attempt"].as_u64(),
            );
            let want = (
                Some(case.status.to_owned()),
                case.error_code.map(str::to_owned),
                case.attempt,
            );
            assert_eq!(got, want, "{}: order {order:?}: {snap}", case.name);
            assert_eq!(
                snap["seq"].as_u64(),
                Some(n as u64),
                "{}: every distinct delivery stored once",
                case.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_every_order_ends_in_the_same_session() {
    each_order_ends_in_the_same_session(Mode::Sqlite, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_every_order_ends_in_the_same_session() {
    each_order_ends_in_the_same_session(Mode::Moto, 20).await;
}
