//! Fan-out of stored events to the browsers watching their bot. Input: a DynamoDB stream batch
//! (the events table's NEW_IMAGE inserts, on AWS and as emulated by `relay serve`); output:
//! partial batch failures, so a failed record and the ones after it are retried and nothing
//! before it is sent again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::StreamExt;

use crate::bot_id::BotId;
use crate::connection::{ConnectionId, ConnectionStore};
use crate::message;
use crate::push::{PushError, Pusher};
use crate::store::dynamodb::event_from_stream_image;

/// Posts in flight at once per batch. 64 × ~20 ms per post on AWS is ~3,000 posts/s, well under
/// API Gateway's account-wide 10,000 requests/s, and enough for 10,000 subscribers in ~3 s.
pub const DEFAULT_CONCURRENCY: usize = 64;

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
            let targets = subscribers.get(&stored.bot_id).cloned().unwrap_or_default();
            if targets.is_empty() {
                continue;
            }
            let text = message::status_update(&stored, body_inline.then_some(stored.body.as_str()));
            let results: Vec<(ConnectionId, Result<(), PushError>)> =
                futures::stream::iter(targets)
                    .map(|id| {
                        let (pusher, text) = (self.pusher.clone(), &text);
                        async move {
                            let r = pusher.send(&id, text).await;
                            (id, r)
                        }
                    })
                    .buffer_unordered(self.concurrency)
                    .collect()
                    .await;
            let mut record_failed = false;
            for (id, r) in results {
                match r {
                    Ok(()) => report.sent += 1,
                    Err(PushError::Gone) => {
                        report.gone += 1;
                        if let Err(e) = self.connections.remove(&id).await {
                            tracing::warn!(connection_id = id.as_str(), error = %e, "removing a gone connection failed");
                        }
                        if let Some(list) = subscribers.get_mut(&stored.bot_id) {
                            list.retain(|c| c != &id);
                        }
                    }
                    Err(PushError::Failed(e)) => {
                        tracing::warn!(connection_id = id.as_str(), error = e, "post failed");
                        report.failed += 1;
                        record_failed = true;
                    }
                }
            }
            if record_failed {
                fail(&mut response);
                break;
            }
        }
        report.bots = subscribers.len();
        (response, report)
    }
}
