//! Live updates end to end, on SQLite and on a DynamoDB-API server (moto): the real `relay
//! serve`, real WebSocket clients, real HTTP. The fan-out, the WebSocket routes and the REST
//! routes are the same handlers the Lambda functions run.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Sqlite,
    Moto,
}

/// How long to wait for a live message: the SQLite feed is immediate; moto's stream is polled
/// and moto itself is slow when the machine is busy.
const WAIT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_millis(700);

fn start(mode: Mode, dir: &std::path::Path, extra: &[&str]) -> Relay {
    start_with_tables(mode, dir, extra).0
}

/// Also returns the moto endpoint and connections table, for tests that reach into the store.
fn start_with_tables(
    mode: Mode,
    dir: &std::path::Path,
    extra: &[&str],
) -> (Relay, Option<(String, String)>) {
    let mut tables = None;
    let mut opts = RelayOptions::new(dir);
    opts.extra_args = extra.iter().map(|s| s.to_string()).collect();
    if let Mode::Moto = mode {
        let endpoint = std::env::var("RELAY_TEST_DYNAMODB_ENDPOINT")
            .expect("RELAY_TEST_DYNAMODB_ENDPOINT is not set: run scripts/test (it starts moto) or set it to a DynamoDB-API endpoint");
        let n: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        tables = Some((endpoint.clone(), format!("live-conns-{n:x}")));
        opts.extra_args.extend([
            "--dynamodb-endpoint".to_owned(),
            endpoint,
            "--events-table".to_owned(),
            format!("live-events-{n:x}"),
            "--connections-table".to_owned(),
            format!("live-conns-{n:x}"),
        ]);
    }
    (Relay::start(opts), tables)
}

/// The relay's connection store, opened beside it.
async fn connection_store(
    relay: &Relay,
    tables: &Option<(String, String)>,
) -> std::sync::Arc<dyn relay_core::ports::connections::ConnectionStore> {
    match tables {
        None => std::sync::Arc::new(
            relay_sqlite::connections::SqliteConnections::open(
                &relay.data_dir.join("connections.sqlite3"),
            )
            .expect("open"),
        ),
        Some((endpoint, table)) => {
            std::sync::Arc::new(relay_dynamodb::connections::DynamoConnections::new(
                relay_dynamodb::client_for(Some(endpoint)).await,
                table.clone(),
            ))
        }
    }
}

