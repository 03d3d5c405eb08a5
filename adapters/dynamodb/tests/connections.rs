//! The DynamoDB connection store against a DynamoDB-API endpoint (moto under `scripts/test`):
//! the shared contract suite, then the table's set-up, the items' layout, and that a bot's
//! subscribers are found by Query, never by Scan.
//!
//! Needs `RELAY_TEST_DYNAMODB_ENDPOINT`; without it every test fails (a skipped test would
//! read as a passing one). Each run of this binary creates its own table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryPartition, TokenBucket};
use aws_sdk_dynamodb::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::{AttributeValue, BillingMode, KeyType, TimeToLiveStatus};
use chrono::Utc;
use relay_core::BotId;
use relay_core::ports::connections::{Connection, ConnectionStore};
use relay_core::ports::store::StoreError;
use relay_core::testing::connection_contract::{fresh_connection, ids};
use relay_core::testing::store_contract::fresh_bot;
use relay_dynamodb::connections::{DynamoConnections, ensure_connections_table};
use tokio::sync::OnceCell;

type Item = HashMap<String, AttributeValue>;

fn endpoint() -> String {
    match std::env::var("RELAY_TEST_DYNAMODB_ENDPOINT") {
        Ok(e) if !e.trim().is_empty() => e,
        _ => panic!(
            "set RELAY_TEST_DYNAMODB_ENDPOINT or run scripts/test \
             (these tests need a DynamoDB-API endpoint, e.g. moto_server)"
        ),
    }
}

fn client_at(endpoint: &str, recorder: Option<Recorder>) -> Client {
    // moto's TransactWriteItems deep-copies the table without a lock first, and answers 500
    // when a concurrent request changes the table meanwhile (nothing is written then). The
    // SDK retries 500s; give it more, quicker tries than its default 3, and a retry quota of
    // its own (the default one is shared by every client of the process), so the concurrent
    // contract case does not trip over the emulator. Real DynamoDB has no such race.
    let retry = RetryConfig::standard()
        .with_max_attempts(10)
        .with_initial_backoff(Duration::from_millis(20))
        .with_max_backoff(Duration::from_millis(500));
    let partition = RetryPartition::custom("relay-connection-tests")
        .token_bucket(TokenBucket::unlimited())
        .build();
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .retry_config(retry)
        .retry_partition(partition)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"));
    if let Some(recorder) = recorder {
        config = config.interceptor(recorder);
    }
    Client::from_conf(config.build())
}

/// A client per test: each test has its own runtime, and an SDK client's pooled connections
/// belong to the runtime that opened them.
fn client() -> Client {
    client_at(&endpoint(), None)
}

/// This run's table, created (by whichever test gets here first) once per test binary run.
async fn table() -> &'static str {
    static TABLE: OnceCell<String> = OnceCell::const_new();
    TABLE
        .get_or_init(|| async {
            let name = format!("relay-connections-test-{:016x}", rand::random::<u64>());
            ensure_connections_table(&client(), &name)
                .await
                .expect("create the test table");
            name
        })
        .await
}

async fn store() -> DynamoConnections {
    let table = table().await;
    DynamoConnections::new(client(), table)
}

relay_core::connection_store_contract!(async {
    Arc::new(store().await) as Arc<dyn ConnectionStore>
});

/// Records the DynamoDB operation (`X-Amz-Target`) of every request a client sends.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "operation recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target");
        let op = target.and_then(|t| t.rsplit('.').next()).unwrap_or("?");
        self.0.lock().unwrap().push(op.to_owned());
        Ok(())
    }
}

