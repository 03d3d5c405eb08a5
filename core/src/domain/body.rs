//! A delivery body, parsed once for what the intake needs of it: a handful of fields (bot id,
//! event name, status) and, for deliveries that carry no id (MeetingBaaS v1), the SHA-256 of its
//! canonical JSON.
//!
//! The work is one pass over the bytes ([`scan`]) that keeps only the top levels of the tree and
//! writes the canonical text as it goes, so a multi-megabyte transcript costs a copy, not a tree.
//! Bodies that pass leaves to serde_json (unusual numbers, lone surrogates, deep nesting, errors)
//! are parsed into a full [`Json`] tree instead; both give the same fields and the same text.
//!
//! The canonical form is exactly what `serde_json` prints for the body parsed as a `Value`
//! (keys sorted, compact; a repeated key keeps its last value), so keys computed either way agree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

mod scan;

/// A parsed body: the top of its tree and, when asked for at parse time, its canonical JSON.
pub struct Body<'a> {
    text: &'a str,
    root: Json<'a>,
    canonical: Option<Vec<u8>>,
}

impl<'a> Body<'a> {
    /// Parses `text`; with `canonical`, also writes its canonical JSON in the same pass.
    pub fn parse(text: &'a str, canonical: bool) -> Result<Body<'a>, serde_json::Error> {
        let (root, canonical) = match scan::scan(text, canonical) {
            Ok(scanned) => scanned,
            Err(scan::GiveUp) => {
                let tree = Json::parse(text)?;
                let bytes = canonical.then(|| tree.canonical_bytes());
                (tree, bytes)
            }
        };
        Ok(Body {
            text,
            root,
            canonical,
        })
    }

    /// The body as sent (checked UTF-8).
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The body's top value: objects down to `data.status` and their scalars; what lies
    /// deeper or inside arrays may show as [`Json::Skipped`].
    pub fn root(&self) -> &Json<'a> {
        &self.root
    }

    /// The canonical JSON text (keys sorted, compact).
    pub fn canonical_json(&self) -> Cow<'_, [u8]> {
        match &self.canonical {
            Some(bytes) => Cow::Borrowed(bytes),
            None => Cow::Owned(canonical_of(self.text)),
        }
    }

    /// SHA-256 of [`Body::canonical_json`].
    pub fn canonical_hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_json()).into()
    }
}

