//! Fan-out of stored events to the browsers watching their bot. Input: a DynamoDB stream batch
//! (the events table's NEW_IMAGE inserts, on AWS and as emulated by `relay serve`); output:
//! partial batch failures, so a failed record and the ones after it are retried and nothing
//! before it is sent again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use tokio::task::{JoinError, JoinSet};

use crate::bot_id::BotId;
use crate::connection::{ConnectionId, ConnectionStore};
use crate::message;
use crate::push::{PushError, Pusher};
use crate::store::dynamodb::event_from_stream_image;

/// Posts in flight at once per batch. 64 × ~20 ms per post on AWS is ~3,000 posts/s, well under
/// API Gateway's account-wide 10,000 requests/s, and enough for 10,000 subscribers in ~3 s.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// One post's outcome: the target's index and the post's result.
type Posted = (usize, Result<(), PushError>);

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

    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let started = Instant::now();
        let (response, report) = self.process(event).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            records = report.records,
            events = report.events,
            bots = report.bots,
            sent = report.sent,
            gone = report.gone,
            failed = report.failed,
            retry_from = response
                .batch_item_failures
                .first()
                .and_then(|f| f.item_identifier.clone()),
            latency_ms,
            "fanout"
        );
        response
    }

    pub async fn process(&self, event: Event) -> (DynamoDbEventResponse, BatchReport) {
        let mut report = BatchReport {
            records: event.records.len(),
            ..Default::default()
        };
        let mut subscribers: HashMap<BotId, Vec<ConnectionId>> = HashMap::new();
        let mut response = DynamoDbEventResponse::default();
        for record in &event.records {
            let seq_number = record.change.sequence_number.clone();
            let fail = |response: &mut DynamoDbEventResponse| {
                let mut f = DynamoDbBatchItemFailure::default();
                f.item_identifier = seq_number.clone();
                response.batch_item_failures.push(f);
            };
            if record.event_name != "INSERT" {
                continue;
            }
            let (stored, body_inline) = match event_from_stream_image(&record.change.new_image) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => continue, // not an event item (session, idempotency record, chunk)
                Err(e) => {
                    tracing::error!(sequence_number = seq_number, error = %e, "undecodable stream record");
                    report.failed += 1;
                    fail(&mut response);
                    break;
                }
            };
            report.events += 1;
            if !subscribers.contains_key(&stored.bot_id) {
                match self.connections.subscribers(&stored.bot_id).await {
                    Ok(list) => {
                        subscribers.insert(stored.bot_id.clone(), list);
                    }
                    Err(e) => {
                        tracing::warn!(bot_id = stored.bot_id.as_str(), error = %e, "subscriber lookup failed");
                        report.failed += 1;
                        fail(&mut response);
                        break;
                    }
                }
            }
            // One rendering of the message per event, posted to every subscriber of its bot.
            let Some(targets) = subscribers.get(&stored.bot_id).filter(|t| !t.is_empty()) else {
                continue;
            };
            let text = message::status_update(&stored, body_inline.then_some(stored.body.as_str()));
            let results = self.post_all(targets, &text).await;
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
                fail(&mut response);
                break;
            }
        }
        report.bots = subscribers.len();
        (response, report)
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
