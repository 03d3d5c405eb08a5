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

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use chrono::{DateTime, Utc};
use relay_core::domain::bot_id::BotId;
use relay_core::domain::event::{EventId, EventKind, NewEvent, StoredEvent};
use relay_core::domain::session::{Session, Status};
use relay_core::ports::store::{
    Appended, EventPage, EventStore, MAX_PAGE, OpenSession, Retention, StoreError, index_key,
};

use crate::attr::{Item, corrupt, from_item, get_n, get_s, is_expired, live, n, s, to_item};
use crate::error::{backoff, build_error, unavailable, unavailable_service};
use crate::table::{
    OPEN_INDEX, OPEN_PARTITION, OPEN_PK, OPEN_SK, RECENT, TTL_ATTRIBUTE, TableSpec, ensure_table,
};

mod body;
mod chunks;
mod item;

use body::{StoredBody, decompress};

/// An inline body as sent, from the bytes an event item (or its stream image) holds.
pub(crate) fn decompress_body(event_id: &EventId, compressed: &[u8]) -> Result<String, StoreError> {
    decompress(event_id, compressed, None)
}
pub(crate) use item::{BodyRef, EventDoc, EventItem};
use item::{IdemDoc, KIND_IDEM, KIND_SESSION, SESSION_SK, SessionDoc, Stored, evt_sk, idem_sk, pk};

/// Chunks per BatchWriteItem: ~1.4 MB a request keeps each attempt well inside the 2 s attempt
/// timeout (DynamoDB itself would take 25 items / 16 MB).
pub(super) const CHUNKS_PER_BATCH: usize = 4;
/// How long an append keeps retrying while other writers of the same bot keep winning. Each
/// lost attempt means another event of this bot was stored, so progress is guaranteed; the
/// budget (not a fixed count: n concurrent deliveries for one bot need up to n attempts)
/// keeps the answer inside MeetingBaaS v1's 10 s wait.
pub const DEFAULT_APPEND_BUDGET: Duration = Duration::from_secs(4);
/// Safety net under the budget.
const MAX_APPEND_ATTEMPTS: u32 = 100;
pub(super) const MAX_BATCH_ATTEMPTS: u32 = 8;

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

