//! The idempotency key of a delivery. MeetingBaaS v1 sends no delivery id at all, so the body
//! itself (canonical JSON: keys sorted, no whitespace) is the fallback identity: a redelivery
//! hashes the same, however the sender orders keys.

use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest header-supplied key kept verbatim; longer ones are hashed so keys stay small.
const MAX_VERBATIM: usize = 200;

/// Key for a delivery: `d:` Svix/Standard-Webhooks message id, `h:` `Idempotency-Key` header,
/// `b:` SHA-256 of the canonical body. Scoping by bot happens in [`crate::event::EventId`].
pub fn key(headers: &HeaderMap, body: &Value) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(id) = header("svix-id").or_else(|| header("webhook-id")) {
        return prefixed("d:", id);
    }
    if let Some(k) = header("idempotency-key") {
        return prefixed("h:", k);
    }
    format!("b:{}", hex::encode(canonical_hash(body)))
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

/// SHA-256 of the canonical JSON of `value`, streamed into the hasher (no copy of the body).
pub fn canonical_hash(value: &Value) -> [u8; 32] {
    let mut h = Sha256::new();
    write_canonical(value, &mut h);
    h.finalize().into()
}

/// Canonical JSON text of `value` (sorted keys, compact); what [`canonical_hash`] hashes.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn write_canonical(value: &Value, out: &mut impl Sink) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.put(b"{");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_scalar(&Value::String(k.clone()), out);
                out.put(b":");
                write_canonical(v, out);
            }
            out.put(b"}");
        }
        Value::Array(items) => {
            out.put(b"[");
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_canonical(v, out);
            }
            out.put(b"]");
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut impl Sink) {
    // Serialising a scalar Value cannot fail; the Display impl is serde_json's compact form.
    out.put(value.to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

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
        let a: Value =
            serde_json::from_str(r#"{"event":"x","data":{"bot_id":"b","n":[1,2]}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{ "data" : { "n":[1, 2], "bot_id":"b"}, "event":"x" }"#)
                .unwrap();
        let c: Value =
            serde_json::from_str(r#"{"event":"x","data":{"bot_id":"b","n":[2,1]}}"#).unwrap();
        let h = HeaderMap::new();
        assert_eq!(key(&h, &a), key(&h, &b));
        assert_ne!(key(&h, &a), key(&h, &c));
        assert_eq!(
            canonical_json(&b),
            r#"{"data":{"bot_id":"b","n":[1,2]},"event":"x"}"#
        );
        assert_eq!(canonical_json(&json!({"s": "é\"\n"})), r#"{"s":"é\"\n"}"#);
    }

    #[test]
    fn long_header_keys_are_hashed() {
        let mut h = HeaderMap::new();
        let long = "k".repeat(500);
        h.insert("idempotency-key", HeaderValue::from_str(&long).unwrap());
        let k = key(&h, &json!({}));
        assert!(k.starts_with("h:sha256:") && k.len() < 80, "{k}");
    }
}
