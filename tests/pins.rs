//! Pins of today's external behaviour, written before the crates are restructured: only the
//! real `relay` binary over HTTP and WebSocket, no library of the workspace. Webhooks are signed
//! (Svix) and client tokens minted (HS256 JWT) here, by the public specs, as any sender or
//! backend would. Cases that touch a store run on SQLite and on a DynamoDB-API server (moto).

mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use support::*;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Sqlite,
    Moto,
}

/// How long to wait for something that must happen (moto is slow on a busy machine).
const WAIT: Duration = Duration::from_secs(45);
/// How long to listen for something that must not happen, after a positive control.
const QUIET: Duration = Duration::from_millis(1000);

static TABLES: AtomicU64 = AtomicU64::new(0);

fn start(mode: Mode, dir: &std::path::Path, env: &[(&str, &str)]) -> Relay {
    let mut opts = RelayOptions::new(dir);
    opts.env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if let Mode::Moto = mode {
        let endpoint = std::env::var("RELAY_TEST_DYNAMODB_ENDPOINT")
            .expect("RELAY_TEST_DYNAMODB_ENDPOINT is not set: run scripts/test (it starts moto) or set it to a DynamoDB-API endpoint");
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let n = format!("{n:x}-{}", TABLES.fetch_add(1, Ordering::Relaxed));
        opts.extra_args.extend([
            "--dynamodb-endpoint".to_owned(),
            endpoint,
            "--events-table".to_owned(),
            format!("pins-events-{n}"),
            "--connections-table".to_owned(),
            format!("pins-conns-{n}"),
        ]);
    }
    Relay::start(opts)
}

// --- tokens and signatures, by the public specs -------------------------------------------

fn hs256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// An HS256 JWT of `claims`, signed with the relay's client secret.
fn jwt(claims: &Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = URL_SAFE_NO_PAD.encode(hs256(
        CLIENT_SECRET.as_bytes(),
        format!("{head}.{body}").as_bytes(),
    ));
    format!("{head}.{body}.{sig}")
}

fn client_token(bots: &[&str], scope: &str) -> String {
    jwt(&json!({
        "sub": "pins",
        "exp": chrono::Utc::now().timestamp() + 3600,
        "bots": bots,
        "scope": scope,
    }))
}

fn read_token(bots: &[&str]) -> String {
    client_token(bots, "read")
}

/// Svix headers for `body` under message id `id`, signed with the webhook secret.
fn svix(body: &str, id: &str) -> Vec<(&'static str, String)> {
    let ts = chrono::Utc::now().timestamp();
    let key = STANDARD
        .decode(WEBHOOK_SECRET.strip_prefix("whsec_").expect("whsec_"))
        .expect("base64 secret");
    let sig = STANDARD.encode(hs256(&key, format!("{id}.{ts}.{body}").as_bytes()));
    vec![
        ("content-type", "application/json".into()),
        ("svix-id", id.into()),
        ("svix-timestamp", ts.to_string()),
        ("svix-signature", format!("v1,{sig}")),
    ]
}

// --- HTTP ----------------------------------------------------------------------------------

/// Posts a webhook and expects it accepted; a 503 (moto too slow for the relay's store
/// timeout) is retried as a sender retries it.
async fn deliver(relay: &Relay, headers: &[(&str, String)], body: &str) -> Value {
    let client = http();
    for _ in 0..20 {
        let (status, json, text) = post_webhook(&client, relay, headers, body.to_owned()).await;
        if status == 503 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        assert_eq!(status, 200, "{text}");
        assert_eq!(json["status"], "accepted", "{text}");
        return json;
    }
    panic!("still 503 after 20 attempts");
}

async fn deliver_keyed(relay: &Relay, body: &str) -> Value {
    deliver(relay, &json_key_headers(), body).await
}

fn status_change(bot: &str, n: usize) -> String {
    json!({"event": "bot.status_change", "data": {"bot_id": bot, "n": n, "status": {"code": "in_call_recording"}}}).to_string()
}

/// GET with an optional bearer token: status, headers, body text.
async fn get(relay: &Relay, path: &str, token: Option<&str>) -> (u16, http::HeaderMap, String) {
    let mut req = http().get(relay.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("text"))
}

async fn get_json(relay: &Relay, path: &str, token: &str) -> (u16, Value) {
    let (status, _, text) = get(relay, path, Some(token)).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
    (status, v)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn assert_rfc3339_near_now(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{what} is not RFC 3339 ({e}): {s}"));
    let off = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .abs();
    assert!(off < 600, "{what} is {off} s from now: {s}");
}

// --- WebSocket -----------------------------------------------------------------------------

/// Connects and subscribes; returns the client and the snapshot (None with `since`).
async fn subscribe(relay: &Relay, bot: &str, since: Option<u64>) -> (WsClient, Option<Value>) {
    let mut c = WsClient::connect(relay, &read_token(&[bot]))
        .await
        .expect("connect");
    let snap = subscribe_on(&mut c, bot, since).await;
    (c, snap)
}

async fn subscribe_on(c: &mut WsClient, bot: &str, since: Option<u64>) -> Option<Value> {
    let mut msg = json!({"action": "subscribe", "bot_id": bot});
    if let Some(s) = since {
        msg["since"] = json!(s);
    }
    c.send(msg);
    let first = c.next(WAIT).await.expect("connected message");
    assert_eq!(first, json!({"type": "connected", "bot_id": bot}));
    match since {
        Some(_) => None,
        None => Some(c.next(WAIT).await.expect("snapshot")),
    }
}

/// The next message that is an event of `bot` (skipping nothing else silently: any other
/// message is returned to the caller as a failure).
async fn next_event(c: &mut WsClient, bot: &str) -> Value {
    let v = c.next(WAIT).await.expect("an event message");
    assert!(
        v["type"] == "status_update" && v["bot_id"] == bot && v["event_id"].is_string(),
        "expected an event of {bot}, got {v}"
    );
    v
}

/// Reads messages until the event `event_id` arrives; returns every message read.
async fn until_event(c: &mut WsClient, event_id: &Value) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let v = c
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("event {event_id} never came; got {seen:?}"));
        let done = v["event_id"] == *event_id;
        seen.push(v);
        if done {
            return seen;
        }
    }
}

fn parse_frame(text: &str) -> Value {
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("a frame that is not JSON ({e}): {text}"));
    assert!(v["type"].is_string(), "a message without a type: {text}");
    v
}

// --- intake: idempotency keys ----------------------------------------------------------------

