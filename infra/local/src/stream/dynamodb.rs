//! A real DynamoDB Streams API as the stream source (`relay serve --dynamodb-endpoint`): the
//! events table's stream is read shard by shard, as the Lambda event source mapping does, and
//! each record decoded by the DynamoDB adapter exactly as the fan-out function decodes it.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::dynamodb::{EventRecord, StreamRecord, StreamViewType};
use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, ShardIteratorType};

use relay_core::StoreError;
use relay_dynamodb::stream::{Decoded, decode};

use super::{Record, StreamSource};

pub struct DynamoStreams {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Open shards and where reading each has got to.
    iterators: HashMap<String, String>,
    /// The sequence number of the last record read from each shard: where to pick up again
    /// when an iterator has expired (15 minutes unused, e.g. through an outage).
    last_read: HashMap<String, String>,
    poll: Duration,
    /// `--lambda-endpoint`: the event source mapping's filters; the records they let through
    /// are kept whole, for the fan-out function (none: records are decoded here only).
    lambda_filters: Option<Vec<serde_json::Value>>,
}

fn unavailable(op: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("dynamodb streams {op}: {e}"))
}

impl DynamoStreams {
    /// Reads the stream of `table` from now on (iterator type LATEST).
    pub async fn latest(
        config: &aws_config::SdkConfig,
        table: &str,
        poll: Duration,
    ) -> Result<Self, StoreError> {
        let ddb = aws_sdk_dynamodb::Client::new(config);
        let desc = ddb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| {
                unavailable(
                    "DescribeTable",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e),
                )
            })?;
        let stream_arn = desc
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| StoreError::Unavailable(format!("table {table} has no stream")))?
            .to_owned();
        let mut me = Self {
            client: aws_sdk_dynamodbstreams::Client::new(config),
            stream_arn,
            iterators: HashMap::new(),
            last_read: HashMap::new(),
            poll,
            lambda_filters: None,
        };
        me.refresh_shards(ShardIteratorType::Latest).await?;
        Ok(me)
    }

    /// Keeps the records `filters` let through whole, for the fan-out function, and only those.
    pub fn for_lambda(mut self, filters: Vec<serde_json::Value>) -> Self {
        self.lambda_filters = Some(filters);
        self
    }

    /// What one stream record becomes for the mapping.
    fn record(&self, r: &aws_sdk_dynamodbstreams::types::Record) -> Option<Record> {
        let raw = convert(r);
        let decoded = match decode(&raw) {
            Decoded::Event(e) => Some(Record::Event(e)),
            Decoded::Skip => None,
            Decoded::Undecodable { record_id, error } => Some(Record::Undecodable {
                record_id,
                error: error.to_string(),
            }),
        };
        match &self.lambda_filters {
            None => decoded,
            Some(filters) => crate::lambda::stream::passes(filters, &raw).then(|| {
                let decoded = decoded.unwrap_or_else(|| Record::Undecodable {
                    record_id: raw.change.sequence_number.clone().unwrap_or_default(),
                    error: "not an event item".to_owned(),
                });
                Record::Lambda(Box::new(super::LambdaRecord { raw, decoded }))
            }),
        }
    }

    async fn refresh_shards(&mut self, kind: ShardIteratorType) -> Result<(), StoreError> {
        let out = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .map_err(|e| {
                unavailable(
                    "DescribeStream",
                    aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e),
                )
            })?;
        let shards = out
            .stream_description()
            .map(|d| d.shards().to_vec())
            .unwrap_or_default();
        for shard in shards {
            let Some(id) = shard.shard_id() else { continue };
            let open = shard
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_none();
            if !open || self.iterators.contains_key(id) {
                continue;
            }
            let it = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(id)
                .shard_iterator_type(kind.clone())
                .send()
                .await
                .map_err(|e| {
                    unavailable(
                        "GetShardIterator",
                        aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e),
                    )
                })?;
            if let Some(iterator) = it.shard_iterator() {
                self.iterators.insert(id.to_owned(), iterator.to_owned());
            }
        }
        Ok(())
    }

    /// A fresh iterator for `shard` just after the last record read from it (from its start if
    /// none was read yet, so nothing written meanwhile is skipped).
    async fn resume_after_expiry(&mut self, shard: &str) -> Result<(), StoreError> {
        let req = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard);
        let req = match self.last_read.get(shard) {
            Some(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
            None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let it = req.send().await.map_err(|e| {
            unavailable(
                "GetShardIterator",
                aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e),
            )
        })?;
        match it.shard_iterator() {
            Some(iterator) => {
                self.iterators.insert(shard.to_owned(), iterator.to_owned());
            }
            None => {
                self.iterators.remove(shard);
            }
        }
        Ok(())
    }
}

