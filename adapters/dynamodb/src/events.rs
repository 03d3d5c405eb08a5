//! DynamoDB adapter of the event store: one table, one partition per bot, every write of an
//! event one transaction. The table design and its reasons are in `docs/dynamodb.md`; in short:
//!
//! | item | `sk` | holds |
//! |---|---|---|
//! | session | `SESSION` | the bot's [`Session`], whose `seq` is the last allocated event seq |
//! | event | `EVT#<seq:020>` | one [`StoredEvent`], body zstd-compressed inline or in chunks |
//! | idempotency | `IDEM#<event_id>` | `event_id → seq`, the duplicate check and the lookup by id |
//! | chunk | `BLOB#<event_id>#<hash16>#<nnnn>` | part of a compressed body too big for one item |
//!
//! An item whose `expires_at` has passed is treated as absent, as if TTL had already deleted it
//! (TTL deletes lazily, in no particular order).

use std::collections::HashMap;
use std::io::Write;
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, KeySchemaElement,
    KeyType, Put, PutRequest, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableDescription, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus, TransactWriteItem, WriteRequest,
};
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use relay_core::domain::bot_id::BotId;
use relay_core::domain::event::{EventId, EventKind, Family, NewEvent, StoredEvent};
use relay_core::domain::session::{Session, Status};
use relay_core::ports::store::{Appended, EventPage, EventStore, MAX_PAGE, Retention, StoreError};

pub(crate) type Item = HashMap<String, AttributeValue>;

/// Name of the TTL attribute every item carries.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// Largest compressed body (plus the event's other variable fields) kept inside the event
/// item; past it the body goes to chunk items. Leaves ~100 KB of the 400 KB item limit spare.
const INLINE_MAX: usize = 300_000;
/// Bytes of compressed body per chunk item: 350 KB of data plus a few hundred bytes of keys
/// stays under the 400 KB (409,600 bytes) item limit.
const CHUNK_BYTES: usize = 350_000;
/// Chunk keys carry a 4-digit index, so they sort in order under `begins_with`.
const MAX_CHUNKS: usize = 9_999;
/// Chunks per BatchWriteItem: ~1.4 MB a request keeps each attempt well inside the 2 s attempt
/// timeout (DynamoDB itself would take 25 items / 16 MB).
const CHUNKS_PER_BATCH: usize = 4;
const ZSTD_LEVEL: i32 = 3;
/// How long an append keeps retrying while other writers of the same bot keep winning. Each
/// lost attempt means another event of this bot was stored, so progress is guaranteed; the
/// budget (not a fixed count: n concurrent deliveries for one bot need up to n attempts)
/// keeps the answer inside MeetingBaaS v1's 10 s wait.
pub const DEFAULT_APPEND_BUDGET: Duration = Duration::from_secs(4);
/// Safety net under the budget.
const MAX_APPEND_ATTEMPTS: u32 = 100;
const MAX_BATCH_ATTEMPTS: u32 = 8;
/// How long `ensure_events_table` waits for a table to become ACTIVE.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(120);

const SESSION_SK: &str = "SESSION";
const KIND_SESSION: &str = "session";
pub(crate) const KIND_EVENT: &str = "event";
const KIND_IDEM: &str = "idem";
const KIND_CHUNK: &str = "chunk";

/// The DynamoDB event store. Cheap to clone (the SDK client is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retention: Retention,
    append_budget: Duration,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>, retention: Retention) -> Self {
        Self {
            client,
            table: table.into(),
            retention,
            append_budget: DEFAULT_APPEND_BUDGET,
        }
    }

    /// How long an append may keep losing races to other writers of the same bot before it
    /// gives up with [`StoreError::Unavailable`]; [`DEFAULT_APPEND_BUDGET`] unless set. Slow
    /// emulators (moto) need more under heavy same-bot contention than DynamoDB does.
    pub fn with_append_budget(mut self, budget: Duration) -> Self {
        self.append_budget = budget;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

/// Creates the events table when it is missing (on-demand, `pk`/`sk`, stream `NEW_IMAGE`),
/// waits until it is ACTIVE and makes sure TTL is on `expires_at`. Idempotent, so the local
/// host and the tests call it at every start; on AWS the template owns the table.
pub async fn ensure_events_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let mut desc = match describe_table(client, table).await? {
        Some(desc) => desc,
        None => create_table(client, table).await?,
    };
    if desc.table_status() != Some(&TableStatus::Active) {
        desc = wait_active(client, table).await?;
    }
    check_keys(table, &desc)?;
    let stream = desc.stream_specification();
    match stream.filter(|s| s.stream_enabled()) {
        Some(s) if s.stream_view_type() == Some(&StreamViewType::NewImage) => {}
        Some(s) => {
            return Err(StoreError::Unavailable(format!(
                "dynamodb table {table} streams {:?}, the fan-out needs NEW_IMAGE",
                s.stream_view_type()
            )));
        }
        None => {
            client
                .update_table()
                .table_name(table)
                .stream_specification(new_image_stream()?)
                .send()
                .await
                .map_err(|e| unavailable("UpdateTable (stream)", &e))?;
            wait_active(client, table).await?;
        }
    }
    ensure_ttl(client, table).await
}