async fn key_precedence_end_to_end(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let all = read_token(&["*"]);

    // The same body under two signed Svix ids: two events.
    let bot = "pin-svix";
    let body = json!({"event": "bot.failed", "data": {"bot_id": bot, "error_code": "BOT_CRASHED"}})
        .to_string();
    let a = deliver(&relay, &svix(&body, "msg_pin_a"), &body).await;
    let b = deliver(&relay, &svix(&body, "msg_pin_b"), &body).await;
    assert_eq!(
        (&a["duplicate"], &b["duplicate"]),
        (&json!(false), &json!(false))
    );
    assert_ne!(a["event_id"], b["event_id"], "two svix ids, two events");
    // The svix id wins over an Idempotency-Key: the first id again with a new key is the same
    // delivery; a third id with the first one's key is a new one.
    let mut again = svix(&body, "msg_pin_a");
    again.push(("idempotency-key", "idem-other".into()));
    let c = deliver(&relay, &again, &body).await;
    assert_eq!(
        (&c["duplicate"], &c["event_id"]),
        (&json!(true), &a["event_id"])
    );
    let mut third = svix(&body, "msg_pin_c");
    third.push(("idempotency-key", "idem-other".into()));
    let d = deliver(&relay, &third, &body).await;
    assert_eq!(d["duplicate"], false);
    let (s, list) = get_json(&relay, &format!("/api/meeting-bot/{bot}/events"), &all).await;
    assert_eq!(s, 200, "{list}");
    let ids: Vec<&Value> = list["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["event_id"])
        .collect();
    assert_eq!(ids, vec![&a["event_id"], &b["event_id"], &d["event_id"]]);

    // The same Idempotency-Key with two different bodies: one event, the first body kept.
    let bot = "pin-idem";
    let first = json!({"event": "bot.status_change", "data": {"bot_id": bot, "status": {"code": "joining_call"}}}).to_string();
    let second = json!({"event": "bot.status_change", "data": {"bot_id": bot, "status": {"code": "in_waiting_room"}}}).to_string();
    let mut headers = json_key_headers();
    headers.push(("idempotency-key", "order-42".into()));
    let one = deliver(&relay, &headers, &first).await;
    let two = deliver(&relay, &headers, &second).await;
    assert_eq!(one["duplicate"], false);
    assert_eq!(
        (&two["duplicate"], &two["event_id"], &two["bot_id"]),
        (&json!(true), &one["event_id"], &json!(bot))
    );
    let (s, list) = get_json(&relay, &format!("/api/meeting-bot/{bot}/events"), &all).await;
    assert_eq!(s, 200);
    let events = list["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{list}");
    assert_eq!(
        events[0]["status_code"], "joining_call",
        "the first body is kept"
    );
    // Without the key, the second body is an event of its own (keyed by its content).
    let three = deliver_keyed(&relay, &second).await;
    assert_eq!(three["duplicate"], false);
    assert_ne!(three["event_id"], one["event_id"]);

    // Authentication comes before parsing: a bad key with a body that is not JSON is 401.
    let client = http();
    let not_json = "event=complete&bot_id=x";
    for (what, headers) in [
        (
            "wrong key",
            vec![
                ("content-type", "application/json".to_owned()),
                ("x-meeting-baas-api-key", "wrong-key".to_owned()),
            ],
        ),
        (
            "no key",
            vec![("content-type", "application/json".to_owned())],
        ),
        ("bad signature", {
            let mut h = svix(not_json, "msg_pin_bad");
            h[3].1 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
            h
        }),
    ] {
        let (status, json, text) = post_webhook(&client, &relay, &headers, not_json).await;
        assert_eq!(
            (status, json),
            (401, json!({"error": "unauthorized"})),
            "{what}: {text}"
        );
    }
    // Control: the right key with that body is the 400 it would otherwise be.
    let (status, json, text) = post_webhook(&client, &relay, &json_key_headers(), not_json).await;
    assert_eq!(status, 400, "{text}");
    assert!(json["error"].is_string(), "{text}");
}

// --- live: exactly one frame per subscriber --------------------------------------------------

async fn one_frame_per_subscriber_under_concurrent_identical_deliveries(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let bot = "pin-storm";
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(subscribe(&relay, bot, None).await.0);
    }
    let marks: Vec<usize> = clients.iter().map(|c| c.raw_frames().len()).collect();
    assert_eq!(marks, vec![2, 2, 2], "connected and snapshot, nothing else");

    let body = json!({"event": "bot.status_change", "data": {"bot_id": bot, "status": {"code": "joining_call"}}}).to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (base, body) = (relay.base.clone(), body.clone());
        tasks.spawn(async move {
            let client = http();
            for _ in 0..40 {
                let resp = client
                    .post(format!("{base}/api/meeting-bot/webhook"))
                    .header("content-type", "application/json")
                    .header("x-meeting-baas-api-key", API_KEY)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("send");
                let status = resp.status().as_u16();
                let json: Value = resp.json().await.unwrap_or(Value::Null);
                if status != 503 {
                    return (status, json);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (503, Value::Null)
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (status, json) = r.expect("task");
        assert_eq!(status, 200, "{json}");
        answers.push(json);
    }
    let fresh = answers.iter().filter(|a| a["duplicate"] == false).count();
    assert_eq!(fresh, 1, "exactly one delivery stored: {answers:?}");
    let ids: HashSet<String> = answers
        .iter()
        .map(|a| a["event_id"].as_str().expect("event_id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one event id for all 50: {ids:?}");
    let event_id = json!(ids.into_iter().next().expect("id"));

    // A later event for the same bot: once it has arrived, any second fan-out of the first
    // (an earlier stream record) would have arrived before it.
    let sentinel = deliver_keyed(&relay, &status_change(bot, 99)).await;
    for (c, mark) in clients.iter_mut().zip(marks) {
        until_event(c, &sentinel["event_id"]).await;
        let after = c.drain(QUIET).await;
        assert!(after.is_empty(), "nothing after the sentinel: {after:?}");
        let frames: Vec<Value> = c.raw_frames()[mark..]
            .iter()
            .map(|t| parse_frame(t))
            .collect();
        let of_event = frames.iter().filter(|f| f["event_id"] == event_id).count();
        assert_eq!(of_event, 1, "raw frames of the stored event: {frames:?}");
        assert_eq!(
            frames.len(),
            2,
            "the event and the sentinel, nothing else: {frames:?}"
        );
        assert_eq!(
            (frames[0]["seq"].as_u64(), frames[1]["seq"].as_u64()),
            (Some(1), Some(2))
        );
    }
}

// --- REST ----------------------------------------------------------------------------------

async fn rest_paging_bounds_and_not_found(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let bot = "pin-pages";
    let tok = read_token(&[bot]);
    let mut posted = Vec::new();
    for n in 0..25 {
        posted.push(deliver_keyed(&relay, &status_change(bot, n)).await["event_id"].clone());
    }
    let mut since = 0;
    let mut got = Vec::new();
    for (len, more, next) in [(10, true, 10), (10, true, 20), (5, false, 25)] {
        let (s, page) = get_json(
            &relay,
            &format!("/api/meeting-bot/{bot}/events?since={since}&limit=10"),
            &tok,
        )
        .await;
        assert_eq!(s, 200, "{page}");
        assert_eq!(
            keys(&page),
            set(&["bot_id", "events", "more", "next_since"])
        );
        assert_eq!(page["bot_id"], bot);
        let events = page["events"].as_array().expect("events");
        assert_eq!(events.len(), len, "page after {since}");
        let seqs: Vec<u64> = events
            .iter()
            .map(|e| e["seq"].as_u64().expect("seq"))
            .collect();
        assert_eq!(
            seqs,
            ((since + 1)..=(since + len as u64)).collect::<Vec<_>>()
        );
        assert_eq!(
            (page["more"].as_bool(), page["next_since"].as_u64()),
            (Some(more), Some(next)),
            "page after {since}"
        );
        got.extend(events.iter().map(|e| e["event_id"].clone()));
        since = page["next_since"].as_u64().expect("next_since");
    }
    assert_eq!(got, posted, "the pages are every event, in arrival order");
    // Past the end: an empty page that stays where it is.
    let (s, end) = get_json(
        &relay,
        &format!("/api/meeting-bot/{bot}/events?since=25&limit=10"),
        &tok,
    )
    .await;
    assert_eq!(
        (
            s,
            end["events"].as_array().map(Vec::len),
            end["more"].as_bool(),
            end["next_since"].as_u64()
        ),
        (200, Some(0), Some(false), Some(25))
    );
    // No parameters: from the start, up to the default page of 100.
    let (s, all) = get_json(&relay, &format!("/api/meeting-bot/{bot}/events"), &tok).await;
    assert_eq!(
        (
            s,
            all["events"].as_array().map(Vec::len),
            all["more"].as_bool()
        ),
        (200, Some(25), Some(false))
    );

    // limit bounds: 1 to 1000.
    for (limit, want) in [
        ("0", 400),
        ("1001", 400),
        ("-1", 400),
        ("ten", 400),
        ("1", 200),
        ("1000", 200),
    ] {
        let (s, v) = get_json(
            &relay,
            &format!("/api/meeting-bot/{bot}/events?limit={limit}"),
            &tok,
        )
        .await;
        assert_eq!(s, want, "limit={limit}: {v}");
        if want == 400 {
            assert!(
                v["error"].as_str().is_some_and(|e| e.contains("limit")),
                "{v}"
            );
        }
    }
    let (_, one) = get_json(
        &relay,
        &format!("/api/meeting-bot/{bot}/events?limit=1"),
        &tok,
    )
    .await;
    assert_eq!(
        (
            one["events"].as_array().map(Vec::len),
            one["more"].as_bool()
        ),
        (Some(1), Some(true))
    );
    let (_, big) = get_json(
        &relay,
        &format!("/api/meeting-bot/{bot}/events?limit=1000"),
        &tok,
    )
    .await;
    assert_eq!(
        (
            big["events"].as_array().map(Vec::len),
            big["more"].as_bool()
        ),
        (Some(25), Some(false))
    );

    // 404s: a bot with no session, an event id that is not there (well-formed or not), and
    // another bot's event id.
    let all = read_token(&["*"]);
    let other = "pin-pages-other";
    let other_event = deliver_keyed(&relay, &status_change(other, 0)).await["event_id"].clone();
    let missing = [
        "/api/meeting-bot/pin-nobody/status".to_owned(),
        format!("/api/meeting-bot/{bot}/events/evt_00000000000000000000000000000000"),
        format!("/api/meeting-bot/{bot}/events/not-an-event-id"),
        format!(
            "/api/meeting-bot/{bot}/events/{}",
            other_event.as_str().expect("id")
        ),
    ];
    for path in missing {
        let (s, v) = get_json(&relay, &path, &all).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert!(v["error"].is_string() && keys(&v) == set(&["error"]), "{v}");
    }
    // Control: the same routes answer for what exists.
    let (s, _) = get_json(&relay, &format!("/api/meeting-bot/{other}/status"), &all).await;
    assert_eq!(s, 200);
    let (s, _) = get_json(
        &relay,
        &format!(
            "/api/meeting-bot/{other}/events/{}",
            other_event.as_str().expect("id")
        ),
        &all,
    )
    .await;
    assert_eq!(s, 200);
}

async fn rest_event_has_every_field(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let bot = "pin-fields";
    let tok = read_token(&[bot]);
    // Odd spacing, member order, a number spelt 1.0e2 and escapes: kept byte for byte.
    let body = format!(
        "{{ \"data\" : {{\"status\":{{\"created_at\":\"2026-11-29T09:00:00.000Z\",\"code\":\"joining_call\"}},\n  \"bot_id\":\"{bot}\", \"note\":\"caf\\u00e9 \\\"q\\\"\"}},\"event\":\"bot.status_change\",\"z\":1.0e2 }}"
    );
    serde_json::from_str::<Value>(&body).expect("the test body is JSON");
    let accepted = deliver_keyed(&relay, &body).await;
    assert_eq!(
        keys(&accepted),
        set(&["status", "event_id", "bot_id", "event", "duplicate"])
    );
    assert_eq!(
        (
            &accepted["status"],
            &accepted["bot_id"],
            &accepted["event"],
            &accepted["duplicate"]
        ),
        (
            &json!("accepted"),
            &json!(bot),
            &json!("bot.status_change"),
            &json!(false)
        )
    );
    let id = accepted["event_id"].as_str().expect("event_id");
    let path = format!("/api/meeting-bot/{bot}/events/{id}");
    let (s, _, text) = get(&relay, &path, Some(&tok)).await;
    assert_eq!(s, 200, "{text}");
    let e: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        keys(&e),
        set(&[
            "event_id",
            "bot_id",
            "seq",
            "event",
            "source_event",
            "family",
            "status",
            "status_code",
            "timestamp",
            "payload"
        ])
    );
    assert_eq!(e["event_id"], id);
    assert_eq!(e["bot_id"], bot);
    assert_eq!(e["seq"], 1);
    assert_eq!(e["event"], "bot.status_change");
    assert_eq!(e["source_event"], "bot.status_change");
    assert_eq!(e["family"], "v1");
    assert_eq!(e["status"], "joining");
    assert_eq!(e["status_code"], "joining_call");
    assert_rfc3339_near_now(&e["timestamp"], "timestamp");
    assert_eq!(
        raw_payload(&text),
        body,
        "payload byte-identical to the body"
    );

    // A seed event: no status code (null, not absent), family seed.
    let seed = json!({"type": "meeting.started", "data": {"botId": bot}}).to_string();
    let accepted = deliver_keyed(&relay, &seed).await;
    let (s, _, text) = get(
        &relay,
        &format!(
            "/api/meeting-bot/{bot}/events/{}",
            accepted["event_id"].as_str().expect("id")
        ),
        Some(&tok),
    )
    .await;
    assert_eq!(s, 200);
    let e2: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(keys(&e2), keys(&e));
    assert_eq!(
        (
            &e2["seq"],
            &e2["event"],
            &e2["source_event"],
            &e2["family"],
            &e2["status_code"]
        ),
        (
            &json!(2),
            &json!("meeting.started"),
            &json!("meeting.started"),
            &json!("seed"),
            &Value::Null
        )
    );
    assert_eq!(raw_payload(&text), seed);

    // The list route carries the same objects.
    let (_, _, text) = get(
        &relay,
        &format!("/api/meeting-bot/{bot}/events"),
        Some(&tok),
    )
    .await;
    let list: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(list["events"], json!([e, e2]));
}

// --- WebSocket -----------------------------------------------------------------------------

async fn ws_message_fields(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let bot = "pin-ws-fields";
    let tok = read_token(&[bot]);
    let (mut c, snap) = subscribe(&relay, bot, None).await;
    assert_eq!(
        snap,
        Some(
            json!({"type": "status_update", "bot_id": bot, "status": null, "last_updated": null, "session": null, "seq": 0})
        ),
        "the snapshot of a bot with no session yet"
    );

    let body = json!({"event": "bot.status_change", "data": {"bot_id": bot, "status": {"code": "joining_call", "created_at": "2026-11-29T09:00:00.000Z"}, "extra_field": [1, 2]}}).to_string();
    let accepted = deliver_keyed(&relay, &body).await;
    let m = next_event(&mut c, bot).await;
    assert_eq!(
        keys(&m),
        set(&[
            "type",
            "bot_id",
            "status",
            "timestamp",
            "event",
            "source_event",
            "event_id",
            "seq",
            "data",
            "status_code"
        ]),
        "{m}"
    );
    let (_, rest) = get_json(
        &relay,
        &format!(
            "/api/meeting-bot/{bot}/events/{}",
            accepted["event_id"].as_str().expect("id")
        ),
        &tok,
    )
    .await;
    let sent: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(m["type"], "status_update");
    assert_eq!(m["bot_id"], bot);
    assert_eq!(m["status"], "joining");
    assert_eq!(m["status_code"], "joining_call");
    assert_eq!(m["event"], "bot.status_change");
    assert_eq!(m["source_event"], "bot.status_change");
    assert_eq!(m["event_id"], accepted["event_id"]);
    assert_eq!(m["seq"], 1);
    assert_eq!(m["data"], sent["data"], "data is the body's data");
    assert_eq!(m["timestamp"], rest["timestamp"], "the stored event's time");
    assert_rfc3339_near_now(&m["timestamp"], "timestamp");

    // An event without a status code has exactly the contract's nine fields.
    let seed = json!({"type": "meeting.started", "data": {"botId": bot, "k": "v"}}).to_string();
    let accepted2 = deliver_keyed(&relay, &seed).await;
    let m2 = next_event(&mut c, bot).await;
    assert_eq!(
        keys(&m2),
        set(&[
            "type",
            "bot_id",
            "status",
            "timestamp",
            "event",
            "source_event",
            "event_id",
            "seq",
            "data"
        ]),
        "{m2}"
    );
    assert_eq!(
        (
            &m2["event"],
            &m2["source_event"],
            &m2["event_id"],
            &m2["seq"],
            &m2["data"]
        ),
        (
            &json!("meeting.started"),
            &json!("meeting.started"),
            &accepted2["event_id"],
            &json!(2),
            &json!({"botId": bot, "k": "v"})
        )
    );

    // The snapshot of a bot with a session: its fields, and the same object REST's status is.
    let (mut c2, snap) = subscribe(&relay, bot, None).await;
    let snap = snap.expect("snapshot");
    assert_eq!(
        keys(&snap),
        set(&["type", "bot_id", "status", "last_updated", "session", "seq"]),
        "{snap}"
    );
    assert_eq!(
        (&snap["type"], &snap["bot_id"], &snap["seq"]),
        (&json!("status_update"), &json!(bot), &json!(2))
    );
    assert_eq!(
        snap["status"], m2["status"],
        "the status after the last event"
    );
    assert_rfc3339_near_now(&snap["last_updated"], "last_updated");
    let session = &snap["session"];
    assert_eq!(
        keys(session),
        set(&[
            "status",
            "status_code",
            "last_event",
            "last_event_id",
            "meeting_started",
            "error",
            // The retry attempt of a v2 bot (the session lifecycle): null until a `retrying`.
            "attempt",
            "max",
            "created_at",
            "last_updated"
        ]),
        "{session}"
    );
    assert_eq!(session["status"], snap["status"]);
    assert_eq!(session["last_updated"], snap["last_updated"]);
    assert_eq!(session["last_event"], "meeting.started");
    assert_eq!(session["last_event_id"], accepted2["event_id"]);
    assert_eq!(session["meeting_started"], true);
    assert_eq!(
        session["status_code"], "joining_call",
        "the last code received"
    );
    assert_rfc3339_near_now(&session["created_at"], "created_at");
    let (s, status) = get_json(&relay, &format!("/api/meeting-bot/{bot}/status"), &tok).await;
    assert_eq!((s, &status), (200, &snap), "REST status is the snapshot");
    assert!(c.drain(QUIET).await.is_empty());
    assert!(c2.drain(QUIET).await.is_empty());
}

async fn unsubscribe_stops_delivery(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let (bot, other) = ("pin-unsub", "pin-unsub-other");
    let mut c = WsClient::connect(&relay, &read_token(&[bot, other]))
        .await
        .expect("connect");
    subscribe_on(&mut c, bot, None).await;
    subscribe_on(&mut c, other, None).await;
    let (mut witness, _) = subscribe(&relay, bot, None).await;
    let first = deliver_keyed(&relay, &status_change(bot, 0)).await;
    assert_eq!(next_event(&mut c, bot).await["event_id"], first["event_id"]);
    assert_eq!(
        next_event(&mut witness, bot).await["event_id"],
        first["event_id"]
    );

    c.send(json!({"action": "unsubscribe", "bot_id": bot}));
    // The socket's messages are handled in order: the heartbeat means the unsubscribe is done.
    c.send(json!({"action": "ping"}));
    let hb = c.next(WAIT).await.expect("heartbeat");
    assert_eq!(keys(&hb), set(&["type", "timestamp"]), "{hb}");
    assert_eq!(hb["type"], "heartbeat", "unsubscribe answers nothing: {hb}");
    assert_rfc3339_near_now(&hb["timestamp"], "heartbeat timestamp");

    let second = deliver_keyed(&relay, &status_change(bot, 1)).await;
    let kept = deliver_keyed(&relay, &status_change(other, 0)).await;
    // Controls: the fan-out ran (the witness got it) and the socket still receives its other bot.
    assert_eq!(
        next_event(&mut witness, bot).await["event_id"],
        second["event_id"]
    );
    let seen = until_event(&mut c, &kept["event_id"]).await;
    let late = c.drain(QUIET).await;
    let of_bot: Vec<&Value> = seen
        .iter()
        .chain(late.iter())
        .filter(|m| m["bot_id"] == bot)
        .collect();
    assert!(
        of_bot.is_empty(),
        "messages of an unsubscribed bot: {of_bot:?}"
    );
}

async fn replay_longer_than_a_page_is_whole_and_in_order(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let bot = "pin-replay";
    const N: usize = 230;
    // Four senders at a time; the seq is the arrival order, whatever it is.
    let mut tasks = tokio::task::JoinSet::new();
    let relay = std::sync::Arc::new(relay);
    for w in 0..4 {
        let relay = relay.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for n in (w..N).step_by(4) {
                ids.push(deliver_keyed(&relay, &status_change(bot, n)).await["event_id"].clone());
            }
            ids
        });
    }
    let mut posted = HashSet::new();
    while let Some(ids) = tasks.join_next().await {
        posted.extend(
            ids.expect("task")
                .into_iter()
                .map(|v| v.as_str().expect("id").to_owned()),
        );
    }
    assert_eq!(posted.len(), N);
    let (s, list) = get_json(
        &relay,
        &format!("/api/meeting-bot/{bot}/events?limit=1000"),
        &read_token(&[bot]),
    )
    .await;
    assert_eq!(s, 200);
    let stored: Vec<Value> = list["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_id"].clone())
        .collect();

    let (mut c, _) = subscribe(&relay, bot, Some(0)).await;
    let mark = c.raw_frames().len();
    let mut replayed = Vec::new();
    for _ in 0..N {
        replayed.push(next_event(&mut c, bot).await);
    }
    let seqs: Vec<u64> = replayed
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=N as u64).collect::<Vec<_>>(),
        "whole and in order"
    );
    let ids: Vec<Value> = replayed.iter().map(|m| m["event_id"].clone()).collect();
    assert_eq!(ids, stored, "the stored events, in seq order");
    let live = deliver_keyed(&relay, &status_change(bot, N)).await;
    let m = next_event(&mut c, bot).await;
    assert_eq!(
        (&m["event_id"], m["seq"].as_u64()),
        (&live["event_id"], Some(N as u64 + 1)),
        "then live"
    );
    assert!(c.drain(QUIET).await.is_empty(), "nothing more");
    assert_eq!(
        c.raw_frames().len() - mark,
        N + 1,
        "raw frames: each event once"
    );
}

