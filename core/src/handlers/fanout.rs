//! Fan-out of stored events to the browsers watching their bot. Input: the events of one batch
//! of the store's change stream, in stream order, already decoded by the host (the DynamoDB
//! adapter decodes stream records on AWS; `relay serve` reads its SQLite feed); output: the
//! first record that failed, so it and the ones after it are retried and nothing before it is
//! sent again (the event source mapping's partial batch failures).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::task::{JoinError, JoinSet};

use crate::domain::bot_id::BotId;
use crate::domain::event::StoredEvent;
use crate::domain::message;
use crate::ports::connections::{ConnectionId, ConnectionStore, Subscriber};
use crate::ports::push::{PushError, Pusher};
use crate::telemetry::metrics as m;

/// Posts in flight at once per batch. 64 × ~20 ms per post on AWS is ~3,000 posts/s, well under
/// API Gateway's account-wide 10,000 requests/s, and enough for 10,000 subscribers in ~3 s.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// One post's outcome: the target's index and the post's result.
type Posted = (usize, Result<(), PushError>);

/// One stored event as the change stream carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedEvent {
    /// The stream record's id (a DynamoDB sequence number): what a failure names.
    pub record_id: String,
    pub event: StoredEvent,
    /// Whether `event.body` is the whole body; a body too big for one item is left out of the
    /// stream record (it never fits a browser message anyway: the message says `truncated`).
    pub body_inline: bool,
}

/// What the fan-out of one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanoutOutcome {
    /// The first record not fully delivered; it and every later record must be retried.
    pub failed: Option<String>,
    pub report: BatchReport,
}

pub struct FanoutHandler {
    connections: Arc<dyn ConnectionStore>,
    pusher: Arc<dyn Pusher>,
    concurrency: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub records: usize,
    pub events: usize,
    pub bots: usize,
    pub sent: usize,
    pub gone: usize,
    pub failed: usize,
    /// Connections whose token had expired: told so and closed instead of sent the event.
    pub expired: usize,
}

impl FanoutHandler {
    pub fn new(
        connections: Arc<dyn ConnectionStore>,
        pusher: Arc<dyn Pusher>,
        concurrency: usize,
    ) -> Self {
        Self {
            connections,
            pusher,
            concurrency: concurrency.max(1),
        }
    }

    pub async fn handle(&self, batch: Vec<StreamedEvent>) -> FanoutOutcome {
        let started = Instant::now();
        let outcome = self.process(batch).await;
        let report = &outcome.report;
        let elapsed = started.elapsed();
        metrics::histogram!(m::FANOUT_BATCH_SECONDS).record(elapsed.as_secs_f64());
        for (label, n) in [
            ("sent", report.sent),
            ("gone", report.gone),
            ("failed", report.failed),
            ("expired", report.expired),
        ] {
            if n > 0 {
                metrics::counter!(m::FANOUT_DELIVERIES, "outcome" => label).increment(n as u64);
            }
        }
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        tracing::info!(
            records = report.records,
            events = report.events,
            bots = report.bots,
            sent = report.sent,
            gone = report.gone,
            failed = report.failed,
            expired = report.expired,
            retry_from = outcome.failed.as_deref(),
            latency_ms,
            "fanout"
        );
        outcome
    }

