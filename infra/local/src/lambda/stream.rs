//! The event source mapping in front of the fan-out function: the records its filter lets
//! through, in the DynamoDB stream event JSON AWS hands the function, and its
//! `batchItemFailures` answer read back into where the batch is retried from.

use async_trait::async_trait;
use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::DynamoDbEventResponse;
use serde_json::Value;

use super::Invoker;
use crate::stream::{BatchHandler, Record};

/// Whether `pattern` uses only what [`matches`] evaluates: nested objects whose leaves are
/// arrays of exact values (strings, numbers, booleans, null), as the template's filter does.
pub fn check_pattern(pattern: &Value) -> Result<(), String> {
    match pattern {
        Value::Object(fields) => fields.values().try_for_each(check_pattern),
        Value::Array(values) => values.iter().try_for_each(|v| match v {
            Value::Object(_) | Value::Array(_) => Err(format!(
                "content filter {v} (only exact values are evaluated here)"
            )),
            _ => Ok(()),
        }),
        other => Err(format!(
            "{other} is neither an object nor an array of values"
        )),
    }
}

/// Lambda's event filtering on one record (its JSON as the function receives it): every
/// field of the pattern is present and equal to one of the pattern's values.
pub fn matches(pattern: &Value, record: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields
            .iter()
            .all(|(name, sub)| record.get(name).is_some_and(|value| matches(sub, value))),
        Value::Array(values) => values.iter().any(|v| v == record),
        _ => false,
    }
}

/// Whether the mapping's filters let `record` through (no filter: every record).
pub fn passes(filters: &[Value], record: &EventRecord) -> bool {
    if filters.is_empty() {
        return true;
    }
    match serde_json::to_value(record) {
        Ok(json) => filters.iter().any(|p| matches(p, &json)),
        Err(_) => false,
    }
}

/// The fan-out function behind the Invoke API, as the mapping invokes it.
pub struct InvokeFanout {
    pub invoker: Invoker,
    pub function: String,
}

#[async_trait]
impl BatchHandler for InvokeFanout {
    async fn handle_batch(&self, batch: &[Record]) -> Option<String> {
        let first = batch.first().map(|r| r.id().to_owned());
        let mut records = Vec::with_capacity(batch.len());
        for record in batch {
            match record {
                Record::Lambda(r) => records.push(r.raw.clone()),
                // Not read from a stream: nothing an AWS function would be handed.
                _ => {
                    tracing::error!(
                        sequence_number = record.id(),
                        "a record without its stream image"
                    );
                    return Some(record.id().to_owned());
                }
            }
        }
        let mut event = Event::default();
        event.records = records;
        match self.invoker.invoke(&self.function, &event).await {
            Ok(bytes) => match serde_json::from_slice::<DynamoDbEventResponse>(&bytes) {
                // The mapping retries from the lowest sequence number reported.
                Ok(resp) => batch
                    .iter()
                    .map(Record::id)
                    .find(|id| {
                        resp.batch_item_failures
                            .iter()
                            .any(|f| f.item_identifier.as_deref() == Some(*id))
                    })
                    .map(str::to_owned)
                    .or_else(|| {
                        // A failure naming no record of the batch fails all of it.
                        (!resp.batch_item_failures.is_empty())
                            .then(|| first.clone())
                            .flatten()
                    }),
                Err(e) => {
                    tracing::error!(error = %e, "the fan-out's answer is not a batch response");
                    first
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "fan-out invocation failed");
                first
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_templates_filter_passes_only_new_event_items() {
        let pattern: Value =
            json!({"eventName":["INSERT"],"dynamodb":{"NewImage":{"kind":{"S":["event"]}}}});
        assert!(check_pattern(&pattern).is_ok());
        let event = json!({"eventName":"INSERT","dynamodb":{"NewImage":{"kind":{"S":"event"},"pk":{"S":"b"}}}});
        let session =
            json!({"eventName":"INSERT","dynamodb":{"NewImage":{"kind":{"S":"session"}}}});
        let modify = json!({"eventName":"MODIFY","dynamodb":{"NewImage":{"kind":{"S":"event"}}}});
        let removal = json!({"eventName":"REMOVE","dynamodb":{}});
        assert!(matches(&pattern, &event));
        assert!(!matches(&pattern, &session));
        assert!(!matches(&pattern, &modify));
        assert!(!matches(&pattern, &removal));
    }

    #[test]
    fn content_filters_it_cannot_evaluate_are_refused() {
        assert!(check_pattern(&json!({"eventName":[{"prefix":"IN"}]})).is_err());
        assert!(check_pattern(&json!({"eventName":"INSERT"})).is_err());
    }
}