fn canonical_of(text: &str) -> Vec<u8> {
    match scan::scan(text, true) {
        Ok((_, Some(bytes))) => bytes,
        // The body parsed once already, so the tree parses again.
        _ => Json::parse(text)
            .map(|t| t.canonical_bytes())
            .unwrap_or_default(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Entries sorted by key (stable: of repeated keys the last one is the one that counts).
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
    /// A number, or an array or object too deep for the intake to look into (checked, not kept).
    Skipped,
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

    /// The canonical JSON of a full tree (what [`Body`] falls back to).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_canonical(&mut out);
        out
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        // Serialising a str or a Number into a Vec cannot fail.
        match self {
            Json::Null | Json::Skipped => out.extend_from_slice(b"null"),
            Json::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Json::Number(n) => {
                let _ = serde_json::to_writer(&mut *out, n);
            }
            Json::String(s) => {
                let _ = serde_json::to_writer(&mut *out, s.as_ref());
            }
            Json::Array(items) => {
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write_canonical(out);
                }
                out.push(b']');
            }
            Json::Object(entries) => {
                out.push(b'{');
                let mut first = true;
                for (i, (k, v)) in entries.iter().enumerate() {
                    // A repeated key: only its last value is part of the object.
                    if entries.get(i + 1).is_some_and(|(next, _)| next == k) {
                        continue;
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    let _ = serde_json::to_writer(&mut *out, k.as_ref());
                    out.push(b':');
                    v.write_canonical(out);
                }
                out.push(b'}');
            }
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
    fn reference(text: &str) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .map(|v| v.to_string())
    }

    /// Checks every way of getting the canonical text against the reference; returns whether
    /// the one-pass scan handled the body itself.
    fn check(text: &str) -> bool {
        let expected = reference(text);
        let fast = scan::scan(text, true).ok();
        match &expected {
            None => {
                assert!(fast.is_none(), "scan accepted invalid JSON: {text:?}");
                assert!(Body::parse(text, true).is_err(), "{text:?}");
                assert!(Body::parse(text, false).is_err(), "{text:?}");
                false
            }
            Some(want) => {
                if let Some((_, Some(bytes))) = &fast {
                    assert_eq!(String::from_utf8_lossy(bytes), *want, "scan of {text:?}");
                }
                for prepared in [true, false] {
                    let body = Body::parse(text, prepared).unwrap();
                    assert_eq!(
                        String::from_utf8_lossy(&body.canonical_json()),
                        *want,
                        "{text:?}"
                    );
                    assert_eq!(
                        body.canonical_hash(),
                        <[u8; 32]>::from(Sha256::digest(want.as_bytes()))
                    );
                }
                assert_eq!(
                    Json::parse(text).unwrap().canonical_bytes(),
                    want.as_bytes()
                );
                fast.is_some()
            }
        }
    }

    #[test]
    fn canonical_form_is_serde_jsons_sorted_compact_form() {
        let cases = [
            r#"{"b":1,"a":{"d":[1,2,{"z":null,"y":true}],"c":"x"}}"#,
            r#"{ "data" : { "n":[1, 2], "bot_id":"b"}, "event":"x" }"#,
            r#"{"k":"esc \" \\ \/ \b\f\n\r\t \u0001 \u00e9 \ud83d\ude00 é 😀 \u001F \u007f \u0022 \u005c","\u0041":2,"A\n":3}"#,
            r#"{"f":[1.0,-0.0,1e300,2.5e-8,123456789012345678901234567890,-9223372036854775808,18446744073709551615,0.1]}"#,
            r#"{"n":[0,-0,0.0,-0.5,1.50,100.0,1200.0,0.00001,0.000001,0.00012,12345678901234.5,1234567890123456.0,99999999999999999,999999999999999999,9999999999999999999,1E2,1e-2,1.5e+3]}"#,
            r#"{"dup":1,"x":0,"dup":2}"#,
            r#"{"z":1,"y":2,"x":3,"y":4}"#,
            r#"{"":[],"empty":{},"nested":[[[]]],"unicode_ключ":"значение"}"#,
            r#"[1,"two",{"b":1,"a":2}]"#,
            r#""just a string""#,
            "17",
            " \t\n{\r\n} \n",
            // Lone surrogates, bad escapes, raw control characters, bad numbers, trailing text.
            r#"{"s":"\ud800"}"#,
            r#"{"s":"\udc00x"}"#,
            r#"{"s":"\ud800\u0041"}"#,
            r#"{"s":"\x"}"#,
            "{\"s\":\"a\u{1}b\"}",
            r#"{"n":01}"#,
            r#"{"n":1.}"#,
            r#"{"n":-}"#,
            r#"{"n":1e}"#,
            r#"{"n":1e400}"#,
            r#"{"a":1}x"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            "{\"a\":tru}",
            "",
            "{",
        ];
        for text in cases {
            check(text);
        }
    }

    #[test]
    fn senders_bodies_take_the_one_pass_scan() {
        let bodies = [
            crate::testing::testdata::v1_status_change("b-1", "in_call_recording", "2026-11-29T09:00:00Z"),
            crate::testing::testdata::v1_complete_of_size("b-2", 300 * 1024, 3),
            crate::testing::testdata::v2_completed("b-3", 5, 4),
            // Keys in a sender's order, pretty-printed, with escapes: still one pass.
            crate::testing::testdata::keys_reversed(&crate::testing::testdata::v1_complete_of_size("b-4", 200 * 1024, 5)),
            serde_json::to_string_pretty(
                &serde_json::from_str::<serde_json::Value>(&crate::testing::testdata::v1_complete(
                    "b-5", 3, 6,
                ))
                .unwrap(),
            )
            .unwrap(),
            r#"{"event":"bot.chat_message","data":{"bot_id":"b","text":"caf\u00e9 \ud83d\ude00 \"hi\"\n"}}"#.to_owned(),
        ];
        for body in bodies {
            assert!(check(&body), "fell back to the tree: {}", &body[..80]);
        }
    }

    /// Random documents with random spacing, key order, repeated keys, escapes and numbers.
    #[test]
    fn random_documents_agree_with_the_reference() {
        struct Gen(u64);
        impl Gen {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
            fn below(&mut self, n: u64) -> u64 {
                self.next() % n
            }
            fn digits(&mut self, n: u64, out: &mut String) {
                for _ in 0..n {
                    out.push(char::from(b'0' + self.below(10) as u8));
                }
            }
            fn ws(&mut self, out: &mut String) {
                if self.below(4) == 0 {
                    out.push_str([" ", "\n  ", "\t", "\r\n"][self.below(4) as usize]);
                }
            }
            fn number(&mut self, out: &mut String) {
                if self.below(3) == 0 {
                    out.push('-');
                }
                if self.below(3) == 0 {
                    out.push('0');
                } else {
                    out.push(char::from(b'1' + self.below(9) as u8));
                    let n = self.below(20);
                    self.digits(n, out);
                }
                if self.below(2) == 0 {
                    out.push('.');
                    let n = 1 + self.below(18);
                    self.digits(n, out);
                }
                if self.below(8) == 0 {
                    out.push(['e', 'E'][self.below(2) as usize]);
                    out.push_str(["", "+", "-"][self.below(3) as usize]);
                    let n = 1 + self.below(2);
                    self.digits(n, out);
                }
            }
            fn string(&mut self, out: &mut String) {
                const PIECES: &[&str] = &[
                    "a",
                    "word",
                    "é",
                    "😀",
                    "\\\"",
                    "\\\\",
                    "\\/",
                    "\\n",
                    "\\t",
                    "\\b",
                    "\\f",
                    "\\r",
                    "\\u0000",
                    "\\u001f",
                    "\\u00e9",
                    "\\u20AC",
                    "\\ud83d\\ude00",
                    "\\u0022",
                    " ",
                    "Z",
                    "~",
                    "\u{7f}",
                ];
                out.push('"');
                for _ in 0..self.below(5) {
                    out.push_str(PIECES[self.below(PIECES.len() as u64) as usize]);
                }
                out.push('"');
            }
            fn value(&mut self, depth: u32, out: &mut String) {
                self.ws(out);
                match self.below(if depth > 4 { 5 } else { 8 }) {
                    0 => out.push_str(["true", "false", "null"][self.below(3) as usize]),
                    1 | 2 => self.number(out),
                    3 | 4 => self.string(out),
                    5 => {
                        out.push('[');
                        for i in 0..self.below(4) {
                            if i > 0 {
                                out.push(',');
                            }
                            self.value(depth + 1, out);
                        }
                        self.ws(out);
                        out.push(']');
                    }
                    _ => {
                        const KEYS: &[&str] = &[
                            "a", "b", "bot_id", "data", "status", "code", "é", "A", "\\u0041",
                        ];
                        out.push('{');
                        for i in 0..self.below(5) {
                            if i > 0 {
                                out.push(',');
                            }
                            self.ws(out);
                            out.push('"');
                            out.push_str(KEYS[self.below(KEYS.len() as u64) as usize]);
                            out.push('"');
                            self.ws(out);
                            out.push(':');
                            self.value(depth + 1, out);
                        }
                        self.ws(out);
                        out.push('}');
                    }
                }
                self.ws(out);
            }
        }
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        let (mut fast, mut invalid) = (0, 0);
        for i in 0..20_000 {
            let mut text = String::new();
            g.value(0, &mut text);
            if i % 2 == 1 {
                // One stray character somewhere: mostly invalid, and must be refused alike.
                const STRAY: &[&str] = &[
                    ",", "}", "]", "\"", "\\", "\u{1}", "0", " ", "e", "-", ".", ":",
                ];
                let mut at = g.below(text.len() as u64 + 1) as usize;
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, STRAY[g.below(STRAY.len() as u64) as usize]);
            }
            if reference(&text).is_none() {
                invalid += 1;
            }
            if check(&text) {
                fast += 1;
            }
        }
        assert!(
            fast > 10_000 && invalid > 5_000,
            "{fast} took the scan, {invalid} invalid"
        );
    }

    #[test]
    fn the_kept_top_finds_the_last_of_repeated_keys() {
        for text in [
            r#"{"b":1,"a":"first","c":{},"a":"second","data":{"status":{"code":"x","deep":{"k":1}}}}"#,
            // The same through the tree (a number only serde_json reads).
            r#"{"b":1e1,"a":"first","c":{},"a":"second","data":{"status":{"code":"x","deep":{"k":1}}}}"#,
        ] {
            let body = Body::parse(text, false).unwrap();
            let root = body.root();
            assert_eq!(root.get("a").and_then(Json::as_str), Some("second"));
            assert!(root.get("c").is_some_and(Json::is_object));
            assert!(root.get("d").is_none());
            let status = root.get("data").and_then(|d| d.get("status"));
            assert_eq!(
                status.and_then(|s| s.get("code")).and_then(Json::as_str),
                Some("x")
            );
        }
        assert!(Body::parse("[1]", false).unwrap().root().get("a").is_none());
    }

    #[test]
    fn nesting_beyond_128_is_refused() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(Body::parse(&deep, true).is_err());
        assert!(Body::parse(&deep, false).is_err());
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(Body::parse(&ok, true).is_ok());
        let hostile = "[".repeat(1_000_000);
        assert!(Body::parse(&hostile, true).is_err());
    }
}