async fn describe_table(
    client: &Client,
    table: &str,
) -> Result<Option<TableDescription>, StoreError> {
    match client.describe_table().table_name(table).send().await {
        Ok(out) => Ok(out.table),
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), DescribeTableError::ResourceNotFoundException(_)) =>
        {
            Ok(None)
        }
        Err(e) => Err(unavailable("DescribeTable", &e)),
    }
}

async fn create_table(client: &Client, table: &str) -> Result<TableDescription, StoreError> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| build_error("key schema", &e))
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| build_error("attribute definition", &e))
    };
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .stream_specification(new_image_stream()?)
        .send()
        .await;
    match created {
        Ok(_) => {}
        // Another process created it first: fine, wait for it like for our own.
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), CreateTableError::ResourceInUseException(_)) => {}
        Err(e) => return Err(unavailable("CreateTable", &e)),
    }
    wait_active(client, table).await
}

fn new_image_stream() -> Result<StreamSpecification, StoreError> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewImage)
        .build()
        .map_err(|e| build_error("stream specification", &e))
}

async fn wait_active(client: &Client, table: &str) -> Result<TableDescription, StoreError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        if let Some(desc) = describe_table(client, table).await?
            && desc.table_status() == Some(&TableStatus::Active)
        {
            return Ok(desc);
        }
        if start.elapsed() > TABLE_ACTIVE_WAIT {
            return Err(StoreError::Unavailable(format!(
                "dynamodb table {table} not ACTIVE after {}s",
                TABLE_ACTIVE_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

fn check_keys(table: &str, desc: &TableDescription) -> Result<(), StoreError> {
    let keys: Vec<(&str, &KeyType)> = desc
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    if keys == [("pk", &KeyType::Hash), ("sk", &KeyType::Range)] {
        Ok(())
    } else {
        Err(StoreError::Unavailable(format!(
            "dynamodb table {table} has keys {keys:?}, expected pk (HASH) and sk (RANGE)"
        )))
    }
}

async fn ensure_ttl(client: &Client, table: &str) -> Result<(), StoreError> {
    let out = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| unavailable("DescribeTimeToLive", &e))?;
    let ttl = out.time_to_live_description();
    let status = ttl.and_then(|t| t.time_to_live_status());
    let attribute = ttl.and_then(|t| t.attribute_name());
    match status {
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            if attribute == Some(TTL_ATTRIBUTE) =>
        {
            Ok(())
        }
        None | Some(TimeToLiveStatus::Disabled) => {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .map_err(|e| build_error("TTL specification", &e))?;
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| unavailable("UpdateTimeToLive", &e))?;
            Ok(())
        }
        Some(other) => Err(StoreError::Unavailable(format!(
            "dynamodb table {table} has TTL {other:?} on {attribute:?}, expected {TTL_ATTRIBUTE}"
        ))),
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    /// Read the idempotency record and the session, apply the event to the session, then
    /// write idempotency record, event and session in one conditional transaction. The session
    /// condition (`seq` unchanged) serialises writers of one bot; the idempotency condition
    /// makes concurrent duplicates lose. A writer that lost to another event retries on the
    /// session the failed condition handed back, for up to the append budget.
    async fn append(&self, event: NewEvent) -> Result<Appended, StoreError> {
        let started = Instant::now();
        let pk = pk(&event.bot_id);
        let idem_key = idem_sk(&event.event_id);
        let body = StoredBody::encode(&event)?;
        let mut chunks_written = false;
        // The session as the last failed transaction saw it; `None`: read it (and the record).
        let mut known_session: Option<Option<Item>> = None;
        let mut attempt = 0;
        loop {
            let now = Utc::now().timestamp();
            let session = match known_session.take() {
                Some(session) => session,
                None => {
                    let (idem, session) = tokio::join!(
                        self.get(&pk, &idem_key, "GetItem (idempotency)"),
                        self.get(&pk, SESSION_SK, "GetItem (session)"),
                    );
                    if let Some(dup) = live(idem?, now)? {
                        return duplicate(&dup);
                    }
                    session?
                }
            };
            let prev_seq = match &session {
                Some(item) => Some(get_n::<u64>(item, "seq")?),
                None => None,
            };
            let mut next = match &session {
                Some(item) if !is_expired(item, now)? => parse_session(item, &event.bot_id)?,
                // Expired: start afresh, but past its seq so no event item is ever reused.
                Some(_) => fresh_session(&event, prev_seq.unwrap_or(0)),
                // Missing: new bot, or TTL took the session but maybe not all its events yet.
                None => fresh_session(&event, self.last_event_seq(&pk).await?),
            };
            let applied = next.apply(&event);
            let draft = Draft {
                pk: &pk,
                seq: next.seq,
                repeat_of: applied.repeat_of,
                kind: applied.kind,
                status: next.status,
                expires_at: self.retention.expires_at(event.received_at),
                now,
                writer: format!("{:032x}", rand::random::<u128>()),
            };

            if let StoredBody::Chunked { hash, chunks } = &body
                && !chunks_written
            {
                self.write_chunks(&pk, &event.event_id, hash, chunks, draft.expires_at)
                    .await?;
                chunks_written = true;
            }
            let items = vec![
                self.put_idem(&draft, &event.event_id)?,
                self.put_event(&draft, &event, &body)?,
                self.put_session(&pk, &next, prev_seq)?,
            ];
            let reasons = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => return Ok(draft.stored(event)),
                Err(SdkError::ServiceError(e)) => match e.into_err() {
                    TransactWriteItemsError::TransactionCanceledException(c) => {
                        c.cancellation_reasons.unwrap_or_default()
                    }
                    other => return Err(unavailable_service("TransactWriteItems", &other)),
                },
                Err(e) => return Err(unavailable("TransactWriteItems", &e)),
            };
            let mut reasons = reasons.into_iter();
            let (idem, _event, session) = (reasons.next(), reasons.next(), reasons.next());
            if let Some(idem) = idem.filter(failed) {
                let idem = match idem.item {
                    Some(item) => Some(item),
                    None => self.get(&pk, &idem_key, "GetItem (idempotency)").await?,
                };
                if let Some(idem) = live(idem, Utc::now().timestamp())? {
                    if idem.get("writer") == Some(&s(&draft.writer)) {
                        return Ok(draft.stored(event));
                    }
                    // Someone stored this delivery first; report what they stored.
                    return duplicate(&idem);
                }
            } else if let Some(session) = session.filter(failed) {
                // Another event of this bot won; its session came back with the failure.
                known_session = session.item.map(Some);
            }
            // Anything else (TransactionConflict, throttling of one item): read afresh.
            attempt += 1;
            if attempt >= MAX_APPEND_ATTEMPTS || started.elapsed() >= self.append_budget {
                return Err(StoreError::Unavailable(format!(
                    "dynamodb TransactWriteItems: {attempt} attempts in {} ms lost to other \
                     writers of the same bot",
                    started.elapsed().as_millis()
                )));
            }
            tracing::debug!(
                bot_id = %event.bot_id,
                attempt,
                "dynamodb append lost a race for the session; retrying"
            );
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    async fn session(&self, bot: &BotId) -> Result<Option<Session>, StoreError> {
        let item = self.get(&pk(bot), SESSION_SK, "GetItem (session)").await?;
        match live(item, Utc::now().timestamp())? {
            Some(item) => parse_session(&item, bot).map(Some),
            None => Ok(None),
        }
    }

    /// Conditional create (`attribute_not_exists`); a writer that loses reads the winner's.
    async fn ensure_session(&self, bot: &BotId, now: DateTime<Utc>) -> Result<Session, StoreError> {
        let pk = pk(bot);
        let existing = self.get(&pk, SESSION_SK, "GetItem (session)").await?;
        if let Some(item) = live(existing, now.timestamp())? {
            return parse_session(&item, bot);
        }
        let mut session = Session::new(bot.clone(), now);
        session.seq = self.last_event_seq(&pk).await?;
        let put = self.put_session(&pk, &session, None)?;
        match self
            .client
            .transact_write_items()
            .transact_items(put)
            .send()
            .await
        {
            Ok(_) => Ok(session),
            Err(e) => match self.get(&pk, SESSION_SK, "GetItem (session)").await? {
                Some(item) => parse_session(&item, bot),
                None => Err(unavailable("TransactWriteItems (session)", &e)),
            },
        }
    }

    async fn events_after(
        &self,
        bot: &BotId,
        after: u64,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE) as usize;
        let Some(first) = after.checked_add(1) else {
            return Ok(EventPage {
                events: Vec::new(),
                more: false,
            });
        };
        let pk = pk(bot);
        let now = Utc::now().timestamp();
        let mut found: Vec<EventItem> = Vec::new();
        let mut start = None;
        // One extra event tells whether there are more. A page may end early at DynamoDB's
        // 1 MB response limit, hence the loop.
        loop {
            let want = limit + 1 - found.len();
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":lo", s(evt_sk(first)))
                .expression_attribute_values(":hi", s(evt_sk(u64::MAX)))
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Query (events)", &e))?;
            for item in out.items() {
                if !is_expired(item, now)? {
                    found.push(EventItem::parse(item, bot)?);
                }
            }
            match out.last_evaluated_key {
                Some(key) if found.len() <= limit => start = Some(key),
                _ => break,
            }
        }
        let more = found.len() > limit;
        found.truncate(limit);
        let mut events = Vec::with_capacity(found.len());
        for item in found {
            events.push(self.load(&pk, item).await?);
        }
        Ok(EventPage { events, more })
    }

    async fn event(
        &self,
        bot: &BotId,
        event_id: &EventId,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let pk = pk(bot);
        let now = Utc::now().timestamp();
        let idem = self
            .get(&pk, &idem_sk(event_id), "GetItem (idempotency)")
            .await?;
        let Some(idem) = live(idem, now)? else {
            return Ok(None);
        };
        let seq = get_n::<u64>(&idem, "seq")?;
        let Some(item) = self.get(&pk, &evt_sk(seq), "GetItem (event)").await? else {
            return Err(corrupt(
                &idem,
                "idempotency record points at a missing event",
            ));
        };
        if is_expired(&item, now)? {
            return Ok(None);
        }
        let parsed = EventItem::parse(&item, bot)?;
        if &parsed.meta.event_id != event_id {
            return Err(corrupt(
                &item,
                "event item does not hold the event its record names",
            ));
        }
        self.load(&pk, parsed).await.map(Some)
    }
}

impl DynamoStore {
    /// Strongly consistent GetItem: a webhook retry right after a store must see it.
    async fn get(&self, pk: &str, sk: &str, op: &str) -> Result<Option<Item>, StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| unavailable(op, &e))
    }

    /// Highest event seq still in the table for a bot without a session item.
    async fn last_event_seq(&self, pk: &str) -> Result<u64, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :evt)")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#sk", "sk")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":evt", s("EVT#"))
            .projection_expression("#sk")
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| unavailable("Query (last event)", &e))?;
        match out.items().first() {
            Some(item) => {
                let sk = get_s(item, "sk")?;
                sk.strip_prefix("EVT#")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| corrupt(item, "event sort key has no seq"))
            }
            None => Ok(0),
        }
    }

    fn put_idem(&self, d: &Draft<'_>, event_id: &EventId) -> Result<TransactWriteItem, StoreError> {
        let item = HashMap::from([
            ("pk".to_owned(), s(d.pk)),
            ("sk".to_owned(), s(idem_sk(event_id))),
            ("kind".to_owned(), s(KIND_IDEM)),
            ("seq".to_owned(), n(d.seq)),
            ("event".to_owned(), s(d.kind.as_str())),
            ("event_id".to_owned(), s(event_id.as_str())),
            ("writer".to_owned(), s(&d.writer)),
            (TTL_ATTRIBUTE.to_owned(), n(d.expires_at)),
        ]);
        // An expired record (TTL not yet run) no longer makes a delivery a duplicate. ALL_OLD:
        // a losing duplicate learns what was stored without another read.
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .condition_expression("attribute_not_exists(#pk) OR #exp < :now")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(d.now));
        transact_put(put)
    }

    fn put_event(
        &self,
        d: &Draft<'_>,
        event: &NewEvent,
        body: &StoredBody,
    ) -> Result<TransactWriteItem, StoreError> {
        let fields = EventFields {
            bot_id: &event.bot_id,
            event_id: &event.event_id,
            seq: d.seq,
            idem_key: &event.idempotency_key,
            kind: d.kind,
            source_event: &event.source_event,
            family: event.family,
            status_code: event.status_code.as_deref(),
            occurred_at: event.occurred_at.as_deref(),
            received_at: event.received_at,
            status: d.status,
            expires_at: d.expires_at,
            repeat_of: d.repeat_of.as_ref(),
        };
        let item = fields.item(d.pk, body);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", "pk");
        transact_put(put)
    }

    fn put_session(
        &self,
        pk: &str,
        session: &Session,
        prev_seq: Option<u64>,
    ) -> Result<TransactWriteItem, StoreError> {
        let doc = serde_json::to_string(session)
            .map_err(|e| StoreError::Corrupt(format!("session does not serialise: {e}")))?;
        let item = HashMap::from([
            ("pk".to_owned(), s(pk)),
            ("sk".to_owned(), s(SESSION_SK)),
            ("kind".to_owned(), s(KIND_SESSION)),
            ("seq".to_owned(), n(session.seq)),
            ("status".to_owned(), s(session.status.as_str())),
            ("doc".to_owned(), s(doc)),
            // A session lives as long as its newest event.
            (
                TTL_ATTRIBUTE.to_owned(),
                n(self.retention.expires_at(session.last_updated)),
            ),
        ]);
        // ALL_OLD: a writer that loses gets the winner's session back and need not re-read.
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .expression_attribute_names("#pk", "pk");
        let put = match prev_seq {
            None => put.condition_expression("attribute_not_exists(#pk)"),
            // The compare-and-set that orders all writers of one bot.
            Some(prev) => put
                .condition_expression("attribute_exists(#pk) AND #seq = :prev")
                .expression_attribute_names("#seq", "seq")
                .expression_attribute_values(":prev", n(prev)),
        };
        transact_put(put)
    }

    /// Writes a body's chunks before the transaction that makes them reachable. Their keys are
    /// content-addressed, so a retry rewrites identical items; chunks of a delivery that lost
    /// the race are unreachable and expire by TTL.
    async fn write_chunks(
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
                let item = HashMap::from([
                    ("pk".to_owned(), s(pk)),
                    ("sk".to_owned(), s(format!("{prefix}{index:04}"))),
                    ("kind".to_owned(), s(KIND_CHUNK)),
                    (
                        "data".to_owned(),
                        AttributeValue::B(Blob::new(data.clone())),
                    ),
                    (TTL_ATTRIBUTE.to_owned(), n(expires_at)),
                ]);
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

    async fn batch_write(&self, mut requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for attempt in 0..MAX_BATCH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| unavailable("BatchWriteItem (chunks)", &e))?;
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
    async fn load(&self, pk: &str, item: EventItem) -> Result<StoredEvent, StoreError> {
        let EventItem { mut meta, body } = item;
        let (compressed, hash) = match body {
            BodyRef::Inline(bytes) => (bytes, None),
            BodyRef::Chunked { count, hash } => (
                self.read_chunks(pk, &meta.event_id, &hash, count).await?,
                Some(hash),
            ),
        };
        let raw = zstd::stream::decode_all(compressed.as_slice()).map_err(|e| {
            StoreError::Corrupt(format!(
                "body of {} does not decompress: {e}",
                meta.event_id
            ))
        })?;
        if let Some(hash) = hash
            && hex::encode(Sha256::digest(&raw)) != hash
        {
            return Err(StoreError::Corrupt(format!(
                "body of {} does not match its hash",
                meta.event_id
            )));
        }
        meta.body = String::from_utf8(raw)
            .map_err(|_| StoreError::Corrupt(format!("body of {} is not UTF-8", meta.event_id)))?;
        Ok(meta)
    }

    async fn read_chunks(
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
                .map_err(|e| unavailable("Query (body chunks)", &e))?;
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

/// One attempt at storing an event: where it goes and what applying it to the session gave.
struct Draft<'a> {
    pk: &'a str,
    seq: u64,
    /// Kind after the session refined it (first in-call status → `meeting.started`).
    kind: EventKind,
    status: Status,
    /// The first event of the outcome this one repeats.
    repeat_of: Option<EventId>,
    expires_at: i64,
    now: i64,
    /// Random per attempt, kept on the idempotency record.
    writer: String,
}

impl Draft<'_> {
    fn stored(self, event: NewEvent) -> Appended {
        Appended::Stored(StoredEvent::from_new(
            event,
            self.seq,
            self.kind,
            self.status,
            self.expires_at,
            self.repeat_of,
        ))
    }
}

