//! Property-based tests of the edges that take bytes from the network: the webhook intake
//! (`Intake::prepare`), the WebSocket message parser (`ClientMessage::parse`) and the client
//! tokens. Fixed seed and no persistence file: the same cases run on every machine, in seconds.

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, RngSeed};
use relay_core::domain::auth::{AuthSettings, Authenticator, sign};
use relay_core::domain::token::{Claims, Scope, TokenKeys};
use relay_core::handlers::subscription::ClientMessage;
use relay_core::handlers::webhook::Intake;
use serde_json::Value;

const API_KEY: &str = "prop-key-1234567890";
const CALLBACK: &str = "prop-callback-secret";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_WHSEC: &str = "whsec_c2VjcmV0LW90aGVyLXNlY3JldC0xMjM0NTY=";
/// Small, so that some generated bodies are over it (413).
const MAX_BODY: usize = 4096;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x6d65_6574_696e_6721),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn intake() -> Intake {
    let auth = Authenticator::new(&AuthSettings {
        api_keys: AuthSettings::key_list(&format!("old-key-0000000000,{API_KEY}")),
        webhook_secret: Some(WHSEC.into()),
        callback_secret: Some(CALLBACK.into()),
    })
    .expect("auth settings");
    Intake::new(auth, MAX_BODY)
}

// ---------------------------------------------------------------------------------------------
// Headers

/// One Standard Webhooks (Svix) header set, valid or broken in one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    Valid,
    /// Valid, with the `webhook-*` names.
    ValidWebhookNames,
    WrongSecret,
    Stale,
    /// The signature header missing.
    Incomplete,
    Garbage,
}

#[derive(Debug, Clone)]
struct Auth {
    api_key: Option<bool>,
    callback: Option<bool>,
    sig: Option<Sig>,
}

impl Auth {
    fn valid(&self) -> bool {
        self.api_key == Some(true)
            || self.callback == Some(true)
            || matches!(self.sig, Some(Sig::Valid | Sig::ValidWebhookNames))
    }
}

fn auth_strategy() -> impl Strategy<Value = Auth> {
    let sig = prop_oneof![
        Just(Sig::Valid),
        Just(Sig::ValidWebhookNames),
        Just(Sig::WrongSecret),
        Just(Sig::Stale),
        Just(Sig::Incomplete),
        Just(Sig::Garbage),
    ];
    (
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(sig),
    )
        .prop_map(|(api_key, callback, sig)| Auth {
            api_key,
            callback,
            sig,
        })
}

/// A header value as sent: common good and bad values, and arbitrary bytes (those that are no
/// valid header value are not sent at all).
fn header_value(common: &'static [&'static str]) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        6 => Just(None),
        4 => proptest::sample::select(common).prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ]
}

fn content_type_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
    header_value(&[
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/cloudevents+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
        "application/jsonx",
    ])
}

fn content_encoding_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
    header_value(&["identity", "IDENTITY", "", "gzip", "identity, br", "zstd"])
}

#[derive(Debug, Clone)]
struct Headers {
    content_type: Option<Vec<u8>>,
    content_encoding: Option<Vec<u8>>,
    auth: Auth,
}

fn headers_strategy() -> impl Strategy<Value = Headers> {
    (
        content_type_strategy(),
        content_encoding_strategy(),
        auth_strategy(),
    )
        .prop_map(|(content_type, content_encoding, auth)| Headers {
            content_type,
            content_encoding,
            auth,
        })
}

