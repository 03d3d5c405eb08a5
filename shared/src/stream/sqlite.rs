//! The SQLite change feed as a DynamoDB stream: each newly stored event becomes an INSERT
//! record whose NEW_IMAGE is the very item the DynamoDB adapter would have written, with the
//! feed position as its sequence number.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::dynamodb::{EventRecord, StreamRecord, StreamViewType};

use super::StreamSource;
use crate::store::StoreError;
use crate::store::dynamodb::stream_image;
use crate::store::sqlite::SqliteStore;

pub struct SqliteFeed {
    commits: tokio::sync::watch::Receiver<u64>,
    store: Arc<SqliteStore>,
    position: i64,
    idle_poll: Duration,
}

impl SqliteFeed {
    /// Starts after `position` (see [`SqliteFeed::latest`] for "only what comes next"). An
    /// idle feed wakes on the store's next commit; `idle_poll` is only a safety net.
    pub fn new(store: Arc<SqliteStore>, position: i64, idle_poll: Duration) -> Self {
        Self {
            commits: store.commits(),
            store,
            position,
            idle_poll,
        }
    }

    /// Like a stream iterator of type LATEST: only events stored from now on.
    pub async fn latest(store: Arc<SqliteStore>, idle_poll: Duration) -> Result<Self, StoreError> {
        let mut position = 0;
        loop {
            let rows = store.events_since_position(position, 1000).await?;
            match rows.last() {
                Some((p, _)) => position = *p,
                None => break,
            }
        }
        Ok(Self::new(store, position, idle_poll))
    }
}

/// DynamoDB sequence numbers are decimal strings that sort numerically; pad so they also sort
/// as text.
pub fn sequence_number(position: i64) -> String {
    format!("{position:021}")
}

#[async_trait]
impl StreamSource for SqliteFeed {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<EventRecord>, StoreError> {
        loop {
            // Seen before reading: a commit landing after the read still wakes the wait below.
            self.commits.borrow_and_update();
            let rows = self
                .store
                .events_since_position(self.position, max.clamp(1, 1000) as u32)
                .await?;
            if rows.is_empty() {
                // A closed channel (the writer gone) leaves only the timeout: no busy loop.
                if tokio::time::timeout(self.idle_poll, self.commits.changed())
                    .await
                    .is_ok_and(|r| r.is_err())
                {
                    tokio::time::sleep(self.idle_poll).await;
                }
                continue;
            }
            let mut records = Vec::with_capacity(rows.len());
            for (position, event) in &rows {
                let mut change = StreamRecord::default();
                change.approximate_creation_date_time = event.received_at;
                change.new_image = stream_image(event)?;
                let mut keys = serde_dynamo::Item::from(std::collections::HashMap::<
                    String,
                    serde_dynamo::AttributeValue,
                >::new());
                for k in ["pk", "sk"] {
                    if let Some(v) = change.new_image.get(k) {
                        keys.insert(k.to_owned(), v.clone());
                    }
                }
                change.keys = keys;
                change.sequence_number = Some(sequence_number(*position));
                change.size_bytes = event.body.len() as i64;
                change.stream_view_type = Some(StreamViewType::NewImage);
                let mut record = EventRecord::default();
                record.event_id = format!("{position:x}");
                record.event_name = "INSERT".to_owned();
                record.event_source = Some("aws:dynamodb".to_owned());
                record.event_version = Some("1.1".to_owned());
                record.aws_region = "local".to_owned();
                record.change = change;
                records.push(record);
            }
            if let Some((last, _)) = rows.last() {
                self.position = *last;
            }
            return Ok(records);
        }
    }
}
