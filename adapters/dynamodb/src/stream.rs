//! The events table's stream records, decoded at the edge into the core's domain events: what
//! the fan-out function (and `relay serve` on a DynamoDB endpoint) hand the fan-out handler.

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use relay_core::domain::event::StoredEvent;
use relay_core::handlers::fanout::{FanoutHandler, StreamedEvent};
use relay_core::ports::store::StoreError;

use crate::events::{BodyRef, EventDoc, EventItem};

/// One stream record: an event to fan out, a record of another item kind (sessions,
/// idempotency records, chunks: nothing to send), or one that cannot be decoded.
#[derive(Debug)]
pub enum Decoded {
    Event(StreamedEvent),
    Skip,
    Undecodable {
        record_id: String,
        error: StoreError,
    },
}

/// Decodes one record of the events table's stream (INSERTs of NEW_IMAGEs).
pub fn decode(record: &EventRecord) -> Decoded {
    let record_id = record.change.sequence_number.clone().unwrap_or_default();
    if record.event_name != "INSERT" {
        return Decoded::Skip;
    }
    match event_from_stream_image(&record.change.new_image) {
        Ok(Some((event, body_inline))) => Decoded::Event(StreamedEvent {
            record_id,
            event,
            body_inline,
        }),
        Ok(None) => Decoded::Skip,
        Err(error) => Decoded::Undecodable { record_id, error },
    }
}

/// A stream batch through the fan-out: the records up to the first undecodable one go to the
/// handler; the first failure (the handler's, else the undecodable record) is reported so the
/// event source mapping retries from there and nothing before it is sent again.
pub async fn fan_out(handler: &FanoutHandler, batch: Event) -> DynamoDbEventResponse {
    let mut events = Vec::with_capacity(batch.records.len());
    let mut undecodable = None;
    for record in &batch.records {
        match decode(record) {
            Decoded::Event(e) => events.push(e),
            Decoded::Skip => {}
            Decoded::Undecodable { record_id, error } => {
                tracing::error!(sequence_number = record_id, error = %error, "undecodable stream record");
                undecodable = Some(record_id);
                break;
            }
        }
    }
    let outcome = handler.handle(events).await;
    let mut response = DynamoDbEventResponse::default();
    if let Some(id) = outcome.failed.or(undecodable) {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(id);
        response.batch_item_failures.push(failure);
    }
    response
}

/// Decodes a stream NEW_IMAGE. `Ok(None)`: not an event item (session, idempotency record,
/// chunk). The flag says whether the body was inline; a chunked body is left empty (it is far
/// too big for a browser message anyway; clients fetch it from the REST route).
pub fn event_from_stream_image(
    image: &serde_dynamo::Item,
) -> Result<Option<(StoredEvent, bool)>, StoreError> {
    match image.get("kind") {
        Some(serde_dynamo::AttributeValue::S(k)) if k == "event" => {}
        _ => return Ok(None),
    }
    let doc: EventDoc = serde_dynamo::from_item(image.clone())
        .map_err(|e| StoreError::Corrupt(format!("stream record of an event item: {e}")))?;
    let bot = doc.bot_id.clone();
    let EventItem { mut meta, body } = doc.into_event(&bot)?;
    match body {
        BodyRef::Inline(compressed) => {
            meta.body = crate::events::decompress_body(&meta.event_id, &compressed)?;
            Ok(Some((meta, true)))
        }
        BodyRef::Chunked { .. } => Ok(Some((meta, false))),
    }
}