fn insert(h: &mut HeaderMap, name: &'static str, value: &[u8]) {
    if let Ok(v) = HeaderValue::from_bytes(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

fn build_headers(spec: &Headers, body: &[u8], now: i64) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(ct) = &spec.content_type {
        insert(&mut h, "content-type", ct);
    }
    if let Some(ce) = &spec.content_encoding {
        insert(&mut h, "content-encoding", ce);
    }
    if let Some(valid) = spec.auth.api_key {
        let key = if valid { API_KEY } else { "prop-key-123456789" };
        insert(&mut h, "x-meeting-baas-api-key", key.as_bytes());
    }
    if let Some(valid) = spec.auth.callback {
        let secret = if valid {
            CALLBACK
        } else {
            "prop-callback-secreT"
        };
        insert(&mut h, "x-mb-secret", secret.as_bytes());
    }
    if let Some(sig) = spec.auth.sig {
        let id = "msg_prop";
        let (secret, ts) = match sig {
            Sig::WrongSecret => (OTHER_WHSEC, now),
            Sig::Stale => (WHSEC, now - 301),
            _ => (WHSEC, now),
        };
        let signature = match sig {
            Sig::Garbage => "v1,AAAA v2,xyz".to_owned(),
            _ => sign(secret, id, ts, body).expect("sign"),
        };
        let [n_id, n_ts, n_sig] = if sig == Sig::ValidWebhookNames {
            ["webhook-id", "webhook-timestamp", "webhook-signature"]
        } else {
            ["svix-id", "svix-timestamp", "svix-signature"]
        };
        insert(&mut h, n_id, id.as_bytes());
        insert(&mut h, n_ts, ts.to_string().as_bytes());
        if sig != Sig::Incomplete {
            insert(&mut h, n_sig, signature.as_bytes());
        }
    }
    h
}

/// Whether the content headers as sent are ones the intake takes.
fn content_headers_ok(h: &HeaderMap) -> bool {
    let ct_ok = match h.get("content-type").map(|v| v.to_str()) {
        None => true,
        Some(Ok(v)) => {
            let essence = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        }
        Some(Err(_)) => false,
    };
    let ce_ok = h.get_all("content-encoding").iter().all(|v| {
        v.to_str().is_ok_and(|t| {
            t.split(',')
                .map(str::trim)
                .all(|c| c.is_empty() || c.eq_ignore_ascii_case("identity"))
        })
    });
    ct_ok && ce_ok
}

// ---------------------------------------------------------------------------------------------
// JSON text: valid by the RFC 8259 grammar (whatever serde_json can represent), with escapes,
// lone surrogates, big numbers and deep nesting.

fn ws() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(&[" ", "\t", "\n", "\r"][..]), 0..3)
        .prop_map(|v| v.concat())
}

fn json_string_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9 _.:-]{1,6}",
        2 => any::<char>()
            .prop_filter("unescaped", |c| *c != '"' && *c != '\\' && (*c as u32) >= 0x20)
            .prop_map(String::from),
        1 => proptest::sample::select(
            &["\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u0000", "\\u00e9"][..]
        )
        .prop_map(str::to_owned),
        // Any \u escape: lone high and low surrogates included (what JavaScript writes for a cut
        // emoji), and a correct pair.
        1 => any::<u16>().prop_map(|u| format!("\\u{u:04x}")),
        1 => Just("\\ud83d\\ude00".to_owned()),
        1 => Just("\\uD83D".to_owned()),
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|p| format!("\"{}\"", p.concat()))
}

fn json_number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        // Out of every integer type, and out of f64 range.
        "-?(0|[1-9][0-9]{0,60})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?",
        Just("1e400".to_owned()),
        Just("-1e-400".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
    ]
}

fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        json_number_text(),
        json_string_text(),
    ];
    let tree = leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec((ws(), inner.clone(), ws()), 0..6).prop_map(|items| {
                let parts: Vec<String> = items.into_iter().map(|(a, v, b)| a + &v + &b).collect();
                format!("[{}]", parts.join(","))
            }),
            proptest::collection::vec((json_string_text(), ws(), inner, ws()), 0..6).prop_map(
                |members| {
                    let parts: Vec<String> = members
                        .into_iter()
                        .map(|(k, a, v, b)| format!("{k}{a}:{b}{v}"))
                        .collect();
                    format!("{{{}}}", parts.join(","))
                }
            ),
        ]
    });
    prop_oneof![
        6 => tree.clone(),
        // Nesting past serde_json's recursion limit (128).
        1 => (1usize..400, tree).prop_map(|(depth, v)| {
            format!("{}{v}{}", "[".repeat(depth), "]".repeat(depth))
        }),
        1 => (1usize..300).prop_map(|depth| {
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        }),
    ]
}