async fn raw_get(client: &Client, table: &str, pk: &str, sk: &str) -> Option<Item> {
    client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

async fn raw_put(client: &Client, table: &str, item: Item) {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

async fn raw_partition(client: &Client, table: &str, pk: &str) -> Vec<Item> {
    client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
}

fn names(item: &Item) -> Vec<&str> {
    let mut v: Vec<&str> = item.keys().map(String::as_str).collect();
    v.sort_unstable();
    v
}

fn str_item(pairs: &[(&str, &str)]) -> Item {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), AttributeValue::S((*v).to_owned())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_table_is_on_demand_with_ttl_on_expires_at() {
    let (client, table) = (client(), table().await);
    // Running it again on the existing table changes nothing and does not fail.
    ensure_connections_table(&client, table).await.unwrap();

    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .expect("ttl description");
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(ttl.attribute_name(), Some("expires_at"));

    let desc = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .table
        .expect("table description");
    let billing = desc.billing_mode_summary().and_then(|b| b.billing_mode());
    assert_eq!(billing, Some(&BillingMode::PayPerRequest));
    let keys: Vec<(&str, &KeyType)> = desc
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(keys, vec![("pk", &KeyType::Hash), ("sk", &KeyType::Range)]);
    assert!(desc.global_secondary_indexes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_are_queried_page_by_page_never_scanned() {
    let recorder = Recorder::default();
    let table = table().await;
    let client = client_at(&endpoint(), Some(recorder.clone()));
    let store = DynamoConnections::new(client, table).with_page_limit(10);
    let (bot, other) = (fresh_bot("query"), fresh_bot("query"));
    let mut ids = Vec::new();
    for i in 0..25 {
        let c = fresh_connection(&[&bot, &other]);
        store.put(&c).await.unwrap();
        store.subscribe(&c, &bot).await.unwrap();
        if i % 5 == 0 {
            // Noise in the table: another bot's subscriptions must not be read.
            store.subscribe(&c, &other).await.unwrap();
        }
        ids.push(c.id);
    }
    recorder.take();

    let mut found =
        relay_core::testing::connection_contract::ids(store.subscribers(&bot).await.unwrap());
    found.sort();
    ids.sort();
    assert_eq!(found, ids);
    let ops = recorder.take();
    // 25 keys in pages of 10: at least three pages, every one a Query.
    assert!(ops.len() >= 3, "{ops:?}");
    assert!(ops.iter().all(|op| op == "Query"), "{ops:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn items_follow_the_documented_layout() {
    let (client, table) = (client(), table().await);
    let store = DynamoConnections::new(client.clone(), table);
    let bot = fresh_bot("layout");
    let c = fresh_connection(&[&bot]);
    store.put(&c).await.unwrap();
    store.subscribe(&c, &bot).await.unwrap();

    let conn_pk = format!("CONN#{}", c.id);
    let bot_pk = format!("BOT#{bot}");
    let meta = raw_get(&client, table, &conn_pk, "META")
        .await
        .expect("META");
    assert_eq!(
        names(&meta),
        vec![
            "bots",
            "connected_at",
            "expires_at",
            "id",
            "pk",
            "scope",
            "sk",
            "sub",
            "token_exp"
        ]
    );
    let expiry = AttributeValue::N(c.expires_at.to_string());
    assert_eq!(meta["expires_at"], expiry);
    for (pk, sk) in [
        (bot_pk.clone(), conn_pk.clone()),
        (conn_pk.clone(), format!("SUB#{bot}")),
    ] {
        let item = raw_get(&client, table, &pk, &sk)
            .await
            .unwrap_or_else(|| panic!("{pk} / {sk}"));
        assert_eq!(names(&item), vec!["expires_at", "pk", "sk", "token_exp"]);
        assert_eq!(item["expires_at"], expiry, "{pk} / {sk}");
        assert_eq!(
            item["token_exp"],
            AttributeValue::N(c.token_exp.to_string()),
            "{pk} / {sk}"
        );
    }

    store.unsubscribe(&c.id, &bot).await.unwrap();
    assert!(raw_partition(&client, table, &bot_pk).await.is_empty());
    assert_eq!(raw_partition(&client, table, &conn_pk).await.len(), 1);
    store.subscribe(&c, &bot).await.unwrap();
    store.remove(&c.id).await.unwrap();
    assert!(raw_partition(&client, table, &bot_pk).await.is_empty());
    assert!(raw_partition(&client, table, &conn_pk).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_many_subscriptions_takes_several_batches() {
    let (client, table) = (client(), table().await);
    let store = DynamoConnections::new(client.clone(), table);
    let bots: Vec<BotId> = (0..30).map(|_| fresh_bot("batch")).collect();
    let c = fresh_connection(&bots.iter().collect::<Vec<_>>());
    store.put(&c).await.unwrap();
    for bot in &bots {
        store.subscribe(&c, bot).await.unwrap();
    }
    // 60 items to delete: three BatchWriteItem calls of at most 25.
    store.remove(&c.id).await.unwrap();
    let conn_pk = format!("CONN#{}", c.id);
    assert!(raw_partition(&client, table, &conn_pk).await.is_empty());
    for bot in &bots {
        assert!(store.subscribers(bot).await.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_items_are_ignored_until_ttl_deletes_them() {
    let (client, table) = (client(), table().await);
    let store = DynamoConnections::new(client.clone(), table);
    let bot = fresh_bot("expired");
    let live = fresh_connection(&[&bot]);
    store.put(&live).await.unwrap();
    store.subscribe(&live, &bot).await.unwrap();

    // What DynamoDB's TTL has not yet deleted: a subscription and a record past their expiry.
    let mut stale = fresh_connection(&[&bot]);
    stale.expires_at = Utc::now().timestamp() - 60;
    store.put(&stale).await.unwrap();
    let mut item = str_item(&[
        ("pk", &format!("BOT#{bot}")),
        ("sk", &format!("CONN#{}", stale.id)),
    ]);
    item.insert(
        "expires_at".into(),
        AttributeValue::N(stale.expires_at.to_string()),
    );
    raw_put(&client, table, item).await;

    assert_eq!(
        ids(store.subscribers(&bot).await.unwrap()),
        vec![live.id.clone()]
    );
    assert_eq!(store.get(&stale.id).await.unwrap(), None);
    // Subscribing an expired or unknown connection writes nothing.
    let other = fresh_bot("expired");
    store.subscribe(&stale, &other).await.unwrap();
    let unknown: Connection = fresh_connection(&[&other]);
    store.subscribe(&unknown, &other).await.unwrap();
    assert!(
        raw_partition(&client, table, &format!("BOT#{other}"))
            .await
            .is_empty()
    );
    assert!(
        raw_partition(&client, table, &format!("CONN#{}", unknown.id))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undecodable_items_are_reported_as_corrupt() {
    let (client, table) = (client(), table().await);
    let store = DynamoConnections::new(client.clone(), table);
    let bot = fresh_bot("bad");
    let c = fresh_connection(&[&bot]);
    store.put(&c).await.unwrap();
    let conn_pk = format!("CONN#{}", c.id);
    let mut meta = raw_get(&client, table, &conn_pk, "META").await.unwrap();
    meta.insert("scope".into(), AttributeValue::S("admin".into()));
    raw_put(&client, table, meta).await;
    assert!(matches!(
        store.get(&c.id).await,
        Err(StoreError::Corrupt(_))
    ));

    let mut item = str_item(&[("pk", &format!("BOT#{bot}")), ("sk", "CONN#not an id!")]);
    item.insert(
        "expires_at".into(),
        AttributeValue::N(c.expires_at.to_string()),
    );
    raw_put(&client, table, item).await;
    assert!(matches!(
        store.subscribers(&bot).await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_endpoint_is_unavailable_and_the_error_names_no_secret() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:1")
        .region(Region::new("us-east-1"))
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret-that-must-not-leak",
            None,
            None,
            "test",
        ));
    let store = DynamoConnections::new(Client::from_conf(config.build()), "connections");
    let c = fresh_connection(&[&fresh_bot("down")]);
    let err = store.get(&c.id).await.unwrap_err();
    let StoreError::Unavailable(message) = &err else {
        panic!("expected Unavailable, got {err:?}")
    };
    assert!(message.contains("GetItem"), "{message}");
    assert!(!message.contains("secret-that-must-not-leak"), "{message}");
    assert!(!message.contains("AKIDEXAMPLE"), "{message}");
    assert!(matches!(
        store.subscribers(&fresh_bot("down")).await,
        Err(StoreError::Unavailable(_))
    ));
}

/// Runs a `$disconnect` (a `remove` on another client) just before the first transaction a
/// client sends: the race between `subscribe` and `remove`, made deterministic.
#[derive(Debug)]
struct RemoveBeforeTransaction {
    table: String,
    connection: relay_core::ports::connections::ConnectionId,
    done: std::sync::atomic::AtomicBool,
}

impl Intercept for RemoveBeforeTransaction {
    fn name(&self) -> &'static str {
        "remove before transaction"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target");
        if target.is_some_and(|t| t.ends_with(".TransactWriteItems"))
            && !self.done.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let (table, id) = (self.table.clone(), self.connection.clone());
            // Interceptors are synchronous: run the removal on its own thread and runtime.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(DynamoConnections::new(client(), table).remove(&id))
            })
            .join()
            .map_err(|_| "the removal panicked")??;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscribe_racing_a_remove_leaves_nothing_behind() {
    let table = table().await;
    let bot = fresh_bot("race");
    let c = fresh_connection(&[&bot]);
    let racer = RemoveBeforeTransaction {
        table: table.to_owned(),
        connection: c.id.clone(),
        done: Default::default(),
    };
    let config = client().config().to_builder().interceptor(racer).build();
    let store = DynamoConnections::new(Client::from_conf(config), table);
    store.put(&c).await.unwrap();
    // The record is read, then removed, then the transaction's condition on it fails.
    store.subscribe(&c, &bot).await.unwrap();

    let raw = client();
    assert!(
        raw_partition(&raw, table, &format!("CONN#{}", c.id))
            .await
            .is_empty()
    );
    assert!(
        raw_partition(&raw, table, &format!("BOT#{bot}"))
            .await
            .is_empty()
    );
    assert!(store.subscribers(&bot).await.unwrap().is_empty());
}