/// How an event's body is written: zstd (level 3, with a frame checksum) inline, or split.
enum StoredBody {
    Inline(Vec<u8>),
    Chunked {
        /// Hex SHA-256 of the uncompressed body.
        hash: String,
        chunks: Vec<Vec<u8>>,
    },
}

impl StoredBody {
    fn encode(event: &NewEvent) -> Result<Self, StoreError> {
        let others = event.idempotency_key.len()
            + event.source_event.len()
            + event.status_code.as_deref().map_or(0, str::len)
            + event.occurred_at.as_deref().map_or(0, str::len);
        Self::encode_body(&event.body, others)
    }

    /// `others`: bytes the item's other variable-size attributes take.
    fn encode_body(body: &str, others: usize) -> Result<Self, StoreError> {
        let compressed = compress(body.as_bytes())
            .map_err(|e| StoreError::Unavailable(format!("zstd compression failed: {e}")))?;
        if compressed.len() + others <= INLINE_MAX {
            return Ok(StoredBody::Inline(compressed));
        }
        let chunks: Vec<Vec<u8>> = compressed.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect();
        if chunks.len() > MAX_CHUNKS {
            return Err(StoreError::Unavailable(format!(
                "body of {} bytes is too large for the store",
                body.len()
            )));
        }
        Ok(StoredBody::Chunked {
            hash: hex::encode(Sha256::digest(body.as_bytes())),
            chunks,
        })
    }
}

