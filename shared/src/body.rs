//! A delivery body parsed once into a tree that borrows its strings from the body.
//!
//! The intake needs two things from a body: a handful of fields (bot id, event name, status) and
//! the SHA-256 of its canonical JSON (the idempotency key of v1 deliveries, which carry no id).
//! A `serde_json::Value` costs a map node and an owned `String` for every key and string of a
//! multi-megabyte transcript; this tree costs one `Vec` per object or array, keeps each object's
//! entries sorted by key as parsed (so the canonical form needs no further sorting), and writes
//! its canonical JSON straight into the hasher.
//!
//! The canonical form is exactly what `serde_json` prints for the body parsed as a `Value`
//! (keys sorted, compact; a repeated key keeps its last value), so keys computed either way agree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Entries sorted by key (stable: of repeated keys the last one is the one that counts).
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses `text` (serde_json's parser, with its nesting limit of 128).
    pub fn parse(text: &'a str) -> Result<Json<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The value of `key` in an object (the last one, if the key is repeated).
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        let Json::Object(entries) = self else {
            return None;
        };
        let end = entries.partition_point(|(k, _)| k.as_ref() <= key);
        match end.checked_sub(1).map(|i| &entries[i]) {
            Some((k, v)) if k == key => Some(v),
            _ => None,
        }
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    /// SHA-256 of the canonical JSON.
    pub fn canonical_hash(&self) -> [u8; 32] {
        let mut out = Canonical {
            buf: Vec::with_capacity(2 * HASH_CHUNK),
            hasher: Some(Sha256::new()),
        };
        self.write_canonical(&mut out);
        let mut hasher = out.hasher.take().unwrap_or_default();
        hasher.update(&out.buf);
        hasher.finalize().into()
    }

    /// The canonical JSON text (keys sorted, compact), what [`Json::canonical_hash`] hashes.
    pub fn canonical_json(&self) -> String {
        let mut out = Canonical {
            buf: Vec::new(),
            hasher: None,
        };
        self.write_canonical(&mut out);
        String::from_utf8(out.buf).unwrap_or_default()
    }

    fn write_canonical(&self, out: &mut Canonical) {
        // Serialising a str or a Number into a Vec cannot fail.
        match self {
            Json::Null => out.buf.extend_from_slice(b"null"),
            Json::Bool(b) => out
                .buf
                .extend_from_slice(if *b { b"true" } else { b"false" }),
            Json::Number(n) => {
                let _ = serde_json::to_writer(&mut out.buf, n);
            }
            Json::String(s) => {
                let _ = serde_json::to_writer(&mut out.buf, s.as_ref());
            }
            Json::Array(items) => {
                out.buf.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.buf.push(b',');
                    }
                    v.write_canonical(out);
                    out.spill();
                }
                out.buf.push(b']');
            }
            Json::Object(entries) => {
                out.buf.push(b'{');
                let mut first = true;
                for (i, (k, v)) in entries.iter().enumerate() {
                    // A repeated key: only its last value is part of the object.
                    if entries.get(i + 1).is_some_and(|(next, _)| next == k) {
                        continue;
                    }
                    if !first {
                        out.buf.push(b',');
                    }
                    first = false;
                    let _ = serde_json::to_writer(&mut out.buf, k.as_ref());
                    out.buf.push(b':');
                    v.write_canonical(out);
                    out.spill();
                }
                out.buf.push(b'}');
            }
        }
    }
}

const HASH_CHUNK: usize = 64 * 1024;

/// Canonical text goes into a plain `Vec` (cheap appends); when hashing, full chunks are fed
/// to the hasher between elements, so a large body never needs a second full-size buffer.
struct Canonical {
    buf: Vec<u8>,
    hasher: Option<Sha256>,
}

impl Canonical {
    fn spill(&mut self) {
        if self.buf.len() >= HASH_CHUNK
            && let Some(h) = self.hasher.as_mut()
        {
            h.update(&self.buf);
            self.buf.clear();
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        // JSON text has no NaN or infinity; as serde_json's Value does, anything else is null.
        Ok(serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some(Key(k)) = map.next_key()? {
            let v = map.next_value()?;
            entries.push((k, v));
        }
        // Senders mostly write keys in a fixed order; sort (stably) only when needed.
        if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(Json::Object(entries))
    }
}

/// An object key, borrowed from the body unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: serde_json's own compact form of the body parsed as a `Value` (its map
    /// is sorted by key; a repeated key keeps the last value).
    fn reference(text: &str) -> String {
        serde_json::from_str::<serde_json::Value>(text)
            .unwrap()
            .to_string()
    }

    #[test]
    fn canonical_form_is_serde_jsons_sorted_compact_form() {
        let cases = [
            r#"{"b":1,"a":{"d":[1,2,{"z":null,"y":true}],"c":"x"}}"#,
            r#"{ "data" : { "n":[1, 2], "bot_id":"b"}, "event":"x" }"#,
            r#"{"k":"esc \" \\ \/ \b\f\n\r\t \u0001 \u00e9 \ud83d\ude00 é 😀","\u0041":2,"A\n":3}"#,
            r#"{"f":[1.0,-0.0,1e300,2.5e-8,123456789012345678901234567890,-9223372036854775808,18446744073709551615,0.1]}"#,
            r#"{"dup":1,"x":0,"dup":2}"#,
            r#"{"z":1,"y":2,"x":3,"y":4}"#,
            r#"{"":[],"empty":{},"nested":[[[]]],"unicode_ключ":"значение"}"#,
            r#"[1,"two",{"b":1,"a":2}]"#,
            r#""just a string""#,
            "17",
        ];
        for text in cases {
            let tree = Json::parse(text).unwrap();
            assert_eq!(tree.canonical_json(), reference(text), "{text}");
            assert_eq!(
                tree.canonical_hash(),
                <[u8; 32]>::from(Sha256::digest(reference(text).as_bytes())),
                "{text}"
            );
        }
    }

    #[test]
    fn generated_payloads_agree_with_the_reference() {
        let bodies = [
            crate::testdata::v1_status_change("b-1", "in_call_recording", "2026-11-29T09:00:00Z"),
            crate::testdata::v1_complete_of_size("b-2", 300 * 1024, 3),
        ];
        for body in bodies {
            let tree = Json::parse(&body).unwrap();
            assert_eq!(tree.canonical_json(), reference(&body));
            // Large enough to cross the hasher's chunks.
            assert_eq!(
                tree.canonical_hash(),
                <[u8; 32]>::from(Sha256::digest(reference(&body).as_bytes()))
            );
        }
    }

    #[test]
    fn get_finds_the_last_of_repeated_keys() {
        let tree = Json::parse(r#"{"b":1,"a":"first","c":{},"a":"second"}"#).unwrap();
        assert_eq!(tree.get("a").and_then(Json::as_str), Some("second"));
        assert!(tree.get("c").is_some_and(Json::is_object));
        assert!(tree.get("d").is_none());
        assert!(Json::parse("[1]").unwrap().get("a").is_none());
    }

    #[test]
    fn nesting_beyond_128_is_refused() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(Json::parse(&deep).is_err());
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(Json::parse(&ok).is_ok());
    }
}
