//! DynamoDB adapter of the connection store: one table (`CONNECTIONS_TABLE`), string keys
//! `pk`/`sk`, TTL on `expires_at`. Layout and access patterns: `docs/connections.md`.
//!
//! | item                 | `pk`        | `sk`        |
//! |----------------------|-------------|-------------|
//! | connection           | `CONN#<id>` | `META`      |
//! | subscription         | `BOT#<bot>` | `CONN#<id>` |
//! | its mirror           | `CONN#<id>` | `SUB#<bot>` |
//!
//! A bot's subscribers are one Query on `BOT#<bot>`; a connection's subscriptions (for
//! `remove`) one Query on `CONN#<id>`. Nothing ever Scans: a Scan reads the whole table and
//! would make every fan-out cost as much as all connections together.
//!
//! Every item carries its connection's `expires_at`. DynamoDB's TTL deletes expired items only
//! eventually (often within minutes, sometimes days), so reads skip items already expired.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, Put, TransactWriteItem, WriteRequest,
};
use chrono::{DateTime, SecondsFormat, Utc};

use relay_core::domain::bot_id::BotId;
use relay_core::domain::token::Scope;
use relay_core::ports::connections::{Connection, ConnectionId, ConnectionStore, Subscriber};
use relay_core::ports::store::StoreError;

use crate::attr::{Item, get_n, get_s, n, s};
use crate::error::{backoff, build_error, unavailable};
pub use crate::table::TTL_ATTRIBUTE;
use crate::table::{TableSpec, ensure_table};

/// Tries at a transaction that lost a race: exponential with full jitter, 25 ms doubling up
/// to 1 s.
fn retry_backoff(attempt: u32) -> Duration {
    backoff(attempt, Duration::from_millis(25), Duration::from_secs(1))
}

const META: &str = "META";
const CONN: &str = "CONN#";
const SUB: &str = "SUB#";
/// Most requests DynamoDB takes in one BatchWriteItem.
const BATCH: usize = 25;
/// Tries at a transaction that lost a race with another one on the same items
/// (`TransactionConflict`), and at re-sending a batch's unprocessed items. The SDK already
/// retries throttling and transient errors itself; these two it leaves to the caller.
const ATTEMPTS: u32 = 6;

/// The DynamoDB connection store. Cheap to clone: the SDK client inside is shared.
#[derive(Clone)]
pub struct DynamoConnections {
    client: Client,
    table: String,
    page_limit: Option<i32>,
}

