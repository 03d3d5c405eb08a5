//! Attribute helpers both adapters share: building and reading the few hand-made values (keys,
//! conditions), reading items whose layout is not a serde struct, and expiry as the adapters
//! see it (an item past `expires_at` is gone, whether or not TTL has deleted it yet).

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use relay_core::ports::store::StoreError;

use crate::table::TTL_ATTRIBUTE;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt(item, &format!("{name} missing or not a string"))),
    }
}

pub(crate) fn get_n<T: FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| corrupt(item, &format!("{name} is not a valid number"))),
        _ => Err(corrupt(item, &format!("{name} missing or not a number"))),
    }
}

pub(crate) fn get_b<'a>(item: &'a Item, name: &str) -> Result<&'a [u8], StoreError> {
    match item.get(name) {
        Some(AttributeValue::B(v)) => Ok(v.as_ref()),
        _ => Err(corrupt(item, &format!("{name} missing or not binary"))),
    }
}

/// Past `expires_at`: logically gone, whether or not TTL has deleted it yet.
pub(crate) fn is_expired(item: &Item, now: i64) -> Result<bool, StoreError> {
    Ok(get_n::<i64>(item, TTL_ATTRIBUTE)? < now)
}

pub(crate) fn live(item: Option<Item>, now: i64) -> Result<Option<Item>, StoreError> {
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

/// An item as the serde struct of its layout.
pub(crate) fn from_item<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item.clone()).map_err(|e| corrupt(item, &e.to_string()))
}

/// A serde struct as the item it is stored as.
pub(crate) fn to_item(value: &impl serde::Serialize) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value)
        .map_err(|e| StoreError::Corrupt(format!("item does not serialise: {e}")))
}