fn unique_bot(label: &str) -> String {
    format!("{label}-{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(7)
}

async fn post_status(relay: &Relay, bot: &str, n: usize) -> Value {
    let body = json!({"event": "bot.status_change", "data": {"bot_id": bot, "n": n, "status": {"code": "in_call_recording"}}});
    let (status, json, text) =
        post_webhook(&http(), relay, &json_key_headers(), body.to_string()).await;
    assert_eq!(status, 200, "{text}");
    json
}

async fn subscribed(relay: &Relay, bot: &str, since: Option<u64>) -> WsClient {
    let mut c = WsClient::connect(relay, &token(&[bot], 3600))
        .await
        .expect("connect");
    let mut msg = json!({"action": "subscribe", "bot_id": bot});
    if let Some(s) = since {
        msg["since"] = json!(s);
    }
    c.send(msg);
    let first = c.next(WAIT).await.expect("connected message");
    assert_eq!(first, json!({"type": "connected", "bot_id": bot}));
    match since {
        Some(s) => c.resume_from(bot, s),
        None => {
            let snap = c.next(WAIT).await.expect("snapshot");
            assert_eq!(
                (snap["type"].as_str(), snap["bot_id"].as_str()),
                (Some("status_update"), Some(bot))
            );
            c.resume_from(bot, snap["seq"].as_u64().expect("snapshot seq"));
        }
    }
    c
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

async fn clients_get_exactly_their_bots_events(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let (a, b) = (unique_bot("a"), unique_bot("b"));
    let mut c1 = subscribed(&relay, &a, None).await;
    let mut c2 = subscribed(&relay, &a, None).await;
    let mut c3 = subscribed(&relay, &b, None).await;
    for i in 0..5 {
        post_status(&relay, &a, i).await;
        if i < 3 {
            post_status(&relay, &b, i).await;
        }
    }
    for c in [&mut c1, &mut c2] {
        let got = c.events(&a, 5, WAIT).await;
        assert_eq!(seqs(&got), vec![1, 2, 3, 4, 5]);
        assert!(got.iter().all(|e| e["event"].is_string()
            && e["event_id"].is_string()
            && e["data"]["bot_id"] == a.as_str()));
        assert!(
            c.new_events(QUIET).await.is_empty(),
            "nothing more (repeats of a seen seq are dropped, as clients do)"
        );
    }
    let got = c3.events(&b, 3, WAIT).await;
    assert_eq!(seqs(&got), vec![1, 2, 3]);
    assert!(c3.new_events(QUIET).await.is_empty());
}

async fn reconnect_with_since_gets_exactly_the_missed_events(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let bot = unique_bot("resume");
    let mut c = subscribed(&relay, &bot, None).await;
    post_status(&relay, &bot, 0).await;
    post_status(&relay, &bot, 1).await;
    assert_eq!(seqs(&c.events(&bot, 2, WAIT).await), vec![1, 2]);
    c.close().await;
    for i in 2..7 {
        post_status(&relay, &bot, i).await;
    }
    let mut c = subscribed(&relay, &bot, Some(2)).await;
    assert_eq!(
        seqs(&c.events(&bot, 5, WAIT).await),
        vec![3, 4, 5, 6, 7],
        "exactly the five missed"
    );
    post_status(&relay, &bot, 7).await;
    assert_eq!(
        seqs(&c.events(&bot, 1, WAIT).await),
        vec![8],
        "then live events"
    );
    assert!(
        c.new_events(QUIET).await.is_empty(),
        "nothing beyond the live event"
    );
}

async fn tokens_are_enforced(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let bot = unique_bot("auth");
    let other = unique_bot("other");
    assert!(
        WsClient::connect(&relay, "not-a-token").await.is_err(),
        "bad token refused at connect"
    );
    assert!(
        WsClient::connect(&relay, &token(&[&bot], -60))
            .await
            .is_err(),
        "expired token refused"
    );
    let wrong_key = relay_core::domain::token::TokenKeys::new("another-secret").expect("keys");
    let forged = wrong_key
        .mint(&relay_core::domain::token::Claims {
            sub: "x".into(),
            exp: chrono::Utc::now().timestamp() + 60,
            bots: vec!["*".into()],
            scope: relay_core::domain::token::Scope::Read,
        })
        .expect("mint");
    assert!(
        WsClient::connect(&relay, &forged).await.is_err(),
        "wrong signature refused"
    );

    let mut c = WsClient::connect(&relay, &token(&[&bot], 3600))
        .await
        .expect("connect");
    c.send(json!({"action": "subscribe", "bot_id": other}));
    let refused = c.next(WAIT).await.expect("an answer");
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    c.send(json!({"action": "ping"}));
    let hb = c.next(WAIT).await.expect("heartbeat");
    assert_eq!(hb["type"], "heartbeat");
    post_status(&relay, &other, 0).await;
    assert!(
        c.new_events(QUIET).await.is_empty(),
        "no events of a bot the token does not name"
    );

    post_status(&relay, &bot, 0).await;
    let client = http();
    let get = |path: String, tok: Option<String>| {
        let client = client.clone();
        let url = relay.url(&path);
        async move {
            let mut req = client.get(url);
            if let Some(t) = tok {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.expect("send");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let status_path = format!("/api/meeting-bot/{bot}/status");
    assert_eq!(get(status_path.clone(), None).await.0, 401);
    assert_eq!(get(status_path.clone(), Some("junk".into())).await.0, 401);
    assert_eq!(
        get(status_path.clone(), Some(token(&[&other], 60))).await.0,
        403
    );
    let (s, snap) = get(status_path, Some(token(&[&bot], 60))).await;
    assert_eq!(
        (s, snap["status"].as_str(), snap["seq"].as_u64()),
        (200, Some("recording"), Some(1))
    );
    let (s, list) = get(
        format!("/api/meeting-bot/{bot}/events?since=0&limit=10"),
        Some(token(&["*"], 60)),
    )
    .await;
    assert_eq!((s, list["events"].as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(
        get(
            format!("/api/meeting-bot/{bot}/events"),
            Some(token(&[&other], 60))
        )
        .await
        .0,
        403
    );
}

async fn a_vanished_client_is_pruned_on_the_next_fan_out(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (relay, tables) = start_with_tables(mode, dir.path(), &[]);
    let bot = unique_bot("vanish");
    let mut stays = subscribed(&relay, &bot, None).await;
    // A client that vanished without $disconnect ever running: its records are still in the
    // store, but the gateway no longer has the socket and answers 410 Gone.
    let store = connection_store(&relay, &tables).await;
    let bot_id = relay_core::BotId::parse(&bot).expect("bot");
    let ghost = relay_core::testing::connection_contract::fresh_connection(&[&bot_id]);
    store.put(&ghost).await.expect("put");
    store.subscribe(&ghost, &bot_id).await.expect("subscribe");
    assert_eq!(store.subscribers(&bot_id).await.expect("subs").len(), 2);

    post_status(&relay, &bot, 0).await;
    assert_eq!(seqs(&stays.events(&bot, 1, WAIT).await), vec![1]);
    let deadline = std::time::Instant::now() + WAIT;
    while store.subscribers(&bot_id).await.expect("subs").len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the gone connection was not pruned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.get(&ghost.id).await.expect("get"), None);
    let logs = relay.output().join("\n");
    assert!(
        logs.lines().any(|l| l.contains("\"message\":\"fanout\"")
            && l.contains("\"gone\":1")
            && l.contains("\"sent\":1")),
        "the fan-out logs one line per batch with what it did:\n{logs}"
    );
    // And the next event goes out cleanly.
    post_status(&relay, &bot, 1).await;
    assert_eq!(seqs(&stays.events(&bot, 1, WAIT).await), vec![2]);
}

async fn transient_failures_are_retried_and_poison_goes_to_the_dead_letters(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let poison = unique_bot("poison");
    let relay = start(
        mode,
        dir.path(),
        &[
            "--inject-push-failures",
            "2",
            "--poison-bot",
            &poison,
            "--stream-max-attempts",
            "3",
        ],
    );
    let bot = unique_bot("retry");
    let mut c = subscribed(&relay, &bot, None).await;
    let mut p = subscribed(&relay, &poison, None).await;
    for i in 0..4 {
        post_status(&relay, &bot, i).await;
    }
    // The first two posts fail; the mapping retries from the failed record; nothing is lost.
    let got = c.events(&bot, 4, WAIT * 2).await;
    assert_eq!(seqs(&got), vec![1, 2, 3, 4]);
    assert!(c.new_events(QUIET).await.is_empty(), "nothing more");

    let poisoned = post_status(&relay, &poison, 0).await;
    post_status(&relay, &bot, 9).await;
    assert_eq!(
        seqs(&c.events(&bot, 1, WAIT * 3).await),
        vec![5],
        "records after the poison still flow"
    );
    assert!(p.new_events(QUIET).await.is_empty());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["dlq", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("relay dlq list");
    let listed = String::from_utf8_lossy(&out.stdout);
    let letters: Vec<Value> = listed
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(letters.len(), 1, "{listed}");
    assert_eq!(
        (
            letters[0]["bot_id"].as_str(),
            letters[0]["attempts"].as_u64()
        ),
        (Some(poison.as_str()), Some(3))
    );
    assert_eq!(letters[0]["event_id"], poisoned["event_id"]);
}

async fn a_big_completion_is_truncated_live_and_whole_over_rest(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let bot = unique_bot("big");
    let mut c = subscribed(&relay, &bot, None).await;
    let body = relay_core::testing::testdata::v1_complete_of_size(&bot, 3 * 1024 * 1024, 5);
    let (status, accepted, text) =
        post_webhook(&http(), &relay, &json_key_headers(), body.clone()).await;
    assert_eq!(status, 200, "{text}");
    let got = c.events(&bot, 1, WAIT).await;
    let msg = &got[0];
    assert_eq!(
        (msg["truncated"].as_bool(), msg["event"].as_str()),
        (Some(true), Some("meeting.completed"))
    );
    assert!(msg.to_string().len() < 128 * 1024);
    let resp = http()
        .get(relay.url(&format!(
            "/api/meeting-bot/{bot}/events/{}",
            accepted["event_id"].as_str().expect("id")
        )))
        .bearer_auth(token(&[&bot], 60))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("text");
    #[derive(serde::Deserialize)]
    struct Out<'a> {
        #[serde(borrow)]
        payload: &'a serde_json::value::RawValue,
    }
    let out: Out = serde_json::from_str(&text).expect("json");
    assert!(
        out.payload.get() == body,
        "the REST route returns the body byte for byte"
    );
}

async fn concurrent_identical_deliveries_reach_each_subscriber_once(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let bot = unique_bot("storm");
    let mut c1 = subscribed(&relay, &bot, None).await;
    let mut c2 = subscribed(&relay, &bot, None).await;
    let body = json!({"event": "bot.status_change", "data": {"bot_id": bot, "status": {"code": "joining_call"}}}).to_string();
    let client = http();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (client, url, body) = (
            client.clone(),
            relay.url("/api/meeting-bot/webhook"),
            body.clone(),
        );
        // A sender retries a 503 (moto, one serialised Python process, can be slower than the
        // relay's 5 s store timeout under 200 concurrent requests); every delivery ends in 200.
        tasks.spawn(async move {
            for _ in 0..20 {
                let status = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-meeting-baas-api-key", API_KEY)
                    .body(body.clone())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())?;
                if status != 503 {
                    return Ok(status);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<u16, reqwest::Error>(503)
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.expect("task").expect("send"), 200);
    }
    for c in [&mut c1, &mut c2] {
        assert_eq!(seqs(&c.events(&bot, 1, WAIT * 3).await), vec![1]);
        assert!(
            c.new_events(QUIET * 2).await.is_empty(),
            "one message per subscriber"
        );
    }
}

/// A token's expiry binds its connection: once past it, the next event of its bot brings the
/// `token_expired` error and a close, never the event.
async fn an_expired_token_gets_token_expired_and_a_close_not_events(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let bot = unique_bot("exp");
    let ttl = 4;
    let mut c = WsClient::connect(&relay, &token(&[&bot], ttl))
        .await
        .expect("connect");
    let expires = std::time::Instant::now() + Duration::from_secs(ttl as u64);
    c.send(json!({"action": "subscribe", "bot_id": bot}));
    assert_eq!(c.next(WAIT).await.expect("connected")["type"], "connected");
    let snap = c.next(WAIT).await.expect("snapshot");
    c.resume_from(&bot, snap["seq"].as_u64().expect("seq"));
    post_status(&relay, &bot, 1).await;
    assert_eq!(seqs(&c.events(&bot, 1, WAIT).await), vec![1]);
    // Past the expiry (whole seconds: one more for the rounding).
    tokio::time::sleep_until((expires + Duration::from_millis(1500)).into()).await;
    post_status(&relay, &bot, 2).await;
    let rest = c.drain(WAIT.min(Duration::from_secs(10))).await;
    assert_eq!(
        rest.len(),
        2,
        "the error and the close, nothing else: {rest:?}"
    );
    assert_eq!(
        (rest[0]["type"].as_str(), rest[0]["code"].as_str()),
        (Some("error"), Some("token_expired")),
        "{rest:?}"
    );
    assert!(rest[0]["message"].is_string(), "{rest:?}");
    assert_eq!(rest[1]["type"], "__closed", "{rest:?}");
}

/// `GET /api/meeting-bot/sessions`: every bot's session, open or final, newest change first,
/// for a token that names every bot; refused to a token for some bots only.
async fn the_sessions_route_lists_every_bot_newest_first(mode: Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(mode, dir.path(), &[]);
    let (a, b, c) = (
        unique_bot("sessions-a"),
        unique_bot("sessions-b"),
        unique_bot("sessions-c"),
    );
    post_status(&relay, &a, 1).await;
    post_status(&relay, &b, 1).await;
    let complete = json!({"event": "complete", "data": {"bot_id": c}});
    let (status, _, text) =
        post_webhook(&http(), &relay, &json_key_headers(), complete.to_string()).await;
    assert_eq!(status, 200, "{text}");

    let get = |token: String, query: &'static str| {
        let url = relay.url(&format!("/api/meeting-bot/sessions{query}"));
        async move {
            let resp = http()
                .get(url)
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .expect("send");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("a JSON body");
            (status, body)
        }
    };
    let ours = |body: &Value| -> Vec<(String, String)> {
        body["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .filter(|s| [&a, &b, &c].iter().any(|bot| s["bot_id"] == bot.as_str()))
            .map(|s| {
                (
                    s["bot_id"].as_str().unwrap_or_default().to_owned(),
                    s["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let want = vec![
        (c.clone(), "completed".to_owned()),
        (b.clone(), "recording".to_owned()),
        (a.clone(), "recording".to_owned()),
    ];
    let deadline = std::time::Instant::now() + WAIT;
    let body = loop {
        let (status, body) = get(token(&["*"], 600), "").await;
        assert_eq!(status, 200, "{body}");
        // The DynamoDB index is eventually consistent.
        if ours(&body) == want || std::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        ours(&body),
        want,
        "open and final, newest change first: {body}"
    );
    let first = &body["sessions"][0];
    assert_eq!(
        first["type"], "status_update",
        "each one the status route's snapshot"
    );
    assert!(first["session"]["last_updated"].is_string(), "{first}");

    // The same list from the shell: `relay bots list`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["bots", "list", "--limit", "200", "--api-url", &relay.base])
        .env("RELAY_CLIENT_SECRET", CLIENT_SECRET)
        .output()
        .expect("run relay bots list");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(ours(&printed), want, "{printed}");

    let (status, body) = get(token(&["*"], 600), "?limit=2").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["sessions"].as_array().expect("sessions").len() <= 2,
        "{body}"
    );
    let (status, body) = get(token(&["*"], 600), "?limit=0").await;
    assert_eq!((status, body["error"].is_string()), (400, true), "{body}");
    let (status, body) = get(token(&[&a, &b, &c], 600), "").await;
    assert_eq!(
        (status, body["error"].is_string()),
        (403, true),
        "a token for some bots only may not list all: {body}"
    );
}

macro_rules! both_stores {
    ($($case:ident),*) => {
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
    the_sessions_route_lists_every_bot_newest_first,
    clients_get_exactly_their_bots_events,
    reconnect_with_since_gets_exactly_the_missed_events,
    tokens_are_enforced,
    a_vanished_client_is_pruned_on_the_next_fan_out,
    transient_failures_are_retried_and_poison_goes_to_the_dead_letters,
    a_big_completion_is_truncated_live_and_whole_over_rest,
    concurrent_identical_deliveries_reach_each_subscriber_once,
    an_expired_token_gets_token_expired_and_a_close_not_events
);

/// The local API Gateway's own protocol, whatever the store.
mod gateway {
    use super::*;

    async fn connection_id_of(relay: &Relay, bot: &str) -> String {
        // The functions' table when they are the host, else relay serve's own store.
        let tables = relay
            .dynamodb
            .as_ref()
            .map(|t| (t.endpoint.clone(), t.connections.clone()));
        let store = connection_store(relay, &tables).await;
        let ids = store
            .subscribers(&relay_core::BotId::parse(bot).expect("bot"))
            .await
            .expect("subs");
        assert_eq!(ids.len(), 1);
        ids[0].id.to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn frames_over_128_kb_close_the_socket_with_1009() {
        let dir = tempfile::tempdir().expect("tempdir");
        let relay = start(Mode::Sqlite, dir.path(), &[]);
        let mut c = WsClient::connect(&relay, &token(&["*"], 60))
            .await
            .expect("connect");
        c.send(json!({"action": "ping", "pad": "x".repeat(128 * 1024)}));
        let closed = c.next(WAIT).await.expect("close");
        assert_eq!(
            (closed["type"].as_str(), closed["code"].as_u64()),
            (Some("__closed"), Some(1009))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn idle_and_lifetime_limits_close_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let relay = start(
            Mode::Sqlite,
            dir.path(),
            &["--ws-idle-timeout", "1", "--ws-max-lifetime", "3"],
        );
        let mut idle = WsClient::connect(&relay, &token(&["*"], 60))
            .await
            .expect("connect");
        let started = std::time::Instant::now();
        let closed = idle.next(WAIT).await.expect("close");
        assert_eq!(
            (closed["type"].as_str(), closed["code"].as_u64()),
            (Some("__closed"), Some(1001))
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "idle close after ~1 s"
        );

        let mut busy = WsClient::connect(&relay, &token(&["*"], 60))
            .await
            .expect("connect");
        let started = std::time::Instant::now();
        let closed = loop {
            busy.send(json!({"action": "ping"}));
            match busy.next(Duration::from_millis(400)).await {
                Some(v) if v["type"] == "__closed" => break v,
                _ => assert!(started.elapsed() < WAIT, "never closed"),
            }
        };
        assert_eq!(closed["code"].as_u64(), Some(1001));
        assert!(
            started.elapsed() >= Duration::from_millis(2500),
            "a busy socket lives until the hard limit"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_management_api_posts_reads_deletes_and_says_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let relay = start(Mode::Sqlite, dir.path(), &[]);
        let bot = unique_bot("mgmt");
        let mut c = subscribed(&relay, &bot, None).await;
        let id = connection_id_of(&relay, &bot).await;
        let client = http();
        // Both spellings of the path; the SDK sends the encoded one.
        let resp = client
            .post(relay.url(&format!("/%40connections/{id}")))
            .header("authorization", management_auth())
            .body(r#"{"type":"hello"}"#)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            c.next(WAIT).await.expect("message"),
            json!({"type": "hello"})
        );
        let info: Value = client
            .get(relay.url(&format!("/@connections/{id}")))
            .header("authorization", management_auth())
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert!(
            info["connectedAt"].is_string() && info["identity"]["sourceIp"] == "127.0.0.1",
            "{info}"
        );
        let resp = client
            .delete(relay.url(&format!("/@connections/{id}")))
            .header("authorization", management_auth())
            .send()
            .await
            .expect("delete");
        assert_eq!(resp.status().as_u16(), 204);
        let closed = c.next(WAIT).await.expect("closed");
        assert_eq!(closed["type"], "__closed");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let resp = client
            .post(relay.url(&format!("/@connections/{id}")))
            .header("authorization", management_auth())
            .body("{}")
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 410);
        assert_eq!(
            resp.headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok()),
            Some("GoneException")
        );
        let unknown = client
            .get(relay.url("/@connections/bm9zdWNoY29ubg="))
            .header("authorization", management_auth())
            .send()
            .await
            .expect("get");
        assert_eq!(unknown.status().as_u16(), 410);
        // $disconnect ran: the subscription is gone from the store too.
        let store = connection_store(&relay, &None).await;
        assert!(
            store
                .subscribers(&relay_core::BotId::parse(&bot).expect("bot"))
                .await
                .expect("subs")
                .is_empty()
        );
    }
}