/// A body: valid JSON text under a delivery's envelope (so it gets past the bot id), a bare one,
/// a broken one, or arbitrary bytes. `true` when it is valid JSON naming a bot.
fn body_strategy() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let envelope = prop_oneof![
        Just((
            "{\"type\":\"meeting.started\",\"data\":{\"botId\":\"b-1\",\"v\":",
            "}}"
        )),
        Just((
            "{\"event\":\"complete\",\"data\":{\"bot_id\":\"b-2\",\"x\":",
            "}}"
        )),
        Just((
            "{\"event\":\"bot.status_change\",\"data\":{\"bot_id\":\"b-3\",\"status\":",
            "}}"
        )),
        Just((
            "{\"extra\":",
            ",\"event\":\"bot.failed\",\"data\":{\"bot_id\":\"b-4\"}}"
        )),
    ];
    prop_oneof![
        4 => (envelope, json_text()).prop_map(|((open, close), v)| {
            (format!("{open}{v}{close}").into_bytes(), true)
        }),
        2 => json_text().prop_map(|t| (t.into_bytes(), false)),
        // A valid body with one byte changed, cut short or grown.
        2 => (json_text(), any::<prop::sample::Index>(), any::<u8>(), 0u8..3).prop_map(
            |(t, at, byte, how)| {
                let mut b = t.into_bytes();
                let i = at.index(b.len().max(1));
                match how {
                    0 if !b.is_empty() => {
                        let last = b.len() - 1;
                        b[i.min(last)] = byte;
                    }
                    1 => b.truncate(i),
                    _ => b.insert(i.min(b.len()), byte),
                }
                (b, false)
            }
        ),
        1 => proptest::collection::vec(any::<u8>(), 0..MAX_BODY + 200).prop_map(|b| (b, false)),
        // Valid and naming a bot, padded with whitespace to around the limit (413 past it).
        1 => (MAX_BODY - 64..MAX_BODY + 64).prop_map(|size| {
            let body = "{\"type\":\"meeting.started\",\"data\":{\"botId\":\"b-5\"}}";
            let pad = " ".repeat(size.saturating_sub(body.len()));
            (format!("{body}{pad}").into_bytes(), true)
        }),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    /// Never a panic; every refusal is one of the contract's statuses; an acceptance only when
    /// a configured scheme matched; an authenticated valid JSON body naming a bot with JSON
    /// content headers is accepted (valid JSON is never refused for its content).
    #[test]
    fn intake_never_panics_and_refuses_only_with_contract_statuses(
        (body, names_a_bot) in body_strategy(),
        spec in headers_strategy(),
    ) {
        let intake = intake();
        let now = chrono::Utc::now();
        let headers = build_headers(&spec, &body, now.timestamp());
        match intake.prepare(&headers, &body, now) {
            Ok(event) => {
                prop_assert!(spec.auth.valid(), "accepted without valid credentials");
                prop_assert!(content_headers_ok(&headers));
                prop_assert!(body.len() <= MAX_BODY);
                prop_assert_eq!(event.body.as_bytes(), &body[..]);
            }
            Err(err) => {
                let status = err.status().as_u16();
                prop_assert!(
                    [400, 401, 413, 415].contains(&status),
                    "status {} for {:?}", status, err
                );
                prop_assert!(!err.public_message().contains(API_KEY));
                prop_assert!(!err.public_message().contains(CALLBACK));
                let expected_ok = names_a_bot
                    && spec.auth.valid()
                    && content_headers_ok(&headers)
                    && body.len() <= MAX_BODY;
                prop_assert!(!expected_ok, "valid delivery refused: {:?}", err);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotency: the same value keyed the same whatever its spacing and key order.

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", serde_json::Number::from_f64)
            .prop_map(Value::Number),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Writes `value` as JSON text, its spacing, key order and string escapes chosen by `noise`.
fn render(value: &Value, noise: &mut impl FnMut() -> u32, out: &mut String) {
    let space = |noise: &mut dyn FnMut() -> u32, out: &mut String| {
        for _ in 0..noise() % 3 {
            out.push([' ', '\t', '\n', '\r'][(noise() % 4) as usize]);
        }
    };
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(noise, out);
                render(item, noise, out);
                space(noise, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // A sender's order: a rotation and maybe a reversal.
            if !entries.is_empty() {
                let r = noise() as usize % entries.len();
                entries.rotate_left(r);
            }
            if noise().is_multiple_of(2) {
                entries.reverse();
            }
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(noise, out);
                render_string(k, noise, out);
                space(noise, out);
                out.push(':');
                space(noise, out);
                render(v, noise, out);
            }
            space(noise, out);
            out.push('}');
        }
        Value::String(s) => render_string(s, noise, out),
        other => out.push_str(&other.to_string()),
    }
}

/// A string with each character written as itself or as a `\u` escape (a surrogate pair beyond
/// the BMP), as different senders do.
fn render_string(s: &str, noise: &mut dyn FnMut() -> u32, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let must_escape = c == '"' || c == '\\' || (c as u32) < 0x20;
        if must_escape || noise().is_multiple_of(4) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

fn delivery(value: &Value) -> Value {
    serde_json::json!({
        "type": "meeting.started",
        "data": {"botId": "idem-bot", "v": value},
    })
}

fn noise_from(seed: u64) -> impl FnMut() -> u32 {
    let mut state = seed | 1;
    move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

fn api_key_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-meeting-baas-api-key", HeaderValue::from_static(API_KEY));
    h
}

fn key_of(intake: &Intake, text: &str) -> Result<String, TestCaseError> {
    intake
        .prepare(&api_key_headers(), text.as_bytes(), chrono::Utc::now())
        .map(|e| e.idempotency_key)
        .map_err(|e| TestCaseError::fail(format!("refused {text:?}: {e}")))
}

fn big_intake() -> Intake {
    let auth = Authenticator::new(&AuthSettings {
        api_keys: AuthSettings::key_list(API_KEY),
        ..AuthSettings::default()
    })
    .expect("auth settings");
    Intake::new(auth, 1 << 20)
}

proptest! {
    #![proptest_config(config(384))]

    /// With no id header, a value written twice with different spacing, key order and escapes
    /// gets the same key (the canonical body's hash).
    #[test]
    fn same_value_any_spacing_or_key_order_same_key(
        value in json_value(),
        seed_a in any::<u64>(),
        seed_b in any::<u64>(),
    ) {
        let intake = big_intake();
        let value = delivery(&value);
        let (mut a, mut b) = (String::new(), String::new());
        render(&value, &mut noise_from(seed_a), &mut a);
        render(&value, &mut noise_from(seed_b), &mut b);
        let (ka, kb) = (key_of(&intake, &a)?, key_of(&intake, &b)?);
        prop_assert!(ka.starts_with("b:"), "{}", ka);
        prop_assert_eq!(ka, kb, "{} / {}", a, b);
    }

    /// Different values (as the parser reads them) get different keys.
    #[test]
    fn different_values_different_keys(
        x in json_value(),
        y in json_value(),
        seed in any::<u64>(),
    ) {
        let intake = big_intake();
        let (mut a, mut b) = (String::new(), String::new());
        let mut noise = noise_from(seed);
        render(&delivery(&x), &mut noise, &mut a);
        render(&delivery(&y), &mut noise, &mut b);
        let parsed = |t: &str| serde_json::from_str::<Value>(t).ok();
        prop_assume!(parsed(&a) != parsed(&b));
        prop_assert_ne!(key_of(&intake, &a)?, key_of(&intake, &b)?);
    }
}

// ---------------------------------------------------------------------------------------------
// The WebSocket message parser.

const CLIENT_CODES: [&str; 4] = [
    "bad_message",
    "invalid_bot_id",
    "invalid_since",
    "unknown_action",
];

fn field(values: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        3 => proptest::sample::select(values).prop_map(Some),
        1 => json_value().prop_map(Some),
    ]
}

fn client_frame() -> impl Strategy<Value = Value> {
    let action = field(vec![
        "subscribe".into(),
        "unsubscribe".into(),
        "ping".into(),
        "Subscribe".into(),
        "".into(),
        Value::Null,
        7.into(),
    ]);
    let bot = field(vec![
        "bot-1".into(),
        "8f0f6c1e-2a7d-4d1b-9c55-0f6f7e3b1a21".into(),
        "".into(),
        "..".into(),
        "bad/bot".into(),
        "x".repeat(129).into(),
        Value::Null,
        12.into(),
    ]);
    let since = field(vec![
        0.into(),
        42.into(),
        u64::MAX.into(),
        (-1).into(),
        1.5.into(),
        "3".into(),
        Value::Null,
    ]);
    (
        action,
        bot,
        since,
        proptest::collection::btree_map("[a-z_]{1,8}", json_value(), 0..3),
    )
        .prop_map(|(action, bot, since, extra)| {
            let mut m: serde_json::Map<String, Value> = extra.into_iter().collect();
            for (k, v) in [("action", action), ("bot_id", bot), ("since", since)] {
                match v {
                    Some(v) => m.insert(k.to_owned(), v),
                    None => m.remove(k),
                };
            }
            Value::Object(m)
        })
}

fn check_parse(frame: &str) -> Result<(), TestCaseError> {
    match ClientMessage::parse(frame) {
        Ok(_) => Ok(()),
        Err(refusal) => {
            prop_assert!(
                CLIENT_CODES.contains(&refusal.code),
                "code {} for {:?}",
                refusal.code,
                frame
            );
            prop_assert!(!refusal.message.is_empty());
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn client_message_parse_of_any_string(frame in any::<String>()) {
        check_parse(&frame)?;
    }

    #[test]
    fn client_message_parse_of_any_json(value in json_value()) {
        check_parse(&value.to_string())?;
    }

    #[test]
    fn client_message_parse_of_any_json_text(text in json_text()) {
        check_parse(&text)?;
    }

    /// Frames shaped like the client's: Ok exactly for the well-formed ones.
    #[test]
    fn client_message_parse_of_client_shaped_frames(frame in client_frame()) {
        let text = frame.to_string();
        check_parse(&text)?;
        let valid_bot = frame["bot_id"]
            .as_str()
            .is_some_and(|b| relay_core::BotId::parse(b).is_ok());
        let since_ok = frame["since"].is_null() || frame["since"].is_u64();
        let expected_ok = match frame["action"].as_str() {
            Some("ping") => true,
            Some("unsubscribe") => valid_bot,
            Some("subscribe") => valid_bot && since_ok,
            _ => false,
        };
        prop_assert_eq!(ClientMessage::parse(&text).is_ok(), expected_ok, "{}", text);
    }
}

// ---------------------------------------------------------------------------------------------
// Client tokens.

const TOKEN_SECRET: &str = "prop-client-secret";

fn claims_strategy() -> impl Strategy<Value = Claims> {
    (
        any::<String>(),
        60i64..10_000_000,
        proptest::collection::vec(prop_oneof![Just("*".to_owned()), any::<String>()], 0..4),
        prop_oneof![Just(Scope::Read), Just(Scope::Control)],
    )
        .prop_map(|(sub, exp_in, bots, scope)| Claims {
            sub,
            exp: chrono::Utc::now().timestamp() + exp_in,
            bots,
            scope,
        })
}

fn jwt_shaped() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,50}"
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_strings_never_verify(s in prop_oneof![any::<String>(), jwt_shaped()]) {
        let keys = TokenKeys::new(TOKEN_SECRET).expect("keys");
        prop_assert!(keys.verify(&s).is_err());
    }

    /// A minted token's header and claims with any other signature do not verify.
    #[test]
    fn minted_claims_with_a_forged_signature_never_verify(
        claims in claims_strategy(),
        sig in "[A-Za-z0-9_-]{0,50}",
    ) {
        let keys = TokenKeys::new(TOKEN_SECRET).expect("keys");
        let token = keys.mint(&claims).expect("mint");
        let (signed, real) = token.rsplit_once('.').expect("three segments");
        prop_assume!(sig != real);
        let forged = format!("{signed}.{sig}");
        prop_assert!(keys.verify(&forged).is_err());
    }

    #[test]
    fn minted_claims_round_trip(claims in claims_strategy()) {
        let keys = TokenKeys::new(TOKEN_SECRET).expect("keys");
        let token = keys.mint(&claims).expect("mint");
        prop_assert_eq!(keys.verify(&token), Ok(claims));
    }

    #[test]
    fn any_changed_byte_of_a_minted_token_fails(
        claims in claims_strategy(),
        at in any::<prop::sample::Index>(),
        replacement in 0x21u8..0x7f,
    ) {
        let keys = TokenKeys::new(TOKEN_SECRET).expect("keys");
        let token = keys.mint(&claims).expect("mint");
        let mut bytes = token.into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let tampered = String::from_utf8(bytes).expect("ascii");
        prop_assert!(keys.verify(&tampered).is_err(), "{} verified", tampered);
    }
}
