//! What the intake reads of a delivery body: the handful of fields the payload families keep
//! at the top, in `data` and in `data.status`, through serde_json with everything else skipped
//! (`IgnoredAny`: checked against the JSON grammar, never built). Leaf fields are taken as raw
//! JSON text and decoded on their own, so a value serde_json cannot represent (a lone surrogate
//! escape, a number out of f64 range, nesting past its limit) costs nothing where nobody reads
//! it, and only the one field where somebody does. A repeated key keeps its last value.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// The top of a body that is a JSON object.
#[derive(Debug, Default)]
pub struct Envelope<'a> {
    pub event: Option<&'a RawValue>,
    pub type_: Option<&'a RawValue>,
    pub bot_id: Option<&'a RawValue>,
    pub bot_id_camel: Option<&'a RawValue>,
    /// `data`, when its (last) value is an object.
    pub data: Option<Data<'a>>,
    pub has_extra: bool,
}

#[derive(Debug, Default)]
pub struct Data<'a> {
    pub bot_id: Option<&'a RawValue>,
    pub bot_id_camel: Option<&'a RawValue>,
    pub has_event_id: bool,
    /// `data.status`, an object or a bare code string (kept raw: it is small).
    pub status: Option<&'a RawValue>,
    pub sent_at: Option<&'a RawValue>,
    pub error_code: Option<&'a RawValue>,
    pub error: Option<&'a RawValue>,
    pub error_message: Option<&'a RawValue>,
    pub message: Option<&'a RawValue>,
}

/// `data.status` when it is an object, its fields decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Status<'a> {
    pub code: Option<Cow<'a, str>>,
    pub created_at: Option<Cow<'a, str>>,
    pub error_type: Option<Cow<'a, str>>,
    pub error_code: Option<Cow<'a, str>>,
    pub error_message: Option<Cow<'a, str>>,
    pub attempt: Option<u64>,
    pub max: Option<u64>,
}

#[derive(Default)]
struct RawStatus<'a> {
    code: Option<&'a RawValue>,
    created_at: Option<&'a RawValue>,
    error_type: Option<&'a RawValue>,
    error_code: Option<&'a RawValue>,
    error_message: Option<&'a RawValue>,
    attempt: Option<&'a RawValue>,
    max: Option<&'a RawValue>,
}

impl<'a> RawStatus<'a> {
    fn decode(&self) -> Status<'a> {
        Status {
            code: self.code.and_then(text),
            created_at: self.created_at.and_then(text),
            error_type: self.error_type.and_then(text),
            error_code: self.error_code.and_then(text),
            error_message: self.error_message.and_then(text),
            attempt: self.attempt.and_then(number),
            max: self.max.and_then(number),
        }
    }
}

/// A body: an object's envelope, or any other JSON value.
#[derive(Debug)]
pub enum Top<'a> {
    Object(Box<Envelope<'a>>),
    NotObject,
}