/// An event item's attributes, borrowed from wherever they are: one layout for the table, its
/// stream's NEW_IMAGE, and the local host's emulated stream.
struct EventFields<'a> {
    bot_id: &'a BotId,
    event_id: &'a EventId,
    seq: u64,
    idem_key: &'a str,
    kind: EventKind,
    source_event: &'a str,
    family: Family,
    status_code: Option<&'a str>,
    occurred_at: Option<&'a str>,
    received_at: DateTime<Utc>,
    status: Status,
    expires_at: i64,
    repeat_of: Option<&'a EventId>,
}

impl<'a> EventFields<'a> {
    fn item(&self, pk: &str, body: &StoredBody) -> Item {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(pk)),
            ("sk".to_owned(), s(evt_sk(self.seq))),
            ("kind".to_owned(), s(KIND_EVENT)),
            ("bot_id".to_owned(), s(self.bot_id.as_str())),
            ("seq".to_owned(), n(self.seq)),
            ("event_id".to_owned(), s(self.event_id.as_str())),
            ("idem_key".to_owned(), s(self.idem_key)),
            ("event".to_owned(), s(self.kind.as_str())),
            ("source_event".to_owned(), s(self.source_event)),
            ("family".to_owned(), s(self.family.as_str())),
            (
                "received_at".to_owned(),
                s(self.received_at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            ),
            ("status".to_owned(), s(self.status.as_str())),
            (TTL_ATTRIBUTE.to_owned(), n(self.expires_at)),
        ]);
        if let Some(code) = self.status_code {
            item.insert("status_code".to_owned(), s(code));
        }
        if let Some(at) = self.occurred_at {
            item.insert("occurred_at".to_owned(), s(at));
        }
        if let Some(first) = self.repeat_of {
            item.insert("repeat_of".to_owned(), s(first.as_str()));
        }
        match body {
            StoredBody::Inline(bytes) => {
                item.insert(
                    "body".to_owned(),
                    AttributeValue::B(Blob::new(bytes.clone())),
                );
            }
            StoredBody::Chunked { hash, chunks } => {
                item.insert("body_chunks".to_owned(), n(chunks.len()));
                item.insert("body_hash".to_owned(), s(hash));
            }
        }
        item
    }
}

fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = zstd::stream::Encoder::new(Vec::with_capacity(raw.len() / 4), ZSTD_LEVEL)?;
    enc.include_checksum(true)?;
    enc.write_all(raw)?;
    enc.finish()
}

/// An event item read back, its body not yet fetched/decompressed (`meta.body` is empty).
pub(crate) struct EventItem {
    pub(crate) meta: StoredEvent,
    pub(crate) body: BodyRef,
}

pub(crate) enum BodyRef {
    Inline(Vec<u8>),
    Chunked { count: usize, hash: String },
}

impl EventItem {
    pub(crate) fn parse(item: &Item, bot: &BotId) -> Result<Self, StoreError> {
        if get_s(item, "kind")? != KIND_EVENT {
            return Err(corrupt(item, "not an event item"));
        }
        if get_s(item, "bot_id")? != bot.as_str() {
            return Err(corrupt(item, "event item belongs to another bot"));
        }
        let event_id = EventId::parse(get_s(item, "event_id")?)
            .ok_or_else(|| corrupt(item, "bad event_id"))?;
        let kind =
            EventKind::parse(get_s(item, "event")?).ok_or_else(|| corrupt(item, "bad event"))?;
        let family =
            Family::parse(get_s(item, "family")?).ok_or_else(|| corrupt(item, "bad family"))?;
        let status =
            Status::parse(get_s(item, "status")?).ok_or_else(|| corrupt(item, "bad status"))?;
        let received_at = DateTime::parse_from_rfc3339(get_s(item, "received_at")?)
            .map_err(|_| corrupt(item, "bad received_at"))?
            .with_timezone(&Utc);
        let body = match item.get("body") {
            Some(AttributeValue::B(b)) => BodyRef::Inline(b.as_ref().to_vec()),
            Some(_) => return Err(corrupt(item, "body is not binary")),
            None => BodyRef::Chunked {
                count: get_n(item, "body_chunks")?,
                hash: get_s(item, "body_hash")?.to_owned(),
            },
        };
        Ok(Self {
            meta: StoredEvent {
                bot_id: bot.clone(),
                event_id,
                seq: get_n(item, "seq")?,
                idempotency_key: get_s(item, "idem_key")?.to_owned(),
                kind,
                source_event: get_s(item, "source_event")?.to_owned(),
                family,
                status_code: opt_s(item, "status_code")?,
                occurred_at: opt_s(item, "occurred_at")?,
                received_at,
                status,
                expires_at: get_n(item, TTL_ATTRIBUTE)?,
                repeat_of: match opt_s(item, "repeat_of")? {
                    Some(id) => {
                        Some(EventId::parse(&id).ok_or_else(|| corrupt(item, "bad repeat_of"))?)
                    }
                    None => None,
                },
                body: String::new(),
            },
            body,
        })
    }
}