async fn error_messages(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let mut c = WsClient::connect(&relay, &read_token(&["*"]))
        .await
        .expect("connect");
    for bad in [
        json!({"action": "subscribe", "bot_id": "a/b"}),
        json!({"action": "subscribe", "bot_id": 42}),
        json!({"action": "subscribe"}),
        json!({"action": "unsubscribe", "bot_id": ".."}),
    ] {
        c.send(bad.clone());
        assert_eq!(
            c.next(WAIT).await,
            Some(
                json!({"type": "error", "code": "invalid_bot_id", "message": "bot_id must be a valid bot id"})
            ),
            "{bad}"
        );
    }
    for bad in [
        json!({"action": "dance"}),
        json!({"bot_id": "x"}),
        json!({"action": null}),
    ] {
        c.send(bad.clone());
        assert_eq!(
            c.next(WAIT).await,
            Some(
                json!({"type": "error", "code": "unknown_action", "message": "action must be subscribe, unsubscribe or ping"})
            ),
            "{bad}"
        );
    }
    // What is not a JSON object with a string action: bad_message.
    for bad in [json!({"action": 7}), json!("subscribe"), json!([1])] {
        c.send(bad.clone());
        assert_eq!(
            c.next(WAIT).await,
            Some(
                json!({"type": "error", "code": "bad_message", "message": "messages are JSON objects with an action"})
            ),
            "{bad}"
        );
    }
    let _ = c.tx.unbounded_send("not json".to_owned());
    assert_eq!(
        c.next(WAIT).await.map(|v| v["code"].clone()),
        Some(json!("bad_message"))
    );
    // The socket stays usable after a refusal.
    c.send(json!({"action": "ping"}));
    assert_eq!(
        c.next(WAIT).await.map(|v| v["type"].clone()),
        Some(json!("heartbeat"))
    );
}

