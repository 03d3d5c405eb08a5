//! The local host's stream emulation: what feeds stored events to the fan-out. On AWS it is
//! the events table's DynamoDB stream polled by a Lambda event source mapping; `relay serve`
//! runs [`run_mapping`], which behaves like that mapping (ReportBatchItemFailures, bounded
//! retries with backoff, retry from the failing record, an on-failure destination) over a
//! [`StreamSource`]: the SQLite change feed ([`sqlite`], read as domain events) or a real
//! DynamoDB Streams API ([`dynamodb`], decoded by the DynamoDB adapter as on AWS).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use relay_core::StoreError;
use relay_core::handlers::fanout::{FanoutHandler, StreamedEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub mod dynamodb;
pub mod sqlite;

/// One record of the stream, as the source read it.
// Nearly every record is an event: boxing it would cost an allocation per record to save
// space only on the rare undecodable one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Record {
    Event(StreamedEvent),
    /// A record the source could not turn into an event: it fails every attempt, then goes
    /// to the dead letters, as an undecodable record does on AWS.
    Undecodable {
        record_id: String,
        error: String,
    },
    /// A stream record as the event source mapping hands it to the fan-out function
    /// (`relay serve --lambda-endpoint`), with what this host read of it (for its logs and dead
    /// letters: an event or an undecodable record, never another `Lambda`).
    Lambda(Box<LambdaRecord>),
}

#[derive(Debug, Clone)]
pub struct LambdaRecord {
    pub raw: aws_lambda_events::dynamodb::EventRecord,
    pub decoded: Record,
}

impl Record {
    pub fn id(&self) -> &str {
        match self {
            Record::Event(e) => &e.record_id,
            Record::Undecodable { record_id, .. } => record_id,
            Record::Lambda(r) => r.decoded.id(),
        }
    }

    fn letter(&self, attempts: u32) -> DeadLetter {
        let failed_at = chrono::Utc::now().to_rfc3339();
        match self {
            Record::Lambda(r) => r.decoded.letter(attempts),
            Record::Event(e) => DeadLetter {
                failed_at,
                attempts,
                sequence_number: Some(e.record_id.clone()),
                bot_id: Some(e.event.bot_id.to_string()),
                event_id: Some(e.event.event_id.to_string()),
                seq: Some(e.event.seq.to_string()),
                record: json!({
                    "bot_id": e.event.bot_id,
                    "event_id": e.event.event_id,
                    "seq": e.event.seq,
                    "event": e.event.kind,
                    "source_event": e.event.source_event,
                    "received_at": e.event.received_at,
                }),
            },
            Record::Undecodable { record_id, error } => DeadLetter {
                failed_at,
                attempts,
                sequence_number: Some(record_id.clone()),
                bot_id: None,
                event_id: None,
                seq: None,
                record: json!({ "error": error }),
            },
        }
    }
}

#[async_trait]
pub trait StreamSource: Send {
    /// The next records after those already returned, oldest first, at most `max`; waits
    /// until there is at least one.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>, StoreError>;
}

/// What processes a batch: the fan-out handler, as the Lambda runs it.
#[async_trait]
pub trait BatchHandler: Send + Sync {
    /// The id of the first record not delivered, if any.
    async fn handle_batch(&self, batch: &[Record]) -> Option<String>;
}

#[async_trait]
impl BatchHandler for FanoutHandler {
    async fn handle_batch(&self, batch: &[Record]) -> Option<String> {
        let mut events = Vec::with_capacity(batch.len());
        let mut undecodable = None;
        for record in batch {
            let record = match record {
                Record::Lambda(r) => &r.decoded,
                r => r,
            };
            match record {
                Record::Event(e) => events.push(e.clone()),
                Record::Lambda(_) => {}
                Record::Undecodable { record_id, error } => {
                    tracing::error!(
                        sequence_number = record_id,
                        error,
                        "undecodable stream record"
                    );
                    undecodable = Some(record_id.clone());
                    break;
                }
            }
        }
        self.handle(events).await.failed.or(undecodable)
    }
}