/// Creates the events table when it is missing (with its NEW_IMAGE stream for the fan-out),
/// waits until it is ACTIVE and makes sure TTL is on `expires_at` ([`ensure_table`]).
pub async fn ensure_events_table(client: &Client, table: &str) -> Result<(), StoreError> {
    ensure_table(
        client,
        table,
        TableSpec {
            new_image_stream: true,
            open_index: true,
        },
    )
    .await
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
                    other => {
                        return Err(unavailable_service(
                            &self.table,
                            "TransactWriteItems",
                            &other,
                        ));
                    }
                },
                Err(e) => return Err(unavailable(&self.table, "TransactWriteItems", &e)),
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
            tokio::time::sleep(race_backoff(attempt)).await;
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
                None => Err(unavailable(&self.table, "TransactWriteItems (session)", &e)),
            },
        }
    }

    /// One Query of the sparse index (eventually consistent: 0.5 RCU per 4 KB, ~30 open
    /// sessions per RCU at ~120 bytes each).
    async fn open_sessions(
        &self,
        idle_before: DateTime<Utc>,
        cursor: Option<&OpenSession>,
        limit: u32,
    ) -> Result<Vec<OpenSession>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let cut = idle_before.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OPEN_INDEX)
            .key_condition_expression("#p = :p AND #s < :cut")
            .expression_attribute_names("#p", OPEN_PK)
            .expression_attribute_names("#s", OPEN_SK)
            .expression_attribute_values(":p", s(OPEN_PARTITION))
            .expression_attribute_values(":cut", s(&cut))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        if let Some(after) = cursor {
            query = query
                .exclusive_start_key("pk", s(pk(&after.bot_id)))
                .exclusive_start_key("sk", s(SESSION_SK))
                .exclusive_start_key(OPEN_PK, s(OPEN_PARTITION))
                .exclusive_start_key(OPEN_SK, s(after.index_key()));
        }
        let out = query
            .send()
            .await
            .map_err(|e| unavailable(&self.table, "Query (open sessions)", &e))?;
        let now = Utc::now().timestamp();
        let mut open = Vec::with_capacity(out.items().len());
        for item in out.items() {
            if is_expired(item, now)? {
                continue;
            }
            let key = get_s(item, OPEN_SK)?;
            let (at, bot) = key
                .split_once('#')
                .ok_or_else(|| corrupt(item, "open index key has no bot"))?;
            let status = get_s(item, "status")?;
            open.push(OpenSession {
                bot_id: BotId::parse(bot).map_err(|_| corrupt(item, "open index bot id"))?,
                status: Status::parse(status).ok_or_else(|| corrupt(item, "session status"))?,
                last_updated: DateTime::parse_from_rfc3339(at)
                    .map_err(|_| corrupt(item, "open index time"))?
                    .with_timezone(&Utc),
            });
        }
        Ok(open)
    }

    /// One Query of the recent-session index, newest first (eventually consistent; the
    /// session documents are projected into it).
    async fn recent_sessions(&self, limit: u32) -> Result<Vec<Session>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(RECENT.name)
            .key_condition_expression("#p = :p")
            .expression_attribute_names("#p", RECENT.pk)
            .expression_attribute_values(":p", s(RECENT.partition))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| unavailable(&self.table, "Query (recent sessions)", &e))?;
        let now = Utc::now().timestamp();
        let mut sessions = Vec::with_capacity(out.items().len());
        for item in out.items() {
            if is_expired(item, now)? {
                continue;
            }
            let doc = get_s(item, "doc")?;
            let session: Session = serde_json::from_str(doc)
                .map_err(|e| corrupt(item, &format!("session doc: {e}")))?;
            sessions.push(session);
        }
        Ok(sessions)
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
                .map_err(|e| unavailable(&self.table, "Query (events)", &e))?;
            for item in out.items() {
                if !is_expired(item, now)? {
                    found.push(parse_event(item, bot)?);
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
        let parsed = parse_event(&item, bot)?;
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
            .map_err(|e| unavailable(&self.table, op, &e))
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
            .map_err(|e| unavailable(&self.table, "Query (last event)", &e))?;
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
        let item = to_item(&IdemDoc {
            pk: d.pk.to_owned(),
            sk: idem_sk(event_id),
            kind: KIND_IDEM.to_owned(),
            seq: d.seq,
            event: d.kind,
            event_id: event_id.clone(),
            writer: d.writer.clone(),
            expires_at: d.expires_at,
        })?;
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
        let stored = Stored {
            seq: d.seq,
            kind: d.kind,
            status: d.status,
            expires_at: d.expires_at,
            repeat_of: d.repeat_of.as_ref(),
        };
        let item = to_item(&EventDoc::new(event, stored, body))?;
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
        let open = OpenSession::of(session);
        let recent = !session.bot_id.is_account_level();
        let item = to_item(&SessionDoc {
            open_pk: open.as_ref().map(|_| OPEN_PARTITION.to_owned()),
            open_sk: open.as_ref().map(OpenSession::index_key),
            recent_pk: recent.then(|| RECENT.partition.to_owned()),
            recent_sk: recent.then(|| index_key(session.last_updated, &session.bot_id)),
            pk: pk.to_owned(),
            sk: SESSION_SK.to_owned(),
            kind: KIND_SESSION.to_owned(),
            seq: session.seq,
            status: session.status,
            doc,
            // A session lives as long as its newest event.
            expires_at: self.retention.expires_at(session.last_updated),
        })?;
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

fn fresh_session(event: &NewEvent, after_seq: u64) -> Session {
    let mut session = Session::new(event.bot_id.clone(), event.received_at);
    session.seq = after_seq;
    session
}

fn parse_session(item: &Item, bot: &BotId) -> Result<Session, StoreError> {
    let doc: SessionDoc = from_item(item)?;
    let session: Session =
        serde_json::from_str(&doc.doc).map_err(|e| corrupt(item, &format!("session doc: {e}")))?;
    if &session.bot_id != bot || session.seq != doc.seq {
        return Err(corrupt(item, "session doc disagrees with its item"));
    }
    Ok(session)
}

fn duplicate(idem: &Item) -> Result<Appended, StoreError> {
    let doc: IdemDoc = from_item(idem)?;
    Ok(Appended::Duplicate {
        event_id: doc.event_id,
        seq: doc.seq,
        kind: doc.event,
    })
}

/// An event item as read from the table.
pub(crate) fn parse_event(item: &Item, bot: &BotId) -> Result<EventItem, StoreError> {
    from_item::<EventDoc>(item)?.into_event(bot)
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

/// Losing to another event is progress, not overload: the wait stays short (5 ms doubling to
/// 100 ms), the jitter spreads the next attempts.
pub(super) fn race_backoff(attempt: u32) -> Duration {
    backoff(
        attempt,
        Duration::from_millis(5),
        Duration::from_millis(100),
    )
}

#[cfg(test)]
mod tests {
    use super::body::{CHUNK_BYTES, chunk_prefix};
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
            assert!(race_backoff(attempt) <= Duration::from_millis(100));
        }
    }
}