    pub async fn process(&self, batch: Vec<StreamedEvent>) -> FanoutOutcome {
        let mut report = BatchReport {
            records: batch.len(),
            ..Default::default()
        };
        let mut subscribers: HashMap<BotId, Vec<Subscriber>> = HashMap::new();
        let mut failed = None;
        for record in batch {
            let StreamedEvent {
                record_id,
                event: stored,
                body_inline,
            } = record;
            report.events += 1;
            if !subscribers.contains_key(&stored.bot_id) {
                match self.connections.subscribers(&stored.bot_id).await {
                    Ok(list) => {
                        subscribers.insert(stored.bot_id.clone(), list);
                    }
                    Err(e) => {
                        tracing::warn!(bot_id = stored.bot_id.as_str(), error = %e, "subscriber lookup failed");
                        report.failed += 1;
                        failed = Some(record_id);
                        break;
                    }
                }
            }
            // A token's expiry binds its connection: past it, the connection is told and closed,
            // and gets no more events (it reconnects with a fresh token and `since`).
            if let Some(list) = subscribers.get_mut(&stored.bot_id) {
                let now = chrono::Utc::now().timestamp();
                let (live, expired): (Vec<Subscriber>, Vec<Subscriber>) = std::mem::take(list)
                    .into_iter()
                    .partition(|s| s.token_exp > now);
                *list = live;
                if !expired.is_empty() {
                    report.expired += expired.len();
                    self.expire_all(expired).await;
                }
            }
            // One rendering of the message per event, posted to every subscriber of its bot.
            let Some(targets) = subscribers.get(&stored.bot_id).filter(|t| !t.is_empty()) else {
                continue;
            };
            let targets: Vec<ConnectionId> = targets.iter().map(|s| s.id.clone()).collect();
            let text = message::status_update(&stored, body_inline.then_some(stored.body.as_str()));
            let results = self.post_all(&targets, &text).await;
            if results.iter().any(Result::is_ok) {
                record_delivery_latency(&stored);
            }
            let mut record_failed = false;
            let mut gone = HashSet::new();
            for (i, r) in results.into_iter().enumerate() {
                let id = &targets[i];
                match r {
                    Ok(()) => report.sent += 1,
                    Err(PushError::Gone) => {
                        report.gone += 1;
                        if let Err(e) = self.connections.remove(id).await {
                            tracing::warn!(connection_id = id.as_str(), error = %e, "removing a gone connection failed");
                        }
                        gone.insert(i);
                    }
                    Err(PushError::Failed(e)) => {
                        tracing::warn!(connection_id = id.as_str(), error = e, "post failed");
                        report.failed += 1;
                        record_failed = true;
                    }
                }
            }
            if !gone.is_empty()
                && let Some(list) = subscribers.get_mut(&stored.bot_id)
            {
                let mut i = 0;
                list.retain(|_| {
                    let keep = !gone.contains(&i);
                    i += 1;
                    keep
                });
            }
            if record_failed {
                failed = Some(record_id);
                break;
            }
        }
        report.bots = subscribers.len();
        FanoutOutcome { failed, report }
    }

    /// Tells each connection its token expired, closes it and forgets it, at most
    /// `concurrency` at once. Best effort: a connection that is already gone is just forgotten,
    /// and a failure leaves the record for the next event (which tries again).
    async fn expire_all(&self, expired: Vec<Subscriber>) {
        let text: Arc<str> = Arc::from(message::error(
            "token_expired",
            "token expired; reconnect with a fresh token and since",
        ));
        let mut in_flight = JoinSet::new();
        for s in expired {
            if in_flight.len() >= self.concurrency {
                let _ = in_flight.join_next().await;
            }
            let (pusher, connections, text) =
                (self.pusher.clone(), self.connections.clone(), text.clone());
            in_flight.spawn(async move {
                let id = s.id;
                let sent = pusher.send(&id, &text).await;
                let closed = match sent {
                    Err(PushError::Gone) => Err(PushError::Gone),
                    _ => pusher.close(&id).await,
                };
                match closed {
                    Ok(()) | Err(PushError::Gone) => {
                        if let Err(e) = connections.remove(&id).await {
                            tracing::warn!(connection_id = id.as_str(), error = %e, "removing an expired connection failed");
                        }
                    }
                    Err(PushError::Failed(e)) => {
                        tracing::warn!(connection_id = id.as_str(), error = e, "closing an expired connection failed");
                    }
                }
            });
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Posts `text` to every target, at most `concurrency` at once: each post is a task of its
    /// own, so that the client's work (the SDK operation, its HTTP exchange) runs on every worker
    /// thread rather than only on the one polling this batch. The result of each target, by index.
    async fn post_all(&self, targets: &[ConnectionId], text: &str) -> Vec<Result<(), PushError>> {
        let text: Arc<str> = Arc::from(text);
        let mut results: Vec<Option<Result<(), PushError>>> = vec![None; targets.len()];
        let mut in_flight = JoinSet::new();
        let mut store = |joined: Option<Result<Posted, JoinError>>| {
            // A post task that panicked leaves its slot empty: counted as a failed post below.
            if let Some(Ok((i, r))) = joined
                && let Some(slot) = results.get_mut(i)
            {
                *slot = Some(r);
            }
        };
        for (i, id) in targets.iter().enumerate() {
            if in_flight.len() >= self.concurrency {
                store(in_flight.join_next().await);
            }
            let (pusher, text, id) = (self.pusher.clone(), text.clone(), id.clone());
            in_flight.spawn(async move { (i, pusher.send(&id, &text).await) });
        }
        while !in_flight.is_empty() {
            store(in_flight.join_next().await);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(PushError::Failed("the post's task failed".into()))))
            .collect()
    }
}

/// The viewer's wait for `event`: its arrival at the relay to now, when its posts are done. A
/// clock that puts `received_at` in the future (another host's, a few ms ahead) counts as 0.
fn record_delivery_latency(event: &StoredEvent) {
    let waited = (chrono::Utc::now() - event.received_at)
        .to_std()
        .unwrap_or_default();
    metrics::histogram!(m::DELIVERY_SECONDS).record(waited.as_secs_f64());
}