fn fresh_session(event: &NewEvent, after_seq: u64) -> Session {
    let mut session = Session::new(event.bot_id.clone(), event.received_at);
    session.seq = after_seq;
    session
}

fn parse_session(item: &Item, bot: &BotId) -> Result<Session, StoreError> {
    let session: Session = serde_json::from_str(get_s(item, "doc")?)
        .map_err(|e| corrupt(item, &format!("session doc: {e}")))?;
    if &session.bot_id != bot || session.seq != get_n::<u64>(item, "seq")? {
        return Err(corrupt(item, "session doc disagrees with its item"));
    }
    Ok(session)
}

fn duplicate(idem: &Item) -> Result<Appended, StoreError> {
    Ok(Appended::Duplicate {
        event_id: EventId::parse(get_s(idem, "event_id")?)
            .ok_or_else(|| corrupt(idem, "bad event_id"))?,
        seq: get_n(idem, "seq")?,
        kind: EventKind::parse(get_s(idem, "event")?).ok_or_else(|| corrupt(idem, "bad event"))?,
    })
}

/// Whether a transaction item failed its condition (the others say `None`, or conflict).
fn failed(reason: &CancellationReason) -> bool {
    reason.code() == Some("ConditionalCheckFailed")
}

fn transact_put(
    put: aws_sdk_dynamodb::types::builders::PutBuilder,
) -> Result<TransactWriteItem, StoreError> {
    let put = put
        .build()
        .map_err(|e| build_error("transaction put", &e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Full-jitter exponential backoff, 5 ms doubling to a 100 ms cap: losing to another event is
/// progress, not overload, so the wait stays short; the jitter spreads the next attempts.
fn backoff(attempt: u32) -> Duration {
    let cap_ms = 5u64.saturating_mul(1 << attempt.min(5)).min(100);
    Duration::from_millis(rand::random::<u64>() % (cap_ms + 1))
}

fn pk(bot: &BotId) -> String {
    format!("BOT#{bot}")
}

fn evt_sk(seq: u64) -> String {
    format!("EVT#{seq:020}")
}

fn idem_sk(event_id: &EventId) -> String {
    format!("IDEM#{event_id}")
}

fn chunk_prefix(event_id: &EventId, hash: &str) -> String {
    format!("BLOB#{event_id}#{}#", hash.get(..16).unwrap_or(hash))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt(item, &format!("{name} missing or not a string"))),
    }
}

fn opt_s(item: &Item, name: &str) -> Result<Option<String>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
        Some(_) => Err(corrupt(item, &format!("{name} is not a string"))),
    }
}