impl DynamoConnections {
    /// A store on an existing table (see [`ensure_connections_table`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            page_limit: None,
        }
    }

    /// Caps the items one Query page evaluates. Production leaves it unset (1 MB pages hold
    /// thousands of keys); tests set it small to exercise pagination.
    pub fn with_page_limit(mut self, limit: i32) -> Self {
        self.page_limit = Some(limit);
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The sort keys of the items under `pk` whose sort key starts with `prefix`, every page
    /// of them. Projects only `sk`; with `live_only`, DynamoDB drops expired items before
    /// answering (the filter still reads them, but they never cross the network).
    async fn query_keys(
        &self,
        pk: String,
        prefix: &str,
        live_only: bool,
        op: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.query_items(pk, prefix, live_only, "sk", op)
            .await?
            .iter()
            .map(|item| get_s(item, "sk").map(str::to_owned))
            .collect()
    }

    /// Every item of `pk` whose `sk` starts with `prefix` (all pages), with `projection`.
    async fn query_items(
        &self,
        pk: String,
        prefix: &str,
        live_only: bool,
        projection: &str,
        op: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut keys = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                // A subscription written just before must be seen by the next fan-out.
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":prefix", s(prefix))
                .projection_expression(projection)
                .set_limit(self.page_limit)
                .set_exclusive_start_key(start.take());
            if live_only {
                query = query
                    .filter_expression("expires_at > :now")
                    .expression_attribute_values(":now", n(now()));
            }
            let page = query
                .send()
                .await
                .map_err(|e| unavailable(&self.table, op, &e))?;
            keys.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(keys),
            }
        }
    }

    /// Runs one transaction; `Ok(false)` if a condition in it failed. Retries it when it
    /// only collided with a concurrent transaction on the same items.
    async fn transact(&self, items: Vec<TransactWriteItem>, op: &str) -> Result<bool, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match sent {
                Ok(_) => return Ok(true),
                Err(err) => err,
            };
            if let SdkError::ServiceError(service) = &err
                && let TransactWriteItemsError::TransactionCanceledException(cancelled) =
                    service.err()
            {
                let codes: Vec<&str> = cancelled
                    .cancellation_reasons()
                    .iter()
                    .filter_map(|r| r.code())
                    .collect();
                if codes.contains(&"ConditionalCheckFailed") {
                    return Ok(false);
                }
                if codes.contains(&"TransactionConflict") && attempt < ATTEMPTS {
                    tokio::time::sleep(retry_backoff(attempt)).await;
                    continue;
                }
                return Err(StoreError::Unavailable(format!(
                    "dynamodb {op} on {}: transaction cancelled ({})",
                    self.table,
                    codes.join(", ")
                )));
            }
            return Err(unavailable(&self.table, op, &err));
        }
    }

    /// Deletes `requests` in batches, re-sending what DynamoDB left unprocessed (it does so
    /// under load instead of failing) until all is done or the attempts run out.
    async fn batch_delete(&self, requests: Vec<WriteRequest>, op: &str) -> Result<(), StoreError> {
        for chunk in requests.chunks(BATCH) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| unavailable(&self.table, op, &e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt >= ATTEMPTS {
                    return Err(StoreError::Unavailable(format!(
                        "dynamodb {op} on {}: {} deletes still unprocessed after {ATTEMPTS} tries",
                        self.table,
                        pending.len()
                    )));
                }
                tokio::time::sleep(retry_backoff(attempt)).await;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ConnectionStore for DynamoConnections {
    /// Inserts or replaces the record; subscriptions already written keep their expiry.
    async fn put(&self, c: &Connection) -> Result<(), StoreError> {
        let mut item = key(conn_pk(&c.id), META.to_owned());
        item.insert("id".into(), s(c.id.as_str()));
        item.insert("sub".into(), s(&c.sub));
        item.insert(
            "bots".into(),
            AttributeValue::L(c.bots.iter().map(s).collect()),
        );
        item.insert("scope".into(), s(scope_str(c.scope)));
        item.insert("token_exp".into(), n(c.token_exp));
        item.insert(
            "connected_at".into(),
            s(c.connected_at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
        );
        item.insert(TTL_ATTRIBUTE.into(), n(c.expires_at));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| unavailable(&self.table, "PutItem (connection)", &e))?;
        Ok(())
    }

    /// A strongly consistent read: `$connect` and the first subscribe follow each other
    /// closely. An expired record reads as absent.
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&self.table, "GetItem (connection)", &e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let connection = decode_connection(id, &item)?;
        Ok((connection.expires_at > now()).then_some(connection))
    }

    /// Deletes the record first, then finds the subscriptions through their mirrors and
    /// deletes both halves. Record first: a concurrent `subscribe` then either committed
    /// before (and its mirror is found here) or fails its condition on the record; no
    /// subscription outlives the connection. A failure part-way is safe to retry.
    async fn remove(&self, id: &ConnectionId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(id)))
            .send()
            .await
            .map_err(|e| unavailable(&self.table, "DeleteItem (connection)", &e))?;
        let mirrors = self
            .query_keys(
                conn_pk(id),
                SUB,
                false,
                "Query (subscriptions of a connection)",
            )
            .await?;
        let mut requests = Vec::with_capacity(2 * mirrors.len());
        for sk in mirrors {
            // Raw, not parsed: a removal must clear whatever is stored.
            let bot = sk.strip_prefix(SUB).unwrap_or(&sk).to_owned();
            requests.push(delete_request(key(format!("BOT#{bot}"), conn_pk(id)))?);
            requests.push(delete_request(key(conn_pk(id), sk))?);
        }
        self.batch_delete(requests, "BatchWriteItem (remove subscriptions)")
            .await
    }

    /// Writes the subscription and its mirror, with the expiries of the record the caller read,
    /// in one transaction that also checks the record is still stored and unexpired (no second
    /// read: 1 RRU less per subscribe). A connection that is not stored (already removed, or
    /// expired) gets no subscription and this returns
    /// `Ok`: there is no one to deliver to, the port has no "not found" error, and writing
    /// anyway would leave a subscription that fan-out keeps hitting until its TTL.
    async fn subscribe(&self, connection: &Connection, bot: &BotId) -> Result<(), StoreError> {
        let id = &connection.id;
        let (expires_at, token_exp) = (connection.expires_at, connection.token_exp);
        if expires_at <= now() {
            skipped(id, bot, "expired");
            return Ok(());
        }
        let op = "TransactWriteItems (subscribe)";
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(meta_key(id)))
            .condition_expression("attribute_exists(pk) AND #exp > :now")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now()))
            .build()
            .map_err(|e| build_error(op, &e))?;
        let mut items = vec![TransactWriteItem::builder().condition_check(check).build()];
        for mut item in [
            key(bot_pk(bot), conn_pk(id)),
            key(conn_pk(id), format!("{SUB}{bot}")),
        ] {
            item.insert(TTL_ATTRIBUTE.into(), n(expires_at));
            // On the subscription too, so that the fan-out's one Query has it.
            item.insert("token_exp".into(), n(token_exp));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map_err(|e| build_error(op, &e))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        if !self.transact(items, op).await? {
            skipped(id, bot, "removed meanwhile");
        }
        Ok(())
    }

    /// Both halves in one transaction, so a subscription never stays half-deleted.
    async fn unsubscribe(&self, id: &ConnectionId, bot: &BotId) -> Result<(), StoreError> {
        let op = "TransactWriteItems (unsubscribe)";
        let mut items = Vec::with_capacity(2);
        for key in [
            key(bot_pk(bot), conn_pk(id)),
            key(conn_pk(id), format!("{SUB}{bot}")),
        ] {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key))
                .build()
                .map_err(|e| build_error(op, &e))?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        self.transact(items, op).await?;
        Ok(())
    }

    /// One Query on `BOT#<bot>`, every page, keys only, expired items filtered out.
    /// Each with the token expiry stored on the subscription; one written before it was
    /// stored there falls back to the connection's own expiry (at most 2 h 15 min away).
    async fn subscribers(&self, bot: &BotId) -> Result<Vec<Subscriber>, StoreError> {
        let items = self
            .query_items(
                bot_pk(bot),
                CONN,
                true,
                "sk, token_exp, expires_at",
                "Query (subscribers)",
            )
            .await?;
        items
            .iter()
            .map(|item| {
                let sk = get_s(item, "sk")?;
                let id = sk
                    .strip_prefix(CONN)
                    .and_then(ConnectionId::parse)
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "subscription of bot {bot} has an undecodable key {sk:?}"
                        ))
                    })?;
                let token_exp = match item.get("token_exp") {
                    Some(_) => get_n(item, "token_exp")?,
                    None => get_n(item, TTL_ATTRIBUTE)?,
                };
                Ok(Subscriber { id, token_exp })
            })
            .collect()
    }
}

