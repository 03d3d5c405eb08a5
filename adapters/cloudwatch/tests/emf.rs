//! The EMF lines a Lambda writes, from the recorder the mains install, through the wrapper
//! they run their service in, after known traffic through the real core handlers (on the
//! SQLite stores): each line is one CloudWatch Embedded Metric Format document whose
//! `_aws.CloudWatchMetrics` names the namespace, the dimensions and the metrics it carries,
//! and the counts add up to exactly what was sent. One test: a process has one recorder.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue};
use relay_core::domain::auth::{AuthSettings, Authenticator};
use relay_core::handlers::fanout::{FanoutHandler, StreamedEvent};
use relay_core::handlers::webhook::WebhookHandler;
use relay_core::ports::connections::{ConnectionId, ConnectionStore};
use relay_core::ports::push::{PushError, Pusher};
use relay_core::ports::store::{
    Appended, EventPage, EventStore, OpenSession, Retention, StoreError,
};
use relay_core::testing::connection_contract::fresh_connection;
use relay_core::testing::store_contract::fresh_bot;
use relay_core::{BotId, EventId, NewEvent, Session, StoredEvent};
use relay_sqlite::{SqliteConnections, SqliteStore};
use serde_json::{Value, json};
use tower_service::Service;

const KEY: &str = "emf-test-key-0123456789";

/// The sink the recorder writes to: what stdout gets on Lambda.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("buffer").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// A store that is down: every call is `Unavailable` (the webhook's 503).
struct DownStore;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable("down for the test".into()))
}

#[async_trait]
impl EventStore for DownStore {
    async fn append(&self, _: NewEvent) -> Result<Appended, StoreError> {
        down()
    }
    async fn session(&self, _: &BotId) -> Result<Option<Session>, StoreError> {
        down()
    }
    async fn ensure_session(
        &self,
        _: &BotId,
        _: chrono::DateTime<chrono::Utc>,
    ) -> Result<Session, StoreError> {
        down()
    }
    async fn events_after(&self, _: &BotId, _: u64, _: u32) -> Result<EventPage, StoreError> {
        down()
    }
    async fn event(&self, _: &BotId, _: &EventId) -> Result<Option<StoredEvent>, StoreError> {
        down()
    }
    async fn open_sessions(
        &self,
        _: chrono::DateTime<chrono::Utc>,
        _: Option<&OpenSession>,
        _: u32,
    ) -> Result<Vec<OpenSession>, StoreError> {
        down()
    }
    async fn recent_sessions(&self, _: u32) -> Result<Vec<Session>, StoreError> {
        down()
    }
}

/// Posts succeed, except to the connections named gone or failing.
struct Posts {
    gone: ConnectionId,
    failing: ConnectionId,
}

#[async_trait]
impl Pusher for Posts {
    async fn send(&self, to: &ConnectionId, _: &str) -> Result<(), PushError> {
        if *to == self.gone {
            Err(PushError::Gone)
        } else if *to == self.failing {
            Err(PushError::Failed("injected".into()))
        } else {
            Ok(())
        }
    }
    async fn close(&self, _: &ConnectionId) -> Result<(), PushError> {
        Ok(())
    }
}

/// A Lambda handler service of the webhook kind: one delivery per call.
#[derive(Clone)]
struct Webhook(Arc<WebhookHandler>);

type Call<T> = Pin<Box<dyn Future<Output = Result<T, std::convert::Infallible>> + Send>>;

impl Service<(HeaderMap, String)> for Webhook {
    type Response = u16;
    type Error = std::convert::Infallible;
    type Future = Call<u16>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (headers, body): (HeaderMap, String)) -> Self::Future {
        let handler = self.0.clone();
        Box::pin(async move {
            Ok(handler
                .handle(&headers, body.as_bytes(), "emf-test")
                .await
                .status
                .as_u16())
        })
    }
}

/// A Lambda handler service of the fan-out kind: one stream batch per call.
#[derive(Clone)]
struct Fanout(Arc<FanoutHandler>);