async fn a_200_kb_plain_field_is_truncated_live_and_whole_over_rest(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let bot = "pin-note";
    let (mut c, _) = subscribe(&relay, bot, None).await;
    let mark = c.raw_frames().len();
    let body = json!({"kind": "memo", "data": {"bot_id": bot, "note": "n".repeat(200 * 1024)}})
        .to_string();
    let accepted = deliver_keyed(&relay, &body).await;
    assert_eq!(accepted["event"], "unknown");
    let m = next_event(&mut c, bot).await;
    let frame = &c.raw_frames()[mark];
    assert!(frame.len() < 128 * 1024, "a frame of {} bytes", frame.len());
    assert_eq!(&parse_frame(frame), &m);
    assert_eq!(
        (
            &m["truncated"],
            &m["event_id"],
            &m["seq"],
            &m["event"],
            &m["source_event"]
        ),
        (
            &json!(true),
            &accepted["event_id"],
            &json!(1),
            &json!("unknown"),
            &json!("unknown")
        ),
        "{}",
        &frame[..frame.len().min(500)]
    );
    let (s, _, text) = get(
        &relay,
        &format!(
            "/api/meeting-bot/{bot}/events/{}",
            accepted["event_id"].as_str().expect("id")
        ),
        Some(&read_token(&[bot])),
    )
    .await;
    assert_eq!(s, 200);
    assert!(raw_payload(&text) == body, "the whole event over REST");
}

