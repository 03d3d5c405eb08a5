//! The DynamoDB adapter against a DynamoDB-API endpoint (a moto server under `scripts/test`):
//! the shared contract suite, then what only this adapter has: its item layout, body chunks,
//! the table it creates and how fast it gives up on a dead endpoint.
//!
//! `RELAY_TEST_DYNAMODB_ENDPOINT` must be set; without it every test that needs a server
//! fails rather than skipping, so a green run always means the adapter was exercised. (Only
//! the dead-endpoint test runs without one.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType, TimeToLiveStatus};
use chrono::{DateTime, Utc};
use relay_core::domain::event::EventKind;
use relay_core::ports::store::{Appended, EventStore, Retention, StoreError};
use relay_core::testing::store_contract as contract;
use relay_core::testing::testdata;
use relay_dynamodb::{DynamoStore, client_for, ensure_events_table};

type Item = HashMap<String, AttributeValue>;

const ITEM_LIMIT: usize = 400 * 1024;

fn endpoint() -> String {
    match std::env::var("RELAY_TEST_DYNAMODB_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "RELAY_TEST_DYNAMODB_ENDPOINT is not set: set RELAY_TEST_DYNAMODB_ENDPOINT to a \
             DynamoDB-API endpoint (e.g. a moto_server at http://127.0.0.1:5000) or run scripts/test"
        ),
    }
}

/// A fresh table for each test. Sharing one across tests that run in parallel is unsafe on
/// moto: a cancelled transaction there restores a snapshot of the whole table taken when it
/// started, erasing what other requests wrote meanwhile. Small tables also keep moto's
/// per-transaction copy of the table cheap.
async fn fresh_table(client: &Client) -> String {
    let name = format!(
        "relay-test-events-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    );
    ensure_events_table(client, &name)
        .await
        .expect("create the test table");
    name
}

/// `client_for`'s client with timeouts for an emulator rather than for DynamoDB. moto answers
/// from one Python process (a transaction deep-copies the whole table), so under the suite's
/// 60-writer storm a request can wait seconds in its queue; the 2 s attempt timeout would then
/// fire on requests that are merely queued. The production timeouts have their own test below.
async fn test_client() -> Client {
    let client = client_for(Some(&endpoint())).await;
    let relaxed = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(60))
        .build();
    Client::from_conf(client.config().to_builder().timeout_config(relaxed).build())
}

async fn store_with(retention: Retention) -> (Client, DynamoStore) {
    let client = test_client().await;
    let table = fresh_table(&client).await;
    // The contract's 20 concurrent writers per bot take moto ~25 s (every lost race is one
    // more serialised transaction); DynamoDB runs them in parallel.
    let store = DynamoStore::new(client.clone(), table, retention)
        .with_append_budget(Duration::from_secs(90));
    (client, store)
}

relay_core::event_store_contract!(async {
    let (_, store) = store_with(contract::RETENTION).await;
    Arc::new(store) as Arc<dyn EventStore>
});

async fn raw_item(client: &Client, table: &str, pk: &str, sk: &str) -> Option<Item> {
    client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("raw GetItem")
        .item
}

async fn raw_items_with_prefix(client: &Client, table: &str, pk: &str, prefix: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .query()
            .table_name(table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
            .expression_attribute_values(":prefix", AttributeValue::S(prefix.into()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("raw Query");
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return items,
        }
    }
}

/// DynamoDB's item size: attribute names plus values (numbers counted generously as text).
fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    _ => 8,
                }
        })
        .sum()
}

fn s<'a>(item: &'a Item, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v,
        other => panic!("{name} should be a string, is {other:?}"),
    }
}

fn n(item: &Item, name: &str) -> i64 {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().expect("a number"),
        other => panic!("{name} should be a Number, is {other:?}"),
    }
}