impl Service<Vec<StreamedEvent>> for Fanout {
    type Response = Option<String>;
    type Error = std::convert::Infallible;
    type Future = Call<Option<String>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Vec<StreamedEvent>) -> Self::Future {
        let handler = self.0.clone();
        Box::pin(async move { Ok(handler.handle(batch).await.failed) })
    }
}

fn headers(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "x-meeting-baas-api-key",
        HeaderValue::from_str(key).expect("header"),
    );
    h
}

fn status_change(bot: &BotId, n: usize) -> String {
    json!({"event": "bot.status_change", "data": {"bot_id": bot.as_str(), "n": n, "status": {"code": "in_call_recording"}}})
        .to_string()
}

/// Checks one document's structure; returns its dimensions (name to value) and its metrics
/// (name to (unit, value)).
fn document(line: &Value) -> (HashMap<String, String>, HashMap<String, (String, Value)>) {
    let aws = &line["_aws"];
    assert!(
        aws["Timestamp"]
            .as_u64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "{line}"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert_eq!(directives.len(), 1, "{line}");
    let directive = &directives[0];
    assert_eq!(directive["Namespace"], relay_cloudwatch::NAMESPACE);
    let sets = directive["Dimensions"].as_array().expect("Dimensions");
    assert_eq!(sets.len(), 1, "one dimension set: {line}");
    let mut dimensions = HashMap::new();
    for name in sets[0].as_array().expect("dimension set") {
        let name = name.as_str().expect("dimension name");
        let value = line[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no value: {line}"));
        dimensions.insert(name.to_owned(), value.to_owned());
    }
    assert_eq!(
        dimensions
            .get(relay_cloudwatch::FUNCTION_DIMENSION)
            .map(String::as_str),
        Some("emf-test-function"),
        "{line}"
    );
    let mut metrics = HashMap::new();
    for metric in directive["Metrics"].as_array().expect("Metrics") {
        let name = metric["Name"].as_str().expect("Name");
        let unit = metric["Unit"].as_str().unwrap_or_default().to_owned();
        let value = line[name].clone();
        assert!(!value.is_null(), "{name} has no value: {line}");
        metrics.insert(name.to_owned(), (unit, value));
    }
    assert!(!metrics.is_empty(), "{line}");
    (dimensions, metrics)
}

/// Totals over every line: (metric, label value) to (sum of counts, or number of histogram
/// values), with the units seen.
#[derive(Default)]
struct Totals {
    counts: HashMap<(String, String), f64>,
    units: HashMap<String, String>,
}

impl Totals {
    fn of(lines: &[Value]) -> Totals {
        let mut t = Totals::default();
        for line in lines {
            let (dimensions, metrics) = document(line);
            let label = dimensions
                .iter()
                .find(|(k, _)| k.as_str() != relay_cloudwatch::FUNCTION_DIMENSION)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            for (name, (unit, value)) in metrics {
                let n = match &value {
                    Value::Array(values) => values.len() as f64,
                    v => v.as_f64().expect("a number"),
                };
                *t.counts.entry((name.clone(), label.clone())).or_default() += n;
                t.units.insert(name, unit);
            }
        }
        t
    }

    fn get(&self, metric: &str, label: &str) -> f64 {
        self.counts
            .get(&(metric.to_owned(), label.to_owned()))
            .copied()
            .unwrap_or(0.0)
    }
}

#[tokio::test]
async fn the_lambdas_emf_lines_carry_exactly_the_traffic() {
    use relay_core::telemetry::metrics as m;
    let out = Captured::default();
    relay_cloudwatch::install_to("emf-test-function", Box::new(out.clone())).expect("install");

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("events.sqlite3"), Retention::default()).expect("store"),
    );
    let auth = || {
        Authenticator::new(&AuthSettings {
            api_keys: AuthSettings::key_list(KEY),
            webhook_secret: None,
            callback_secret: None,
        })
        .expect("authenticator")
    };
    let mut webhook = relay_cloudwatch::flushing(Webhook(Arc::new(WebhookHandler::new(
        auth(),
        store.clone(),
        1 << 20,
    ))));
    let mut down = relay_cloudwatch::flushing(Webhook(Arc::new(WebhookHandler::new(
        auth(),
        Arc::new(DownStore),
        1 << 20,
    ))));

    let bot = fresh_bot("emf");
    let (accepted, duplicates, unauthorized, unavailable) = (3, 2, 2, 1);
    for i in 0..accepted {
        assert_eq!(
            webhook.call((headers(KEY), status_change(&bot, i))).await,
            Ok(200)
        );
        // Each invocation's lines are out when its call returns, before the next one.
        assert!(!out.lines().is_empty(), "flushed after invocation {i}");
    }
    for _ in 0..duplicates {
        assert_eq!(
            webhook.call((headers(KEY), status_change(&bot, 0))).await,
            Ok(200)
        );
    }
    for i in 0..unauthorized {
        assert_eq!(
            webhook
                .call((headers("wrong"), status_change(&bot, 10 + i)))
                .await,
            Ok(401)
        );
    }
    for i in 0..unavailable {
        assert_eq!(
            down.call((headers(KEY), status_change(&bot, 20 + i))).await,
            Ok(503)
        );
    }

    // One event to three watchers: one gets it, one has gone, one fails (the record is retried).
    let connections = Arc::new(
        SqliteConnections::open(&dir.path().join("connections.sqlite3")).expect("connections"),
    );
    let watchers: Vec<_> = (0..3).map(|_| fresh_connection(&[&bot])).collect();
    for c in &watchers {
        connections.put(c).await.expect("put");
        connections.subscribe(c, &bot).await.expect("subscribe");
    }
    let pusher = Arc::new(Posts {
        gone: watchers[1].id.clone(),
        failing: watchers[2].id.clone(),
    });
    let mut fanout =
        relay_cloudwatch::flushing(Fanout(Arc::new(FanoutHandler::new(connections, pusher, 4))));
    let stored = store.events_after(&bot, 0, 1).await.expect("events").events;
    let batch = vec![StreamedEvent {
        record_id: "record-1".into(),
        event: stored[0].clone(),
        body_inline: true,
    }];
    assert_eq!(fanout.call(batch).await, Ok(Some("record-1".to_owned())));

    let t = Totals::of(&out.lines());
    assert_eq!(t.get(m::WEBHOOKS, "accepted"), accepted as f64);
    assert_eq!(t.get(m::WEBHOOKS, "duplicate"), duplicates as f64);
    assert_eq!(t.get(m::WEBHOOKS, "unauthorized"), unauthorized as f64);
    assert_eq!(t.get(m::WEBHOOKS, "unavailable"), unavailable as f64);
    assert_eq!(t.get(m::EVENTS_STORED, "webhook"), accepted as f64);
    assert_eq!(
        t.get(m::INTAKE_SECONDS, ""),
        (accepted + duplicates + unauthorized + unavailable) as f64,
        "one intake time per delivery"
    );
    for outcome in ["sent", "gone", "failed"] {
        assert_eq!(t.get(m::FANOUT_DELIVERIES, outcome), 1.0, "{outcome}");
    }
    assert_eq!(t.get(m::FANOUT_BATCH_SECONDS, ""), 1.0);
    assert_eq!(t.get(m::DELIVERY_SECONDS, ""), 1.0);
    assert_eq!(t.units[m::WEBHOOKS], "Count");
    assert_eq!(t.units[m::INTAKE_SECONDS], "Seconds");
    assert_eq!(t.units[m::DELIVERY_SECONDS], "Seconds");
    assert!(
        !t.units.contains_key(m::CONNECTIONS_OPEN),
        "no open-connections gauge from a Lambda (a partial sum per instance)"
    );

    // A flush with nothing new writes nothing: counters are sent as their increase.
    let before = out.lines().len();
    relay_cloudwatch::flush();
    assert_eq!(out.lines().len(), before);
}