// --- source_event and canonical events ------------------------------------------------------

async fn every_fixture_keeps_its_source_event(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let all = read_token(&["*"]);
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&fixtures)
        .expect("fixtures dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 23, "fixtures: {names:?}");
    for name in names {
        let body = fixture(&name);
        let v: Value = serde_json::from_str(&body).expect("fixture JSON");
        let headers = if name.starts_with("v2-callback-") {
            vec![
                ("content-type", "application/json".to_owned()),
                ("x-mb-secret", CALLBACK_SECRET.to_owned()),
            ]
        } else {
            json_key_headers()
        };
        let accepted = deliver(&relay, &headers, &body).await;
        assert_eq!(accepted["duplicate"], false, "{name}");
        let bot = accepted["bot_id"].as_str().expect("bot_id");
        let (s, _, text) = get(
            &relay,
            &format!(
                "/api/meeting-bot/{bot}/events/{}",
                accepted["event_id"].as_str().expect("id")
            ),
            Some(&all),
        )
        .await;
        assert_eq!(s, 200, "{name}: {text}");
        let e: Value = serde_json::from_str(&text).expect("json");
        let want = v["event"]
            .as_str()
            .or(v["type"].as_str())
            .unwrap_or("unknown");
        assert_eq!(e["source_event"], want, "{name}");
        assert_eq!(e["event"], accepted["event"], "{name}");
        // The payload is the body's JSON text byte for byte (the file's trailing newline is
        // whitespace around the value, not part of it).
        assert_eq!(
            raw_payload(&text),
            body.trim(),
            "{name}: kept byte for byte"
        );
    }
    // The account-level calendar event is kept under the reserved bot id.
    let (s, list) = get_json(&relay, "/api/meeting-bot/calendar/events", &all).await;
    assert_eq!(s, 200);
    assert_eq!(
        list["events"][0]["source_event"], "calendar.sync_events",
        "{list}"
    );
}

