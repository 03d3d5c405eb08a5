//! Faults: the relay killed mid-burst, and its DynamoDB stopped or gone. Whatever got a 2xx
//! must be readable afterwards; while the store is down the answer is 503, never a 2xx.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_core::ports::store::EventStore;
use relay_core::{BotId, EventId};
use relay_dynamodb::{DynamoStore, client_for};
use relay_sqlite::events::SqliteStore;
use serde_json::json;
use support::*;
use tokio::sync::Mutex;

fn status_body(bot: &str, i: usize) -> String {
    json!({"event": "bot.status_change", "data": {"bot_id": bot, "n": i, "status": {"code": "in_call_recording"}}}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_burst_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut relay = Relay::start(RelayOptions::new(dir.path()));
    let url = relay.url("/api/meeting-bot/webhook");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let client = http();
    let mut senders = tokio::task::JoinSet::new();
    for s in 0..16 {
        let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
        senders.spawn(async move {
            for i in 0..10_000 {
                let bot = format!("burst-{}", (s + i) % 4);
                let body = status_body(&bot, s * 100_000 + i);
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-meeting-baas-api-key", API_KEY)
                    .body(body)
                    .send()
                    .await;
                let Ok(resp) = sent else { return };
                if resp.status() != 200 {
                    return;
                }
                let Ok(v) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                let id = v["event_id"].as_str().unwrap_or_default().to_owned();
                acked.lock().await.push((bot, id));
            }
        });
    }
    // Kill once a good number of events were acknowledged, in the middle of the burst.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().await.len() < 300 {
        assert!(Instant::now() < deadline, "burst too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.kill9();
    while senders.join_next().await.is_some() {}
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= 300);

    // Restart on the same data dir; every acknowledged event is there, sessions intact.
    let relay = Relay::start(RelayOptions::new(dir.path()));
    let store = SqliteStore::open(&relay.data_dir.join("events.sqlite3"), Default::default())
        .expect("open");
    for (bot, id) in &acked {
        let bot = BotId::parse(bot).expect("bot");
        let id = EventId::parse(id).expect("event id");
        assert!(
            store.event(&bot, &id).await.expect("read").is_some(),
            "acknowledged {id} lost"
        );
    }
    for b in 0..4 {
        let bot = BotId::parse(&format!("burst-{b}")).expect("bot");
        let events = store.events_after(&bot, 0, 1000).await.expect("list");
        let n = events.events.len() as u64;
        let seqs: Vec<u64> = events.events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "gap-free after the crash"
        );
        let session = store.session(&bot).await.expect("session").expect("exists");
        assert_eq!(session.seq, n, "session agrees with its events");
    }
    // And the restarted relay still takes webhooks.
    let (status, _, text) = post_webhook(
        &http(),
        &relay,
        &json_key_headers(),
        status_body("burst-0", 999_999_999),
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

async fn send(
    client: &reqwest::Client,
    relay: &Relay,
    bot: &str,
    i: usize,
) -> (u16, Option<String>) {
    let (status, json, _) =
        post_webhook(client, relay, &json_key_headers(), status_body(bot, i)).await;
    (status, json["event_id"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_stopped_then_gone_gives_503_and_keeps_every_acknowledged_event() {
    let mut moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let table = format!("faults-{:08x}", rand_u32());
    let mut opts = RelayOptions::new(dir.path());
    opts.extra_args = vec![
        "--dynamodb-endpoint".into(),
        moto.endpoint.clone(),
        "--events-table".into(),
        table.clone(),
    ];
    let relay = Relay::start(opts);
    let client = http();
    let bot = "outage-bot";
    let mut acked = Vec::new();
    // A browser watching the bot: its live feed must outlast the outage too.
    let mut watcher = WsClient::connect(&relay, &token(&[bot], 600))
        .await
        .expect("connect");
    watcher.send(json!({"action": "subscribe", "bot_id": bot}));
    let first = watcher.next(Duration::from_secs(30)).await;
    assert_eq!(
        first.as_ref().map(|m| m["type"].clone()),
        Some(json!("connected"))
    );

    for i in 0..5 {
        let (status, id) = send(&client, &relay, bot, i).await;
        assert_eq!(status, 200);
        acked.push(id.expect("event id"));
    }

    // moto stopped (SIGSTOP): requests hang at the store; the relay must answer 503 in bounded time.
    moto.signal("STOP");
    let started = Instant::now();
    let mut during = tokio::task::JoinSet::new();
    for i in 5..8 {
        let (client, base) = (client.clone(), relay.base.clone());
        during.spawn(async move {
            let resp = client
                .post(format!("{base}/api/meeting-bot/webhook"))
                .header("content-type", "application/json")
                .header("x-meeting-baas-api-key", API_KEY)
                .body(status_body(bot, i))
                .send()
                .await
                .expect("send");
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.expect("json");
            (status, body)
        });
    }
    while let Some(r) = during.join_next().await {
        let (status, body) = r.expect("task");
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "event store unavailable, retry later");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "503 took {:?}",
        started.elapsed()
    );
    moto.signal("CONT");

    // Back: the sender's retries succeed, and everything acknowledged is readable.
    for i in 5..10 {
        let (status, id) = send(&client, &relay, bot, i).await;
        assert_eq!(status, 200);
        acked.push(id.expect("event id"));
    }
    let store = DynamoStore::new(
        client_for(Some(&moto.endpoint)).await,
        table,
        Default::default(),
    );
    let bot_id = BotId::parse(bot).expect("bot");
    for id in &acked {
        let id = EventId::parse(id).expect("id");
        assert!(
            store.event(&bot_id, &id).await.expect("read").is_some(),
            "acknowledged {id} lost"
        );
    }
    let page = store.events_after(&bot_id, 0, 100).await.expect("list");
    assert_eq!(
        page.events.len(),
        acked.len(),
        "nothing half-written while moto was stopped"
    );
    assert_eq!(
        store
            .session(&bot_id)
            .await
            .expect("session")
            .map(|s| s.seq),
        Some(acked.len() as u64)
    );

    // The stream reader's requests failed while moto was stopped; it carried on from where it
    // was, so the watcher has every event, in order, the ones after the outage included.
    let live: Vec<u64> = watcher
        .events(bot, acked.len(), Duration::from_secs(60))
        .await
        .iter()
        .map(|m| m["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(live, (1..=acked.len() as u64).collect::<Vec<_>>());

    // moto gone (closed port): prompt 503s.
    moto.kill9();
    let started = Instant::now();
    let (status, _) = send(&client, &relay, bot, 99).await;
    assert_eq!(status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503 took {:?}",
        started.elapsed()
    );
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7)
}
