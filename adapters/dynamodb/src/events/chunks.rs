//! Bodies too big for one item: written as chunk items before the transaction that makes them
//! reachable, read back in order and checked against their hash.

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use relay_core::domain::event::{EventId, StoredEvent};
use relay_core::ports::store::StoreError;

use super::body::{CHUNK_BYTES, chunk_prefix, decompress};
use super::item::{BodyRef, ChunkDoc, EventItem, KIND_CHUNK};
use super::{CHUNKS_PER_BATCH, DynamoStore, MAX_BATCH_ATTEMPTS, race_backoff};
use crate::attr::{corrupt, get_b, get_s, s, to_item};
use crate::error::{build_error, unavailable};

impl DynamoStore {
    /// Writes a body's chunks before the transaction that makes them reachable. Their keys are
    /// content-addressed, so a retry rewrites identical items; chunks of a delivery that lost
    /// the race are unreachable and expire by TTL.
    pub(super) async fn write_chunks(
        &self,
        pk: &str,
        event_id: &EventId,
        hash: &str,
        chunks: &[Vec<u8>],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let prefix = chunk_prefix(event_id, hash);
        for (batch_no, batch) in chunks.chunks(CHUNKS_PER_BATCH).enumerate() {
            let mut requests = Vec::with_capacity(batch.len());
            for (i, data) in batch.iter().enumerate() {
                let index = batch_no * CHUNKS_PER_BATCH + i;
                let item = to_item(&ChunkDoc {
                    pk: pk.to_owned(),
                    sk: format!("{prefix}{index:04}"),
                    kind: KIND_CHUNK.to_owned(),
                    data: serde_bytes::ByteBuf::from(data.clone()),
                    expires_at,
                })?;
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| build_error("chunk put", &e))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            self.batch_write(requests).await?;
        }
        Ok(())
    }

    pub(super) async fn batch_write(
        &self,
        mut requests: Vec<WriteRequest>,
    ) -> Result<(), StoreError> {
        for attempt in 0..MAX_BATCH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(race_backoff(attempt)).await;
            }
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| unavailable(&self.table, "BatchWriteItem (chunks)", &e))?;
            requests = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&self.table))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "dynamodb BatchWriteItem (chunks): {} items still unprocessed after {MAX_BATCH_ATTEMPTS} attempts",
            requests.len()
        )))
    }

    /// Turns a parsed event item into a [`StoredEvent`], fetching its chunks if it has any.
    pub(super) async fn load(&self, pk: &str, item: EventItem) -> Result<StoredEvent, StoreError> {
        let EventItem { mut meta, body } = item;
        meta.body = match body {
            BodyRef::Inline(bytes) => decompress(&meta.event_id, &bytes, None)?,
            BodyRef::Chunked { count, hash } => {
                let bytes = self.read_chunks(pk, &meta.event_id, &hash, count).await?;
                decompress(&meta.event_id, &bytes, Some(&hash))?
            }
        };
        Ok(meta)
    }

    pub(super) async fn read_chunks(
        &self,
        pk: &str,
        event_id: &EventId,
        hash: &str,
        count: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let prefix = chunk_prefix(event_id, hash);
        let mut data = Vec::with_capacity(count * CHUNK_BYTES);
        let mut seen = 0;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":prefix", s(&prefix))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable(&self.table, "Query (body chunks)", &e))?;
            for item in out.items() {
                if get_s(item, "sk")? != format!("{prefix}{seen:04}") {
                    return Err(corrupt(item, "body chunk out of sequence"));
                }
                data.extend_from_slice(get_b(item, "data")?);
                seen += 1;
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        if seen != count {
            return Err(StoreError::Corrupt(format!(
                "body of {event_id} has {seen} of {count} chunks"
            )));
        }
        Ok(data)
    }
}
