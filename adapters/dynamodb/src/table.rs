//! Table provisioning, one way for both tables: on-demand, string keys `pk` (HASH) and `sk`
//! (RANGE), TTL on `expires_at`, and for the events table a NEW_IMAGE stream. Idempotent and
//! safe when several processes start at once, so the local host and the tests call it at
//! every start; on AWS the template owns the tables.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TableDescription, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use relay_core::ports::store::StoreError;

use crate::error::{build_error, unavailable};

/// Name of the TTL attribute every item of both tables carries.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// How long [`ensure_table`] waits for a table to become ACTIVE.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(120);

/// What a table needs beyond the common shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    /// A NEW_IMAGE stream (the events table's, which feeds the fan-out).
    pub new_image_stream: bool,
    /// The session indexes [`OPEN`] and [`RECENT`] (the events table's, which reconciliation
    /// and the sessions route read).
    pub open_index: bool,
}

/// A global secondary index over session items: one partition, sorted by the store port's
/// `index_key` (the last change, then the bot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionIndex {
    pub name: &'static str,
    /// Its partition key attribute (always `partition`) and sort key attribute.
    pub pk: &'static str,
    pub sk: &'static str,
    pub partition: &'static str,
    /// Non-key attributes projected into it.
    pub projected: &'static [&'static str],
}

/// The sparse index of open sessions: only session items that are not final carry its keys;
/// projected with the session's `status` and `expires_at`, so a reconciliation pass reads ~120
/// bytes per open session.
pub const OPEN: SessionIndex = SessionIndex {
    name: "open-sessions",
    pk: "open_pk",
    sk: "open_sk",
    partition: "OPEN",
    projected: &["status", TTL_ATTRIBUTE],
};

/// Every session but the account-level bot's, newest change last: the sessions route reads
/// its end. Projected with the whole session document (a few hundred bytes), so a page is one
/// Query of the index and no read of the table.
pub const RECENT: SessionIndex = SessionIndex {
    name: "recent-sessions",
    pk: "recent_pk",
    sk: "recent_sk",
    partition: "RECENT",
    projected: &["status", "seq", "doc", TTL_ATTRIBUTE],
};

pub const OPEN_INDEX: &str = OPEN.name;
pub const OPEN_PK: &str = OPEN.pk;
pub const OPEN_SK: &str = OPEN.sk;
pub const OPEN_PARTITION: &str = OPEN.partition;

/// Creates `table` when it is missing, waits until it is ACTIVE, checks its keys and makes
/// sure its stream (when asked for) and TTL are on.
pub async fn ensure_table(client: &Client, table: &str, spec: TableSpec) -> Result<(), StoreError> {
    let mut desc = match describe(client, table).await? {
        Some(desc) => desc,
        None => create(client, table, spec).await?,
    };
    if desc.table_status() != Some(&TableStatus::Active) {
        desc = wait_active(client, table).await?;
    }
    check_keys(table, &desc)?;
    if spec.open_index {
        // One index per UpdateTable, as DynamoDB (and CloudFormation) add them.
        for index in [OPEN, RECENT] {
            if !has_index(&desc, index) {
                add_index(client, table, index).await?;
            }
        }
    }
    if spec.new_image_stream {
        match desc.stream_specification().filter(|s| s.stream_enabled()) {
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
                    .map_err(|e| unavailable(table, "UpdateTable (stream)", &e))?;
                wait_active(client, table).await?;
            }
        }
    }
    ensure_ttl(client, table).await
}

async fn describe(client: &Client, table: &str) -> Result<Option<TableDescription>, StoreError> {
    match client.describe_table().table_name(table).send().await {
        Ok(out) => Ok(out.table),
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), DescribeTableError::ResourceNotFoundException(_)) =>
        {
            Ok(None)
        }
        Err(e) => Err(unavailable(table, "DescribeTable", &e)),
    }
}

async fn create(
    client: &Client,
    table: &str,
    spec: TableSpec,
) -> Result<TableDescription, StoreError> {
    let op = "CreateTable";
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, key_type) in [("pk", KeyType::Hash), ("sk", KeyType::Range)] {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| build_error(op, &e))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(key_type)
                    .build()
                    .map_err(|e| build_error(op, &e))?,
            );
    }
    if spec.new_image_stream {
        request = request.stream_specification(new_image_stream()?);
    }
    if spec.open_index {
        for index in [OPEN, RECENT] {
            for def in index_attributes(index)? {
                request = request.attribute_definitions(def);
            }
            request = request.global_secondary_indexes(global_index(index)?);
        }
    }
    match request.send().await {
        Ok(_) => {}
        // Another process created it first: fine, wait for it like for our own.
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), CreateTableError::ResourceInUseException(_)) => {}
        Err(e) => return Err(unavailable(table, op, &e)),
    }
    wait_active(client, table).await
}