async fn shapes_give_the_canonical_events(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let all = read_token(&["*"]);
    // (body, canonical event, family); each to a bot of its own.
    let rows = [
        (
            json!({"type": "meeting.started", "data": {"botId": "s-started"}}),
            "meeting.started",
            "seed",
        ),
        (
            json!({"type": "meeting.completed", "data": {"botId": "s-completed"}}),
            "meeting.completed",
            "seed",
        ),
        (
            json!({"type": "meeting.failed", "data": {"bot_id": "s-failed"}}),
            "meeting.failed",
            "seed",
        ),
        (
            json!({"type": "transcription.available", "data": {"botId": "s-transcript"}}),
            "transcription.available",
            "seed",
        ),
        (
            json!({"type": "transcription.updated", "data": {"botId": "s-transcript-up"}}),
            "transcription.updated",
            "seed",
        ),
        (
            json!({"event": "complete", "data": {"bot_id": "v1-complete"}}),
            "meeting.completed",
            "v1",
        ),
        (
            json!({"event": "failed", "data": {"bot_id": "v1-failed"}}),
            "meeting.failed",
            "v1",
        ),
        (
            json!({"event": "transcription_complete", "data": {"bot_id": "v1-tr"}}),
            "transcription.available",
            "v1",
        ),
        (
            json!({"event": "bot.status_change", "data": {"bot_id": "v1-join", "status": {"code": "joining_call"}}}),
            "bot.status_change",
            "v1",
        ),
        (
            json!({"event": "bot.status_change", "data": {"bot_id": "v1-incall", "status": {"code": "in_call_recording"}}}),
            "meeting.started",
            "v1",
        ),
        (
            json!({"event": "bot.completed", "data": {"bot_id": "v2-completed"}}),
            "meeting.completed",
            "v2",
        ),
        (
            json!({"event": "bot.failed", "data": {"bot_id": "v2-failed", "error_code": "X"}}),
            "meeting.failed",
            "v2",
        ),
        (
            json!({"event": "bot.chat_message", "data": {"bot_id": "v2-chat", "text": "hi"}}),
            "chat.message",
            "v2",
        ),
        (
            json!({"event": "bot.status_change", "data": {"bot_id": "v2-join", "event_id": null, "status": {"code": "joining_call"}}, "extra": {}}),
            "bot.status_change",
            "v2",
        ),
        (
            json!({"event": "something.new", "data": {"bot_id": "u-named"}}),
            "unknown",
            "unknown",
        ),
        (
            json!({"kind": "mystery", "bot_id": "u-shapeless"}),
            "unknown",
            "unknown",
        ),
    ];
    for (body, want, family) in rows {
        let text = body.to_string();
        let accepted = deliver_keyed(&relay, &text).await;
        assert_eq!(accepted["event"], want, "{text}");
        let bot = accepted["bot_id"].as_str().expect("bot");
        let (s, e) = get_json(
            &relay,
            &format!(
                "/api/meeting-bot/{bot}/events/{}",
                accepted["event_id"].as_str().expect("id")
            ),
            &all,
        )
        .await;
        assert_eq!(s, 200, "{text}: {e}");
        let source = body["event"]
            .as_str()
            .or(body["type"].as_str())
            .unwrap_or("unknown");
        assert_eq!(
            (&e["event"], &e["source_event"], &e["family"]),
            (&json!(want), &json!(source), &json!(family)),
            "{text}"
        );
    }
}

macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() { super::$case(super::Mode::Sqlite).await }
            )*
        }
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() { super::$case(super::Mode::Moto).await }
            )*
        }
    };
}

both_stores!(
    key_precedence_end_to_end,
    one_frame_per_subscriber_under_concurrent_identical_deliveries,
    rest_paging_bounds_and_not_found,
    rest_event_has_every_field,
    ws_message_fields,
    unsubscribe_stops_delivery,
    replay_longer_than_a_page_is_whole_and_in_order,
    error_messages,
    a_200_kb_plain_field_is_truncated_live_and_whole_over_rest,
    every_fixture_keeps_its_source_event,
    shapes_give_the_canonical_events,
);

// --- store-independent routes (SQLite) --------------------------------------------------------

mod routes {
    use super::*;
    use std::sync::{Arc, Mutex};

    const STARTED_BOT: &str = "7c2e9a10-5b3d-4f8e-a1c2-9d8e7f6a5b40";

