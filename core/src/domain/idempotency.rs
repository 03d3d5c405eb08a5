//! The idempotency key of a delivery. MeetingBaaS v1 sends no delivery id at all, so the body
//! itself is the fallback identity: the SHA-256 of its canonical JSON, as serde_json writes a
//! parsed value compactly with every object's keys sorted, so a redelivery hashes the same
//! however the sender spaced it or ordered its keys. A body valid JSON allows but serde_json
//! cannot represent (a lone surrogate escape, a number out of f64 range, nesting past its
//! limit) is keyed by the SHA-256 of its raw bytes instead.

use std::io::Write;

use http::HeaderMap;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest header-supplied key kept verbatim; longer ones are hashed so keys stay small.
const MAX_VERBATIM: usize = 200;

/// Key for a delivery: `d:` Svix/Standard-Webhooks message id, `h:` `Idempotency-Key` header,
/// `b:` SHA-256 of the canonical body, `r:` SHA-256 of a raw body that has no canonical form
/// (the last two only computed when no header names the delivery). Scoping by bot happens in
/// [`crate::domain::event::EventId`].
pub fn key(headers: &HeaderMap, body: &str) -> String {
    header_key(headers).unwrap_or_else(|| body_key(body))
}

/// The key a header gives, if any (so the intake knows before parsing whether it needs the
/// body's canonical form).
pub fn header_key(headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(id) = header("svix-id").or_else(|| header("webhook-id")) {
        return Some(prefixed("d:", id));
    }
    header("idempotency-key").map(|k| prefixed("h:", k))
}

/// The key of a body that no header names.
pub fn body_key(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(value) => {
            let mut hasher = HashWriter(Sha256::new());
            // Writing into a hasher cannot fail; serializing a parsed value cannot either.
            let _ = serde_json::to_writer(&mut hasher, &Sorted(&value));
            format!("b:{}", hex::encode(hasher.0.finalize()))
        }
        Err(_) => format!("r:{}", hex::encode(Sha256::digest(body.as_bytes()))),
    }
}

/// The canonical JSON text of `body` (what [`body_key`] hashes), when it has one.
pub fn canonical_json(body: &str) -> Option<String> {
    let value = serde_json::from_str::<Value>(body).ok()?;
    serde_json::to_string(&Sorted(&value)).ok()
}

/// A value serialized with every object's keys in order, whatever map type serde_json was built
/// with (another crate in a build may turn on its `preserve_order`); of repeated keys the parse
/// kept the last value, in both.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Sorted(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut out = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    out.serialize_entry(k, &Sorted(v))?;
                }
                out.end()
            }
            scalar => scalar.serialize(s),
        }
    }
}

