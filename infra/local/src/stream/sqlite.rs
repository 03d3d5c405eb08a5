//! The SQLite change feed as the local stream: each newly stored event, in commit order, with
//! its feed position as the record id (padded so that ids sort as text, like DynamoDB's
//! sequence numbers).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relay_core::StoreError;
use relay_core::handlers::fanout::StreamedEvent;
use relay_sqlite::SqliteStore;

use super::{Record, StreamSource};

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
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>, StoreError> {
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
            if let Some((last, _)) = rows.last() {
                self.position = *last;
            }
            return Ok(rows
                .into_iter()
                .map(|(position, event)| {
                    Record::Event(StreamedEvent {
                        record_id: sequence_number(position),
                        event,
                        body_inline: true,
                    })
                })
                .collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use relay_core::EventKind;
    use relay_core::ports::store::EventStore;
    use relay_core::testing::store_contract::{RETENTION, fresh_bot, new_event};
    use relay_sqlite::SqliteStore;

    use super::SqliteFeed;
    use crate::stream::{Record, StreamSource};

    /// An idle change feed is woken by the store's commit, not by its poll: with a poll of a minute,
    /// an event stored while the feed waits still comes out at once.
    #[tokio::test]
    async fn an_idle_feed_wakes_on_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteStore::open(&dir.path().join("events.sqlite3"), RETENTION).unwrap());
        let mut feed = SqliteFeed::latest(store.clone(), std::time::Duration::from_secs(60))
            .await
            .unwrap();
        let bot = fresh_bot("feed");
        let writer = store.clone();
        let append = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let body = relay_core::testing::testdata::v1_status_change(
                bot.as_str(),
                "joining_call",
                "2026-11-29T09:00:00Z",
            );
            writer
                .append(new_event(
                    &bot,
                    "k1",
                    EventKind::BotStatusChange,
                    Some("joining_call"),
                    body,
                ))
                .await
                .unwrap()
        });
        let batch = tokio::time::timeout(std::time::Duration::from_secs(20), feed.next_batch(10))
            .await
            .expect("the feed woke before its one-minute poll")
            .unwrap();
        append.await.unwrap();
        assert_eq!(batch.len(), 1);
        assert!(
            matches!(&batch[0], Record::Event(e) if e.event.seq == 1 && e.body_inline),
            "{batch:?}"
        );
    }
}