fn to_stream_value(v: &AttributeValue) -> serde_dynamo::AttributeValue {
    use serde_dynamo::AttributeValue as D;
    match v {
        AttributeValue::S(s) => D::S(s.clone()),
        AttributeValue::N(n) => D::N(n.clone()),
        AttributeValue::B(b) => D::B(b.as_ref().to_vec()),
        AttributeValue::Bool(b) => D::Bool(*b),
        AttributeValue::Null(b) => D::Null(*b),
        AttributeValue::M(m) => D::M(
            m.iter()
                .map(|(k, v)| (k.clone(), to_stream_value(v)))
                .collect(),
        ),
        AttributeValue::L(l) => D::L(l.iter().map(to_stream_value).collect()),
        AttributeValue::Ss(v) => D::Ss(v.clone()),
        AttributeValue::Ns(v) => D::Ns(v.clone()),
        AttributeValue::Bs(v) => D::Bs(v.iter().map(|b| b.as_ref().to_vec()).collect()),
        _ => D::Null(true),
    }
}

fn image(m: Option<&HashMap<String, AttributeValue>>) -> serde_dynamo::Item {
    let map: HashMap<String, serde_dynamo::AttributeValue> = m
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), to_stream_value(v)))
                .collect()
        })
        .unwrap_or_default();
    serde_dynamo::Item::from(map)
}

fn convert(r: &aws_sdk_dynamodbstreams::types::Record) -> EventRecord {
    let mut change = StreamRecord::default();
    if let Some(d) = r.dynamodb() {
        change.keys = image(d.keys.as_ref());
        change.new_image = image(d.new_image.as_ref());
        change.old_image = image(d.old_image.as_ref());
        change.sequence_number = d.sequence_number().map(str::to_owned);
        change.size_bytes = d.size_bytes().unwrap_or(0);
        change.stream_view_type = Some(StreamViewType::NewImage);
    }
    let mut record = EventRecord::default();
    record.event_id = r.event_id().unwrap_or_default().to_owned();
    record.event_name = match r.event_name() {
        Some(OperationType::Insert) => "INSERT",
        Some(OperationType::Modify) => "MODIFY",
        Some(OperationType::Remove) => "REMOVE",
        _ => "UNKNOWN",
    }
    .to_owned();
    record.event_source = Some("aws:dynamodb".to_owned());
    record.change = change;
    record
}

#[async_trait]
impl StreamSource for DynamoStreams {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>, StoreError> {
        loop {
            let mut records = Vec::new();
            let shards: Vec<(String, String)> = self
                .iterators
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut closed = false;
            for (shard, iterator) in shards {
                let out = match self
                    .client
                    .get_records()
                    .shard_iterator(iterator)
                    .limit(max.clamp(1, 1000) as i32)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) => {
                        if e.as_service_error()
                            .is_some_and(|s| s.is_expired_iterator_exception())
                        {
                            self.resume_after_expiry(&shard).await?;
                            continue;
                        }
                        // Records already read from other shards moved their iterators on:
                        // hand them over rather than lose them; this shard is read again next.
                        if !records.is_empty() {
                            return Ok(records);
                        }
                        return Err(unavailable(
                            "GetRecords",
                            aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e),
                        ));
                    }
                };
                if let Some(last) = out
                    .records()
                    .last()
                    .and_then(|r| r.dynamodb())
                    .and_then(|d| d.sequence_number())
                {
                    self.last_read.insert(shard.clone(), last.to_owned());
                }
                records.extend(out.records().iter().filter_map(|r| self.record(r)));
                match out.next_shard_iterator() {
                    Some(next) => {
                        self.iterators.insert(shard, next.to_owned());
                    }
                    None => {
                        self.iterators.remove(&shard);
                        closed = true;
                    }
                }
                if records.len() >= max {
                    break;
                }
            }
            if closed {
                // A closed shard's children hold what comes next; read them from their start.
                self.refresh_shards(ShardIteratorType::TrimHorizon).await?;
            }
            if !records.is_empty() {
                return Ok(records);
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