/// Creates the connections table when it is missing, waits until it is ACTIVE and makes sure
/// TTL is on `expires_at` ([`ensure_table`]).
pub async fn ensure_connections_table(client: &Client, table: &str) -> Result<(), StoreError> {
    ensure_table(
        client,
        table,
        TableSpec {
            new_image_stream: false,
            open_index: false,
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Items

fn decode_connection(id: &ConnectionId, item: &Item) -> Result<Connection, StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("connection {id}: {what} does not decode"));
    let stored_id = get_s(item, "id")?;
    if stored_id != id.as_str() {
        return Err(StoreError::Corrupt(format!(
            "connection stored under {id} is {stored_id:?}"
        )));
    }
    let bots = match item.get("bots") {
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| v.as_s().cloned().map_err(|_| bad("bots")))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("bots")),
    };
    let connected_at = get_s(item, "connected_at")?;
    Ok(Connection {
        id: id.clone(),
        sub: get_s(item, "sub")?.to_owned(),
        bots,
        scope: parse_scope(get_s(item, "scope")?).ok_or_else(|| bad("scope"))?,
        token_exp: get_n(item, "token_exp")?,
        connected_at: DateTime::parse_from_rfc3339(connected_at)
            .map_err(|_| bad("connected_at"))?
            .with_timezone(&Utc),
        expires_at: get_n(item, TTL_ATTRIBUTE)?,
    })
}

fn scope_str(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "read",
        Scope::Control => "control",
    }
}

fn parse_scope(raw: &str) -> Option<Scope> {
    match raw {
        "read" => Some(Scope::Read),
        "control" => Some(Scope::Control),
        _ => None,
    }
}

fn conn_pk(id: &ConnectionId) -> String {
    format!("{CONN}{id}")
}

fn bot_pk(bot: &BotId) -> String {
    format!("BOT#{bot}")
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn meta_key(id: &ConnectionId) -> Item {
    key(conn_pk(id), META.to_owned())
}

fn delete_request(key: Item) -> Result<WriteRequest, StoreError> {
    let delete = DeleteRequest::builder()
        .set_key(Some(key))
        .build()
        .map_err(|e| build_error("BatchWriteItem", &e))?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// Logs a subscribe that wrote nothing.
fn skipped(id: &ConnectionId, bot: &BotId, why: &str) {
    tracing::debug!(connection = %id, bot = %bot, why, "subscribe skipped: connection {why}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_the_three_item_types() {
        let id = ConnectionId::parse("L0SM9cOFvHcCIhw=").unwrap();
        let bot = BotId::parse("bot-1").unwrap();
        assert_eq!(meta_key(&id)["pk"], s("CONN#L0SM9cOFvHcCIhw="));
        assert_eq!(meta_key(&id)["sk"], s("META"));
        assert_eq!(bot_pk(&bot), "BOT#bot-1");
        assert_eq!(conn_pk(&id), "CONN#L0SM9cOFvHcCIhw=");
    }

    #[test]
    fn scope_round_trips_as_in_tokens() {
        for scope in [Scope::Read, Scope::Control] {
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{}\"", scope_str(scope)));
            assert_eq!(parse_scope(scope_str(scope)), Some(scope));
        }
    }
}