    /// A fake MeetingBaaS that records each request (method, path) and starts bots.
    async fn fake_meetingbaas() -> (Arc<Mutex<Vec<(String, String)>>>, String) {
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |method: http::Method, uri: http::Uri| {
            let record = record.clone();
            async move {
                record
                    .lock()
                    .expect("lock")
                    .push((method.to_string(), uri.path().to_owned()));
                match (method.as_str(), uri.path()) {
                    ("POST", "/bots/") => axum::Json(json!({"bot_id": STARTED_BOT})),
                    _ => axum::Json(json!({"ok": true})),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (seen, format!("http://{addr}"))
    }

    async fn post(relay: &Relay, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = http().post(relay.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    fn claims_of(token: &str) -> (Value, Value) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "a JWT: {token}");
        let part = |p: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64url")).expect("json")
        };
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64url");
        assert_eq!(
            sig,
            hs256(
                CLIENT_SECRET.as_bytes(),
                format!("{}.{}", parts[0], parts[1]).as_bytes()
            ),
            "HS256 with RELAY_CLIENT_SECRET"
        );
        (part(parts[0]), part(parts[1]))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn start_hands_back_a_12_hour_read_token_and_stop_needs_control() {
        let (seen, fake) = fake_meetingbaas().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let relay = start(Mode::Sqlite, dir.path(), &[("MEETINGBAAS_API_URL", &fake)]);
        let control = client_token(&["*"], "control");
        let (s, out) = post(
            &relay,
            "/api/meeting-bot/start",
            Some(&control),
            json!({"meeting_url": "https://meet.google.com/abc-defg-hij"}),
        )
        .await;
        assert_eq!(s, 200, "{out}");
        assert_eq!(keys(&out), set(&["bot_id", "status", "token"]));
        assert_eq!(
            (&out["bot_id"], &out["status"]),
            (&json!(STARTED_BOT), &json!("starting"))
        );
        let token = out["token"].as_str().expect("token");
        let (header, claims) = claims_of(token);
        assert_eq!(header["alg"], "HS256");
        assert_eq!(claims["scope"], "read");
        assert_eq!(claims["bots"], json!([STARTED_BOT]));
        assert!(claims["sub"].is_string(), "{claims}");
        let ttl = claims["exp"].as_i64().expect("exp") - chrono::Utc::now().timestamp();
        assert!(
            (12 * 3600 - 300..=12 * 3600).contains(&ttl),
            "expires in {ttl} s, not ~12 h"
        );
        let (s, snap) = get_json(
            &relay,
            &format!("/api/meeting-bot/{STARTED_BOT}/status"),
            token,
        )
        .await;
        assert_eq!((s, &snap["status"]), (200, &json!("starting")));
        assert_eq!(
            seen.lock().expect("lock").clone(),
            vec![("POST".to_owned(), "/bots/".to_owned())]
        );

        let stop = format!("/api/meeting-bot/{STARTED_BOT}/stop");
        let (s, out) = post(&relay, &stop, None, json!({})).await;
        assert_eq!(s, 401, "{out}");
        assert!(out["error"].is_string(), "{out}");
        let (s, out) = post(&relay, &stop, Some(token), json!({})).await;
        assert_eq!(s, 403, "the start token is read scope: {out}");
        assert!(out["error"].is_string(), "{out}");
        let (s, _) = post(
            &relay,
            &stop,
            Some(&client_token(&["another-bot"], "control")),
            json!({}),
        )
        .await;
        assert_eq!(s, 403, "control of another bot");
        assert_eq!(
            seen.lock().expect("lock").len(),
            1,
            "nothing refused reached MeetingBaaS"
        );
        // Control: a control token for the bot stops it.
        let (s, out) = post(
            &relay,
            &stop,
            Some(&client_token(&[STARTED_BOT], "control")),
            json!({}),
        )
        .await;
        assert_eq!((s, &out["stopped"]), (200, &json!(true)), "{out}");
        assert_eq!(
            seen.lock().expect("lock").last().cloned(),
            Some(("DELETE".to_owned(), format!("/bots/{STARTED_BOT}")))
        );
    }

    fn cors_headers(h: &http::HeaderMap) -> Vec<String> {
        h.keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k.starts_with("access-control-"))
            .collect()
    }

    async fn with_origin(
        relay: &Relay,
        method: http::Method,
        path: &str,
        origin: &str,
        token: Option<&str>,
    ) -> (u16, http::HeaderMap) {
        let mut req = http()
            .request(method, relay.url(path))
            .header("origin", origin);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("send");
        (resp.status().as_u16(), resp.headers().clone())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn cors_echoes_an_allowed_origin_and_says_nothing_to_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allowed = "https://app.example.com";
        let relay = start(
            Mode::Sqlite,
            dir.path(),
            &[(
                "CORS_ALLOW_ORIGINS",
                "https://other.example.org, https://app.example.com",
            )],
        );
        let bot = "pin-cors";
        let accepted = deliver_keyed(&relay, &status_change(bot, 0)).await;
        let tok = read_token(&[bot]);
        let paths = [
            format!("/api/meeting-bot/{bot}/status"),
            format!("/api/meeting-bot/{bot}/events"),
            format!(
                "/api/meeting-bot/{bot}/events/{}",
                accepted["event_id"].as_str().expect("id")
            ),
        ];
        for path in &paths {
            let (s, h) = with_origin(&relay, http::Method::GET, path, allowed, Some(&tok)).await;
            assert_eq!(s, 200, "{path}");
            assert_eq!(
                h.get("access-control-allow-origin")
                    .and_then(|v| v.to_str().ok()),
                Some(allowed),
                "GET {path}"
            );
            let (s, h) = with_origin(&relay, http::Method::OPTIONS, path, allowed, None).await;
            assert_eq!(s, 204, "OPTIONS {path}");
            assert_eq!(
                h.get("access-control-allow-origin")
                    .and_then(|v| v.to_str().ok()),
                Some(allowed),
                "OPTIONS {path}"
            );
            let allow_headers = h
                .get("access-control-allow-headers")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase();
            assert!(
                allow_headers.contains("authorization"),
                "OPTIONS {path}: {h:?}"
            );
            let methods = h
                .get("access-control-allow-methods")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(methods.contains("GET"), "OPTIONS {path}: {h:?}");
        }
        // The control routes' preflight too.
        let (s, h) = with_origin(
            &relay,
            http::Method::OPTIONS,
            "/api/meeting-bot/start",
            allowed,
            None,
        )
        .await;
        assert_eq!(s, 204);
        assert_eq!(
            h.get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some(allowed)
        );
        let methods = h
            .get("access-control-allow-methods")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(methods.contains("POST"), "{h:?}");

        // Refused origins (a prefix and a suffix of an allowed one too) get no CORS headers.
        for origin in [
            "https://evil.example",
            "https://app.example.com.evil.example",
            "https://app.example.co",
            "http://app.example.com",
        ] {
            for path in &paths {
                let (s, h) = with_origin(&relay, http::Method::GET, path, origin, Some(&tok)).await;
                assert_eq!(s, 200, "{origin} GET {path}");
                assert_eq!(
                    cors_headers(&h),
                    Vec::<String>::new(),
                    "{origin} GET {path}"
                );
                let (_, h) = with_origin(&relay, http::Method::OPTIONS, path, origin, None).await;
                assert_eq!(
                    cors_headers(&h),
                    Vec::<String>::new(),
                    "{origin} OPTIONS {path}"
                );
            }
        }
        // No Origin, no CORS headers.
        let (_, h, _) = get(&relay, &paths[0], Some(&tok)).await;
        assert_eq!(cors_headers(&h), Vec::<String>::new());

        // Without CORS_ALLOW_ORIGINS no origin is allowed.
        let dir2 = tempfile::tempdir().expect("tempdir");
        let plain = start(Mode::Sqlite, dir2.path(), &[]);
        deliver_keyed(&plain, &status_change(bot, 0)).await;
        let (s, h) = with_origin(&plain, http::Method::GET, &paths[0], allowed, Some(&tok)).await;
        assert_eq!(s, 200);
        assert_eq!(cors_headers(&h), Vec::<String>::new());
    }

    /// A non-loopback peer cannot be made on this machine, so the refusal of one by
    /// `/@connections` and `/api/dev/*` is not pinned here; what is: the development helpers
    /// are off when real secrets are configured, and on (for this machine) when none are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn dev_routes_are_absent_when_real_secrets_are_configured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let relay = start(Mode::Sqlite, dir.path(), &[]);
        let (s, _, info) = get(&relay, "/api/dev/info", None).await;
        assert_eq!(
            (s, serde_json::from_str::<Value>(&info).ok()),
            (200, Some(json!({"development": false})))
        );
        for (path, body) in [
            ("/api/dev/token", json!({"bot_id": "pin-dev"})),
            (
                "/api/dev/test-event",
                json!({"bot_id": "pin-dev", "type": "meeting.started"}),
            ),
        ] {
            let (s, out) = post(&relay, path, None, body).await;
            assert_eq!(s, 404, "{path}: {out}");
            assert!(
                out["error"].is_string() && keys(&out) == set(&["error"]),
                "{out}"
            );
        }
        let (s, _, _) = get(
            &relay,
            "/api/meeting-bot/pin-dev/status",
            Some(&read_token(&["*"])),
        )
        .await;
        assert_eq!(s, 404, "no test event was stored");

        // Control: with no secrets at all (development mode) the same helpers answer.
        let dir2 = tempfile::tempdir().expect("tempdir");
        let mut opts = RelayOptions::new(dir2.path());
        opts.bare = true;
        let dev = Relay::start(opts);
        let (s, _, info) = get(&dev, "/api/dev/info", None).await;
        assert_eq!(
            (s, serde_json::from_str::<Value>(&info).ok()),
            (200, Some(json!({"development": true})))
        );
        let (s, out) = post(&dev, "/api/dev/token", None, json!({"bot_id": "pin-dev"})).await;
        assert_eq!(s, 200, "{out}");
        let token = out["token"].as_str().expect("token").to_owned();
        let (s, out) = post(
            &dev,
            "/api/dev/test-event",
            None,
            json!({"bot_id": "pin-dev", "type": "meeting.started"}),
        )
        .await;
        assert_eq!(
            (s, &out["event"]),
            (200, &json!("meeting.started")),
            "{out}"
        );
        let (s, _, snap) = get(&dev, "/api/meeting-bot/pin-dev/status", Some(&token)).await;
        assert_eq!(s, 200, "{snap}");
    }

    /// What the axum Router fixed (each failed on the hand-written routing): the bearer scheme in
    /// any case, percent-decoded query values and path segments, and JSON bodies on every error
    /// the framework writes (405, 404).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn router_fixes_scheme_case_percent_decoding_and_json_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let relay = start(Mode::Sqlite, dir.path(), &[]);
        let bot = "pin-router";
        for n in 0..3 {
            deliver_keyed(&relay, &status_change(bot, n)).await;
        }
        let token = read_token(&[bot]);
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let resp = http()
                .get(relay.url(&format!("/api/meeting-bot/{bot}/status")))
                .header("authorization", format!("{scheme} {token}"))
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status().as_u16(), 200, "{scheme}");
        }
        for bad in [format!("Basic {token}"), token.clone(), "Bearer".to_owned()] {
            let resp = http()
                .get(relay.url(&format!("/api/meeting-bot/{bot}/status")))
                .header("authorization", bad.clone())
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status().as_u16(), 401, "{bad}");
        }
        // `%31` is `1`, `%32` is `2`; `pin%2Drouter` is `pin-router`.
        let (s, page) = get_json(
            &relay,
            &format!("/api/meeting-bot/{bot}/events?since=%31&limit=%32"),
            &token,
        )
        .await;
        assert_eq!(s, 200, "{page}");
        let seqs: Vec<u64> = page["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["seq"].as_u64())
            .collect();
        assert_eq!(seqs, vec![2, 3]);
        let (s, snap) = get_json(&relay, "/api/meeting-bot/pin%2Drouter/status", &token).await;
        assert_eq!((s, &snap["bot_id"]), (200, &json!(bot)), "{snap}");

        // Wrong methods and unknown paths: JSON errors, never an empty body.
        for (method, path, want) in [
            ("GET", "/api/meeting-bot/webhook".to_owned(), 405),
            ("PUT", "/api/meeting-bot/start".to_owned(), 405),
            ("DELETE", format!("/api/meeting-bot/{bot}/status"), 405),
            ("GET", format!("/api/meeting-bot/{bot}/stop"), 405),
            (
                "GET",
                "/api/meeting-bot/nothing/here/at/all".to_owned(),
                404,
            ),
            ("POST", "/no/such/route".to_owned(), 404),
        ] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let resp = http()
                .request(method.clone(), relay.url(&path))
                .send()
                .await
                .expect("send");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_eq!(status, want, "{method} {path}");
            assert!(
                body["error"].is_string() && keys(&body) == set(&["error"]),
                "{method} {path}: {body}"
            );
        }
    }
}