impl<'a> Top<'a> {
    /// Reads `text` in one pass; an error is the JSON grammar's, or a value serde_json cannot
    /// decode where the reader looked ([`Top::read_tolerant`] reads those).
    pub fn read(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads `text`, already known to be valid JSON, touching nothing but object keys and the
    /// raw text of the fields (`data` is taken whole and read on its own): so a body whose
    /// `data`, or whose top level, is a value serde_json cannot decode is still read. Keys must
    /// decode: pass a copy with lone surrogate escapes replaced.
    pub fn read_tolerant(text: &'a str) -> Result<Self, serde_json::Error> {
        if !text.trim_start().starts_with('{') {
            return Ok(Top::NotObject);
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let (mut envelope, data) = de.deserialize_map(EnvelopeVisitor { tolerant: true })?;
        if let Some(raw) = data.filter(|d| d.get().starts_with('{')) {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            envelope.data = Some(de.deserialize_map(DataVisitor)?);
        }
        Ok(Top::Object(Box::new(envelope)))
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Top<'de>, A::Error> {
                EnvelopeVisitor { tolerant: false }
                    .visit_map(map)
                    .map(|(envelope, _)| Top::Object(Box::new(envelope)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Top::NotObject)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
            fn visit_str<E>(self, _: &str) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
            fn visit_unit<E>(self) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads a map's keys without allocating for the ones that need no unescaping.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
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
        d.deserialize_str(V)
    }
}

/// The top object's visitor; `tolerant`: `data` is kept raw (the last one) for a later read.
struct EnvelopeVisitor {
    tolerant: bool,
}

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = (Envelope<'de>, Option<&'de RawValue>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Envelope::default();
        let mut data_raw = None;
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "event" => out.event = Some(map.next_value()?),
                "type" => out.type_ = Some(map.next_value()?),
                "bot_id" => out.bot_id = Some(map.next_value()?),
                "botId" => out.bot_id_camel = Some(map.next_value()?),
                "data" if self.tolerant => data_raw = Some(map.next_value()?),
                "data" => out.data = map.next_value_seed(Lenient(DataVisitor))?,
                "extra" => {
                    out.has_extra = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((out, data_raw))
    }
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = Data<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data<'de>, A::Error> {
        let mut out = Data::default();
        while let Some(Key(key)) = map.next_key()? {
            let slot = match key.as_ref() {
                "bot_id" => &mut out.bot_id,
                "botId" => &mut out.bot_id_camel,
                "status" => &mut out.status,
                "sent_at" => &mut out.sent_at,
                "error_code" => &mut out.error_code,
                "error" => &mut out.error,
                "error_message" => &mut out.error_message,
                "message" => &mut out.message,
                other => {
                    out.has_event_id |= other == "event_id";
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(out)
    }
}

/// Wraps a map visitor: an object goes to it, anything else is skipped as `None`.
struct Lenient<V>(V);

impl<'de, V: Visitor<'de>> de::DeserializeSeed<'de> for Lenient<V> {
    type Value = Option<V::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Lenient<V> {
    type Value = Option<V::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(map).map(Some)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

impl<'a> Status<'a> {
    /// `data.status` when it is an object (a bare string is a code: see [`text`]).
    pub fn read(raw: &'a RawValue) -> Option<Status<'a>> {
        let json = raw.get();
        if !json.starts_with('{') {
            return None;
        }
        match read_status(json) {
            Some(status) => Some(status.decode()),
            // A key serde_json cannot decode: read a copy with lone surrogates replaced.
            None => {
                let clean = replace_lone_surrogates(json);
                read_status(&clean).map(|s| s.decode().into_owned())
            }
        }
    }

    fn into_owned(self) -> Status<'static> {
        let own = |c: Option<Cow<'_, str>>| c.map(|c| Cow::Owned(c.into_owned()));
        Status {
            code: own(self.code),
            created_at: own(self.created_at),
            error_type: own(self.error_type),
            error_code: own(self.error_code),
            error_message: own(self.error_message),
            attempt: self.attempt,
            max: self.max,
        }
    }
}

fn read_status(json: &str) -> Option<RawStatus<'_>> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = RawStatus<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawStatus<'de>, A::Error> {
            let mut out = RawStatus::default();
            while let Some(Key(key)) = map.next_key()? {
                let slot = match key.as_ref() {
                    "code" => &mut out.code,
                    "created_at" => &mut out.created_at,
                    "error_type" => &mut out.error_type,
                    "error_code" => &mut out.error_code,
                    "error_message" => &mut out.error_message,
                    "attempt" => &mut out.attempt,
                    "max" => &mut out.max,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                };
                *slot = Some(map.next_value()?);
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    de.deserialize_map(V).ok()
}

/// A leaf as a string, when it is a JSON string. Escapes are decoded; a lone surrogate escape
/// (what JavaScript writes for a cut emoji) becomes U+FFFD rather than losing the field.
pub fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let json = raw.get();
    if !json.starts_with('"') {
        return None;
    }
    if let Ok(s) = serde_json::from_str::<&str>(json) {
        return Some(Cow::Borrowed(s));
    }
    serde_json::from_str::<String>(json)
        .or_else(|_| serde_json::from_str::<String>(&replace_lone_surrogates(json)))
        .ok()
        .map(Cow::Owned)
}

/// A leaf as a whole number, when it is one (or a string of digits).
pub fn number(raw: &RawValue) -> Option<u64> {
    raw.get()
        .parse()
        .ok()
        .or_else(|| text(raw).and_then(|t| t.trim().parse().ok()))
}

pub fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// JSON text with every `\uXXXX` escape of a surrogate that is not part of a pair replaced by
/// `\ufffd`; everything else byte for byte. Only for reading fields: the body kept is the raw one.
pub fn replace_lone_surrogates(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let mut copied = 0;
    let mut i = 0;
    let unit_at = |at: usize| -> Option<u16> {
        let hex = json.get(at..at + 6)?;
        let digits = hex.strip_prefix("\\u")?;
        u16::from_str_radix(digits, 16).ok()
    };
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'u') => {
                let Some(unit) = unit_at(i) else {
                    i += 2;
                    continue;
                };
                let high = (0xD800..0xDC00).contains(&unit);
                let low = (0xDC00..0xE000).contains(&unit);
                let paired = high && unit_at(i + 6).is_some_and(|u| (0xDC00..0xE000).contains(&u));
                if paired {
                    i += 12;
                } else if high || low {
                    out.push_str(&json[copied..i]);
                    out.push_str("\\ufffd");
                    i += 6;
                    copied = i;
                } else {
                    i += 6;
                }
            }
            // Any other escape is two characters: skip both (so `\\u` is not an escape).
            Some(_) => i += 2,
            None => i += 1,
        }
    }
    out.push_str(&json[copied..]);
    out
}