/// Dead-letter file of the local stream mapping, in the data dir.
pub const DEAD_LETTERS: &str = "dead-letters.jsonl";

/// A record that failed every attempt, as kept by the on-failure destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub failed_at: String,
    pub attempts: u32,
    pub sequence_number: Option<String>,
    pub bot_id: Option<String>,
    pub event_id: Option<String>,
    pub seq: Option<String>,
    pub record: serde_json::Value,
}

/// The on-failure destination of the local mapping: one JSON line per dead record, in the
/// data dir, listed by `relay dlq list`.
pub struct FileDeadLetters {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileDeadLetters {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    pub fn put(&self, letter: &DeadLetter) -> std::io::Result<()> {
        let _guard = self
            .lock
            .lock()
            .map_err(|_| std::io::Error::other("dead-letter lock poisoned"))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut line = serde_json::to_vec(letter).map_err(std::io::Error::other)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_all()
    }

    pub fn list(path: &Path) -> std::io::Result<Vec<DeadLetter>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// The mapping's knobs; defaults follow the SAM template's event source mapping.
#[derive(Debug, Clone, Copy)]
pub struct MappingConfig {
    pub batch_size: usize,
    /// Attempts per record before it goes to the dead letters (1 + MaximumRetryAttempts).
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for MappingConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            max_attempts: 5,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl MappingConfig {
    /// Exponential: `base_backoff` × 2^`failures`, at most `max_backoff`.
    fn backoff(&self, failures: u32) -> Duration {
        self.base_backoff
            .saturating_mul(1u32 << failures.min(16))
            .min(self.max_backoff)
    }
}

/// Runs for as long as the process does, like an event source mapping. Batches go to
/// `handler`; a reported failure retries from that record (never re-sending those before it)
/// with exponential backoff, and a record that fails `max_attempts` times goes to `dead` so the
/// records after it still flow. A failed read of the stream (the store unreachable or slow) is
/// retried with backoff from the same position: an outage delays delivery, it never ends it.
pub async fn run_mapping(
    mut source: impl StreamSource,
    handler: &dyn BatchHandler,
    dead: &FileDeadLetters,
    config: MappingConfig,
) {
    let mut pending: Vec<Record> = Vec::new();
    let mut attempts: u32 = 0;
    let mut read_failures: u32 = 0;
    loop {
        if pending.is_empty() {
            match source.next_batch(config.batch_size).await {
                Ok(batch) => {
                    pending = batch;
                    read_failures = 0;
                }
                Err(e) => {
                    read_failures = read_failures.saturating_add(1);
                    let backoff = config.backoff(read_failures);
                    tracing::warn!(
                        error = %e,
                        read_failures,
                        backoff_ms = backoff.as_millis() as u64,
                        "reading the stream failed; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
            attempts = 0;
            if pending.is_empty() {
                continue;
            }
        }
        let failed = handler.handle_batch(&pending).await;
        let failed_at = failed.and_then(|id| pending.iter().position(|r| r.id() == id));
        let Some(k) = failed_at else {
            pending.clear();
            continue;
        };
        // Records before the failure were delivered: drop them, retry from the failure.
        if k > 0 {
            pending.drain(..k);
            attempts = 0;
        }
        attempts += 1;
        if attempts >= config.max_attempts {
            let record = pending.remove(0);
            let letter = record.letter(attempts);
            tracing::error!(
                sequence_number = letter.sequence_number,
                bot_id = letter.bot_id,
                event_id = letter.event_id,
                attempts,
                "record sent to the dead letters"
            );
            if let Err(e) = dead.put(&letter) {
                tracing::error!(error = %e, "writing a dead letter failed");
            }
            attempts = 0;
            continue;
        }
        let backoff = config.backoff(attempts);
        tracing::warn!(
            attempts,
            backoff_ms = backoff.as_millis() as u64,
            retry_from = pending[0].id(),
            "batch failed; retrying from the failed record"
        );
        tokio::time::sleep(backoff).await;
    }
}
