//! The idempotency key of a delivery. MeetingBaaS v1 sends no delivery id at all, so the body
//! itself (canonical JSON: keys sorted, no whitespace) is the fallback identity: a redelivery
//! hashes the same, however the sender orders keys.

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::domain::body::Body;

/// Longest header-supplied key kept verbatim; longer ones are hashed so keys stay small.
const MAX_VERBATIM: usize = 200;

/// Key for a delivery: `d:` Svix/Standard-Webhooks message id, `h:` `Idempotency-Key` header,
/// `b:` SHA-256 of the canonical body (only computed when no header names the delivery).
/// Scoping by bot happens in [`crate::domain::event::EventId`].
pub fn key(headers: &HeaderMap, body: &Body) -> String {
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

pub fn body_key(body: &Body) -> String {
    format!("b:{}", hex::encode(body.canonical_hash()))
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
        let text = v.to_string();
        super::key(h, &Body::parse(&text, false).unwrap())
    }

    fn canonical_json(text: &str) -> String {
        String::from_utf8(
            Body::parse(text, true)
                .unwrap()
                .canonical_json()
                .into_owned(),
        )
        .unwrap()
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
        let key_of = |text: &str| super::key(&h, &Body::parse(text, true).unwrap());
        let a = key_of(r#"{"event":"x","data":{"bot_id":"b","n":[1,2]}}"#);
        let b = key_of("{ \"data\" : { \"n\":[1, 2],\n \"bot_id\":\"b\"}, \"event\":\"x\" }");
        let c = key_of(r#"{"event":"x","data":{"bot_id":"b","n":[2,1]}}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            canonical_json(r#"{ "data" : { "n":[1, 2], "bot_id":"b"}, "event":"x" }"#),
            r#"{"data":{"bot_id":"b","n":[1,2]},"event":"x"}"#
        );
        assert_eq!(
            canonical_json(&json!({"s": "é\"\n"}).to_string()),
            r#"{"s":"é\"\n"}"#
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
}