/// Canonical bytes straight into the hasher: no intermediate string of a multi-megabyte body.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn prefixed(prefix: &str, raw: &str) -> String {
    if raw.len() <= MAX_VERBATIM {
        format!("{prefix}{raw}")
    } else {
        format!(
            "{prefix}sha256:{}",
            hex::encode(Sha256::digest(raw.as_bytes()))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::{Value, json};

    fn key(h: &HeaderMap, v: &Value) -> String {
        super::key(h, &v.to_string())
    }

    fn canonical(text: &str) -> String {
        canonical_json(text).unwrap()
    }

    #[test]
    fn header_precedence() {
        let body = json!({"a": 1});
        let mut h = HeaderMap::new();
        assert!(key(&h, &body).starts_with("b:"));
        h.insert("idempotency-key", HeaderValue::from_static("abc"));
        assert_eq!(key(&h, &body), "h:abc");
        h.insert("webhook-id", HeaderValue::from_static("msg_2"));
        assert_eq!(key(&h, &body), "d:msg_2");
        h.insert("svix-id", HeaderValue::from_static("msg_1"));
        assert_eq!(key(&h, &body), "d:msg_1");
    }

    #[test]
    fn body_key_ignores_key_order_and_whitespace_but_not_values() {
        let h = HeaderMap::new();
        let key_of = |text: &str| super::key(&h, text);
        let a = key_of(r#"{"event":"x","data":{"bot_id":"b","n":[1,2]}}"#);
        let b = key_of("{ \"data\" : { \"n\":[1, 2],\n \"bot_id\":\"b\"}, \"event\":\"x\" }");
        let c = key_of(r#"{"event":"x","data":{"bot_id":"b","n":[2,1]}}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            canonical(r#"{ "data" : { "n":[1, 2], "bot_id":"b"}, "event":"x" }"#),
            r#"{"data":{"bot_id":"b","n":[1,2]},"event":"x"}"#
        );
        assert_eq!(
            canonical(&json!({"s": "é\"\n"}).to_string()),
            r#"{"s":"é\"\n"}"#
        );
        // Of repeated keys the last counts; numbers as serde_json prints them.
        assert_eq!(
            canonical(
                r#"{"b":1,"a":"first","a":"second","n":[1.0,1e2,-0,0.1e-3,12345678901234567890]}"#
            ),
            r#"{"a":"second","b":1,"n":[1.0,100.0,-0.0,0.0001,12345678901234567890]}"#
        );
    }

    #[test]
    fn long_header_keys_are_hashed() {
        let mut h = HeaderMap::new();
        let long = "k".repeat(500);
        h.insert("idempotency-key", HeaderValue::from_str(&long).unwrap());
        let k = key(&h, &json!({}));
        assert!(k.starts_with("h:sha256:") && k.len() < 80, "{k}");
    }

    /// A change of these re-keys every stored event and doubles every later redelivery.
    #[test]
    fn golden_keys() {
        let seed = r#"{"type":"meeting.started","data":{"botId":"test-123"}}"#;
        let key = body_key(seed);
        assert_eq!(
            key,
            "b:4fbbdf0dc8df4391a9ca7e50189fc37bde0cd30e248429441feee7bd43f4ad16"
        );
        let bot = crate::BotId::parse("test-123").unwrap();
        assert_eq!(
            crate::EventId::derive(&bot, &key).as_str(),
            "evt_26b51668016ce003efb931cf4adb27e5"
        );
        assert_eq!(
            crate::EventId::derive(&bot, "d:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W").as_str(),
            "evt_d7072821b0ba88d6e49b5023d6dcb8aa"
        );
    }

    /// Bodies JSON allows but serde_json cannot represent are keyed by their raw bytes: the
    /// same bytes the same key, other bytes another.
    #[test]
    fn unrepresentable_bodies_are_keyed_by_their_bytes() {
        let deep = format!("{{\"data\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        for body in [
            r#"{"data":{"bot_id":"b","note":"\ud83d"}}"#.to_owned(),
            r#"{"data":{"bot_id":"b","n":1e400}}"#.to_owned(),
            deep,
        ] {
            let k = body_key(&body);
            assert_eq!(
                k,
                format!("r:{}", hex::encode(Sha256::digest(body.as_bytes()))),
                "{body}"
            );
            assert_eq!(k, body_key(&body));
            assert_ne!(k, body_key(&format!(" {body}")));
        }
    }

    /// 20,000 random documents (random spacing, key order, repeated keys, escapes, numbers;
    /// half with a stray character, mostly invalid) keyed as on the day the key was fixed: the
    /// digest of all their keys must never change. Pinned for serde_json as every shipped binary
    /// builds it (no `float_roundtrip`): a crate that turns that feature on in the same cargo run
    /// changes number parsing, so the JSON Schema check is tested in a run of its own
    /// (`tests/asyncapi-check`, scripts/test).
    #[test]
    fn keys_of_random_documents_never_change() {
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
        let mut golden = Sha256::new();
        let mut invalid = 0;
        for i in 0..20_000 {
            let mut text = String::new();
            g.value(0, &mut text);
            if i % 2 == 1 {
                const STRAY: &[&str] = &[
                    ",", "}", "]", "\"", "\\", "\u{1}", "0", " ", "e", "-", ".", ":",
                ];
                let mut at = g.below(text.len() as u64 + 1) as usize;
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, STRAY[g.below(STRAY.len() as u64) as usize]);
            }
            if serde_json::from_str::<Value>(&text).is_ok() {
                golden.update(body_key(&text).as_bytes());
                golden.update(b"\n");
            } else {
                invalid += 1;
                golden.update(b"-\n");
            }
        }
        assert!(invalid > 5_000, "{invalid} invalid");
        assert_eq!(
            hex::encode(golden.finalize()),
            "511def74b1180cfcdf48d7a451ac41e8078c7dab12195665899741113eae3a8a"
        );
    }
}