fn get_n<T: FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| corrupt(item, &format!("{name} is not a valid number"))),
        _ => Err(corrupt(item, &format!("{name} missing or not a number"))),
    }
}

fn get_b<'a>(item: &'a Item, name: &str) -> Result<&'a [u8], StoreError> {
    match item.get(name) {
        Some(AttributeValue::B(v)) => Ok(v.as_ref()),
        _ => Err(corrupt(item, &format!("{name} missing or not binary"))),
    }
}

/// Past `expires_at`: logically gone, whether or not TTL has deleted it yet.
fn is_expired(item: &Item, now: i64) -> Result<bool, StoreError> {
    Ok(get_n::<i64>(item, TTL_ATTRIBUTE)? < now)
}

fn live(item: Option<Item>, now: i64) -> Result<Option<Item>, StoreError> {
    match item {
        Some(item) if !is_expired(&item, now)? => Ok(Some(item)),
        _ => Ok(None),
    }
}

/// Names the item by its keys only: bodies and payload fields never go into errors.
pub(crate) fn corrupt(item: &Item, what: &str) -> StoreError {
    let key = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => v.as_str(),
        _ => "?",
    };
    StoreError::Corrupt(format!("item {} / {}: {what}", key("pk"), key("sk")))
}

fn build_error(what: &str, e: &aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Unavailable(format!("dynamodb request could not be built ({what}): {e}"))
}