fn has_index(desc: &TableDescription, index: SessionIndex) -> bool {
    desc.global_secondary_indexes()
        .iter()
        .any(|i| i.index_name() == Some(index.name))
}

fn index_attributes(index: SessionIndex) -> Result<Vec<AttributeDefinition>, StoreError> {
    [index.pk, index.sk]
        .into_iter()
        .map(|name| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| build_error(index.name, &e))
        })
        .collect()
}

fn global_index(index: SessionIndex) -> Result<GlobalSecondaryIndex, StoreError> {
    let key = |name, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .map_err(|e| build_error(index.name, &e))
    };
    let mut projection = Projection::builder().projection_type(ProjectionType::Include);
    for attribute in index.projected {
        projection = projection.non_key_attributes(*attribute);
    }
    GlobalSecondaryIndex::builder()
        .index_name(index.name)
        .key_schema(key(index.pk, KeyType::Hash)?)
        .key_schema(key(index.sk, KeyType::Range)?)
        .projection(projection.build())
        .build()
        .map_err(|e| build_error(index.name, &e))
}

/// A table from before an index gets it (sessions written since carry its keys; older ones
/// join it on their next event), and the call waits until the index is ACTIVE.
async fn add_index(client: &Client, table: &str, index: SessionIndex) -> Result<(), StoreError> {
    let op = format!("UpdateTable ({})", index.name);
    let gsi = global_index(index)?;
    let create = CreateGlobalSecondaryIndexAction::builder()
        .index_name(index.name)
        .set_key_schema(Some(gsi.key_schema().to_vec()))
        .set_projection(gsi.projection().cloned())
        .build()
        .map_err(|e| build_error(&op, &e))?;
    let sent = client
        .update_table()
        .table_name(table)
        .set_attribute_definitions(Some(index_attributes(index)?))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder().create(create).build(),
        )
        .send()
        .await;
    if let Err(e) = sent {
        // Another process may have added it meanwhile.
        let desc = describe(client, table).await?;
        if !desc.as_ref().is_some_and(|d| has_index(d, index)) {
            return Err(unavailable(table, &op, &e));
        }
    }
    let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_WAIT;
    loop {
        let desc = wait_active(client, table).await?;
        let active = desc.global_secondary_indexes().iter().any(|i| {
            i.index_name() == Some(index.name) && i.index_status() == Some(&IndexStatus::Active)
        });
        if active {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "dynamodb index {} of {table} did not become ACTIVE within {}s",
                index.name,
                TABLE_ACTIVE_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn new_image_stream() -> Result<StreamSpecification, StoreError> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewImage)
        .build()
        .map_err(|e| build_error("stream specification", &e))
}

async fn wait_active(client: &Client, table: &str) -> Result<TableDescription, StoreError> {
    let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_WAIT;
    let mut delay = Duration::from_millis(100);
    loop {
        let desc = describe(client, table).await?;
        match desc {
            Some(desc) if desc.table_status() == Some(&TableStatus::Active) => return Ok(desc),
            Some(desc)
                if !matches!(
                    desc.table_status(),
                    Some(TableStatus::Creating | TableStatus::Updating) | None
                ) =>
            {
                return Err(StoreError::Unavailable(format!(
                    "dynamodb table {table} is {:?}, not ACTIVE",
                    desc.table_status()
                )));
            }
            // Being created or updated, or not yet visible after creation: keep waiting.
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "dynamodb table {table} did not become ACTIVE within {}s",
                TABLE_ACTIVE_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// A table with other keys would make every request fail with a validation error; say so
/// once, at startup.
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
    let on = |(status, attribute): &(Option<TimeToLiveStatus>, Option<String>)| {
        matches!(
            status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) && attribute.as_deref() == Some(TTL_ATTRIBUTE)
    };
    let current = describe_ttl(client, table).await?;
    if on(&current) {
        return Ok(());
    }
    if let (Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling), attribute) = &current {
        return Err(StoreError::Unavailable(format!(
            "dynamodb table {table} has TTL on {attribute:?}, not {TTL_ATTRIBUTE}"
        )));
    }
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(TTL_ATTRIBUTE)
        .build()
        .map_err(|e| build_error("UpdateTimeToLive", &e))?;
    let updated = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await;
    if let Err(e) = updated {
        // Another process may have enabled it meanwhile ("TTL is already enabled").
        if !on(&describe_ttl(client, table).await?) {
            return Err(unavailable(table, "UpdateTimeToLive", &e));
        }
    }
    Ok(())
}

async fn describe_ttl(
    client: &Client,
    table: &str,
) -> Result<(Option<TimeToLiveStatus>, Option<String>), StoreError> {
    let out = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| unavailable(table, "DescribeTimeToLive", &e))?;
    let desc = out.time_to_live_description;
    Ok((
        desc.as_ref().and_then(|d| d.time_to_live_status().cloned()),
        desc.and_then(|d| d.attribute_name),
    ))
}