fn zstd3_len(body: &str) -> usize {
    zstd::bulk::compress(body.as_bytes(), 3)
        .expect("compress")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_items_carry_the_documented_attributes_and_ttl() {
    let (client, store) = store_with(contract::RETENTION).await;
    let bot = contract::fresh_bot("raw");
    let mut e = contract::new_event(
        &bot,
        "raw-1",
        EventKind::BotStatusChange,
        Some("joining_call"),
        testdata::v1_status_change(bot.as_str(), "joining_call", "2026-11-29T09:00:00Z"),
    );
    e.occurred_at = Some("2026-11-29T09:00:00Z".into());
    let received = e.received_at;
    let Appended::Stored(stored) = store.append(e.clone()).await.expect("append") else {
        panic!("stored")
    };
    let want_expiry = received.timestamp() + 7 * 86_400;
    let pk = format!("BOT#{bot}");

    let evt = raw_item(&client, store.table(), &pk, "EVT#00000000000000000001")
        .await
        .expect("event item at EVT#<seq:020>");
    assert_eq!(n(&evt, "expires_at"), want_expiry, "TTL is a Number");
    assert_eq!(s(&evt, "kind"), "event");
    assert_eq!(s(&evt, "bot_id"), bot.as_str());
    assert_eq!(n(&evt, "seq"), 1);
    assert_eq!(s(&evt, "event_id"), stored.event_id.as_str());
    assert_eq!(s(&evt, "idem_key"), "raw-1");
    assert_eq!(s(&evt, "event"), "bot.status_change");
    assert_eq!(s(&evt, "source_event"), "bot.status_change");
    assert_eq!(s(&evt, "family"), "v1");
    assert_eq!(s(&evt, "status_code"), "joining_call");
    assert_eq!(s(&evt, "occurred_at"), "2026-11-29T09:00:00Z");
    assert_eq!(s(&evt, "status"), "joining");
    let at: DateTime<Utc> = s(&evt, "received_at").parse().expect("RFC 3339");
    assert_eq!(at, received, "received_at keeps its nanoseconds");
    let Some(AttributeValue::B(body)) = evt.get("body") else {
        panic!("a small body is inline, binary")
    };
    let raw = zstd::stream::decode_all(body.as_ref()).expect("zstd");
    assert_eq!(raw, e.body.as_bytes());
    assert!(!evt.contains_key("body_chunks"));

    let idem = raw_item(&client, store.table(), &pk, &format!("IDEM#{}", e.event_id))
        .await
        .expect("idempotency item");
    assert_eq!(s(&idem, "kind"), "idem");
    assert_eq!(n(&idem, "seq"), 1);
    assert_eq!(s(&idem, "event"), "bot.status_change");
    assert_eq!(s(&idem, "event_id"), e.event_id.as_str());
    assert_eq!(n(&idem, "expires_at"), want_expiry);

    let session = raw_item(&client, store.table(), &pk, "SESSION")
        .await
        .expect("session item");
    assert_eq!(s(&session, "kind"), "session");
    assert_eq!(n(&session, "seq"), 1);
    assert_eq!(s(&session, "status"), "joining");
    assert_eq!(n(&session, "expires_at"), want_expiry);
    let doc: serde_json::Value = serde_json::from_str(s(&session, "doc")).expect("doc is JSON");
    assert_eq!(doc["seq"], 1);
    assert_eq!(doc["bot_id"], bot.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_past_300_kb_compressed_are_chunked_under_the_item_limit() {
    let (client, store) = store_with(contract::RETENTION).await;
    let bot = contract::fresh_bot("chunks");
    let mut body = testdata::v1_complete_of_size(bot.as_str(), 5 * 1024 * 1024, 3);
    let transcript_compressed = zstd3_len(&body);
    eprintln!(
        "5 MB transcript: {} bytes, {} compressed (zstd 3)",
        body.len(),
        transcript_compressed
    );
    if transcript_compressed <= 300_000 {
        // Too compressible to exercise chunking: pad with barely compressible text.
        let noise: String = (0..1_500_000)
            .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
            .collect();
        body = serde_json::json!({"event": "complete", "data": {"bot_id": bot.as_str(), "noise": noise}})
            .to_string();
    }
    let compressed = zstd3_len(&body);
    assert!(compressed > 300_000, "{compressed} bytes compressed");

    let e = contract::new_event(&bot, "big", EventKind::MeetingCompleted, None, body.clone());
    let t = Instant::now();
    let Appended::Stored(stored) = store.append(e.clone()).await.expect("append") else {
        panic!("stored")
    };
    eprintln!("append of {} bytes took {:?}", body.len(), t.elapsed());
    let pk = format!("BOT#{bot}");
    let evt = raw_item(&client, store.table(), &pk, "EVT#00000000000000000001")
        .await
        .expect("event item");
    assert!(!evt.contains_key("body"), "a big body is not inline");
    let hash = s(&evt, "body_hash").to_owned();
    assert_eq!(hash.len(), 64);
    let chunks = raw_items_with_prefix(
        &client,
        store.table(),
        &pk,
        &format!("BLOB#{}#{}#", stored.event_id, &hash[..16]),
    )
    .await;
    assert_eq!(chunks.len() as i64, n(&evt, "body_chunks"));
    assert!(chunks.len() >= 2, "{} chunks", chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(s(chunk, "kind"), "chunk");
        assert!(s(chunk, "sk").ends_with(&format!("#{i:04}")));
        assert_eq!(n(chunk, "expires_at"), stored.expires_at);
        assert!(
            item_size(chunk) < ITEM_LIMIT,
            "chunk {i}: {} bytes",
            item_size(chunk)
        );
    }
    assert!(item_size(&evt) < ITEM_LIMIT);

    let t = Instant::now();
    let read = store
        .event(&bot, &stored.event_id)
        .await
        .expect("read")
        .expect("exists");
    eprintln!(
        "read back of {} chunks took {:?}",
        chunks.len(),
        t.elapsed()
    );
    assert!(read.body == body, "byte-exact");
    let listed = store.events_after(&bot, 0, 10).await.expect("list");
    assert!(listed.events[0].body == body, "byte-exact when listed");

    // A redelivery is a duplicate and adds no second set of chunks.
    assert!(store.append(e).await.expect("append").is_duplicate());
    let all = raw_items_with_prefix(&client, store.table(), &pk, "BLOB#").await;
    assert_eq!(all.len(), chunks.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_table_has_a_new_image_stream_and_ttl_on_expires_at() {
    let (client, store) = store_with(contract::RETENTION).await;
    // Running it again on an existing table is a no-op.
    ensure_events_table(&client, store.table())
        .await
        .expect("ensure twice");
    let desc = client
        .describe_table()
        .table_name(store.table())
        .send()
        .await
        .expect("describe")
        .table
        .expect("table");
    let stream = desc.stream_specification().expect("stream specification");
    assert!(stream.stream_enabled());
    assert_eq!(stream.stream_view_type(), Some(&StreamViewType::NewImage));
    assert!(desc.latest_stream_arn().is_some());
    let keys: Vec<_> = desc
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .expect("describe TTL")
        .time_to_live_description
        .expect("TTL description");
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert!(matches!(
        ttl.time_to_live_status(),
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_endpoint_is_unavailable_within_seconds() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }; // closed again here: nothing listens on `port`
    let t = Instant::now();
    let client = client_for(Some(&format!("http://127.0.0.1:{port}"))).await;
    let built = t.elapsed();
    let store = DynamoStore::new(client, "relay-nowhere", contract::RETENTION);
    let bot = contract::fresh_bot("dead");
    let e = contract::new_event(&bot, "k", EventKind::Unknown, None, "{}".into());

    let t = Instant::now();
    let err = store.append(e).await.expect_err("nothing listens");
    let append_took = t.elapsed();
    let t = Instant::now();
    let read_err = store.session(&bot).await.expect_err("nothing listens");
    let read_took = t.elapsed();
    eprintln!(
        "client_for {built:?}; append failed after {append_took:?}: {err}; \
         session failed after {read_took:?}: {read_err}"
    );
    for (err, took) in [(&err, append_took), (&read_err, read_took)] {
        let StoreError::Unavailable(msg) = err else {
            panic!("must be Unavailable (503), got {err:?}")
        };
        assert!(
            msg.contains("dynamodb GetItem"),
            "names the operation: {msg}"
        );
        assert!(
            !msg.contains("relay-local"),
            "no credential in errors: {msg}"
        );
        assert!(took < Duration::from_secs(7), "gave up after {took:?}");
    }
    assert!(built < Duration::from_secs(3), "client_for took {built:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_items_count_as_gone_and_seqs_are_never_reused() {
    // Zero days: everything expires at the second it was received. TTL deletes lazily, so the
    // store itself must treat the items as gone.
    let (client, store) = store_with(Retention { days: 0 }).await;
    let bot = contract::fresh_bot("expired");
    let e = contract::new_event(&bot, "once", EventKind::Unknown, None, r#"{"n":1}"#.into());
    let Appended::Stored(first) = store.append(e.clone()).await.expect("append") else {
        panic!("stored")
    };
    assert_eq!(first.seq, 1);
    while Utc::now().timestamp() <= first.expires_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.session(&bot).await.expect("session").is_none());
    assert!(
        store
            .event(&bot, &first.event_id)
            .await
            .expect("event")
            .is_none()
    );
    let page = store.events_after(&bot, 0, 10).await.expect("list");
    assert!(page.events.is_empty() && !page.more);

    // The same delivery after retention is new again, stored past the old seq. (Stored with
    // a week's retention so it does not expire while being checked.)
    let store = DynamoStore::new(client, store.table(), contract::RETENTION)
        .with_append_budget(Duration::from_secs(90));
    let mut again = e.clone();
    again.received_at = Utc::now();
    let Appended::Stored(second) = store.append(again).await.expect("append") else {
        panic!("an expired idempotency record no longer makes a duplicate")
    };
    assert_eq!(second.seq, 2, "seq 1 still exists until TTL deletes it");
    let session = store.session(&bot).await.expect("session").expect("fresh");
    assert_eq!(session.seq, 2);
}

/// A table from before the open-session index gets it at the next start, and sessions written
/// since are found through it.
#[tokio::test]
async fn a_table_without_the_open_index_gets_it() {
    let client = test_client().await;
    let name = format!("relay-test-old-{:016x}", rand::random::<u64>());
    relay_dynamodb::table::ensure_table(
        &client,
        &name,
        relay_dynamodb::table::TableSpec {
            new_image_stream: true,
            open_index: false,
        },
    )
    .await
    .expect("old table");
    ensure_events_table(&client, &name).await.expect("upgrade");
    let desc = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .expect("describe")
        .table
        .expect("table");
    let index = desc
        .global_secondary_indexes()
        .iter()
        .find(|i| i.index_name() == Some(relay_dynamodb::table::OPEN_INDEX))
        .expect("the index was added");
    assert_eq!(
        index.index_status(),
        Some(&aws_sdk_dynamodb::types::IndexStatus::Active)
    );
    // Twice is fine (every start calls it).
    ensure_events_table(&client, &name).await.expect("again");

    let store = DynamoStore::new(client, name, Retention { days: 7 });
    let bot = contract::fresh_bot("upgraded");
    let then = chrono::Utc::now() - chrono::Duration::hours(1);
    store.ensure_session(&bot, then).await.expect("session");
    let open = store
        .open_sessions(chrono::Utc::now(), None, 10)
        .await
        .expect("query");
    assert_eq!(open.len(), 1);
    assert_eq!((&open[0].bot_id, open[0].last_updated), (&bot, then));
}