/// A failed call as a 503-worthy error naming the operation and the error code only: SDK
/// messages may quote request details, and nothing from a request belongs in a response.
fn unavailable<E, R>(op: &str, err: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata,
{
    let why = match err {
        SdkError::TimeoutError(_) => "timed out",
        SdkError::DispatchFailure(f) if f.is_timeout() => "timed out",
        SdkError::DispatchFailure(f) if f.is_io() => "endpoint unreachable",
        SdkError::DispatchFailure(_) => "request could not be sent",
        SdkError::ConstructionFailure(_) => "request could not be built (region or credentials?)",
        SdkError::ResponseError(_) => "response could not be read",
        SdkError::ServiceError(_) => err.code().unwrap_or("service error"),
        _ => "failed",
    };
    StoreError::Unavailable(format!("dynamodb {op}: {why}"))
}

fn unavailable_service(op: &str, err: &impl ProvideErrorMetadata) -> StoreError {
    StoreError::Unavailable(format!(
        "dynamodb {op}: {}",
        err.code().unwrap_or("service error")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_seq_and_chunks_by_index() {
        assert!(evt_sk(9) < evt_sk(10));
        assert!(evt_sk(99_999) < evt_sk(u64::MAX));
        assert_eq!(evt_sk(u64::MAX).len(), "EVT#".len() + 20);
        let id = EventId::derive(&BotId::parse("b").unwrap(), "k");
        let prefix = chunk_prefix(&id, &"ab".repeat(32));
        assert_eq!(prefix, format!("BLOB#{id}#abababababababab#"));
    }

    #[test]
    fn small_bodies_stay_inline_and_big_ones_split_under_the_item_limit() {
        let bot = BotId::parse("b").unwrap();
        let mut e = relay_core::testing::store_contract::new_event(
            &bot,
            "k",
            EventKind::Unknown,
            None,
            r#"{"a":1}"#.into(),
        );
        assert!(matches!(
            StoredBody::encode(&e).unwrap(),
            StoredBody::Inline(_)
        ));
        // Barely compressible: 1 MB of random letters.
        e.body = (0..1_000_000)
            .map(|_| char::from(b'a' + (rand::random::<u8>() % 26)))
            .collect();
        let StoredBody::Chunked { chunks, hash } = StoredBody::encode(&e).unwrap() else {
            panic!("a 1 MB random body must be chunked")
        };
        assert_eq!(hash.len(), 64);
        assert!(chunks.len() >= 2);
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES));
        let joined: Vec<u8> = chunks.concat();
        assert_eq!(
            zstd::stream::decode_all(joined.as_slice()).unwrap(),
            e.body.as_bytes()
        );
    }

    #[test]
    fn backoff_is_bounded() {
        for attempt in 0..50 {
            assert!(backoff(attempt) <= Duration::from_millis(100));
        }
    }
}
