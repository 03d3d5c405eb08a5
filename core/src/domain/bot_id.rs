//! Bot ids arrive from the network and end up in keys, log lines and URLs, so they are parsed
//! once at the edge and carried as a type that cannot hold anything unsafe.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest bot id accepted. MeetingBaaS ids are UUIDs (36 chars); the margin is for test ids.
pub const MAX_BOT_ID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BotId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotIdError {
    #[error("bot id is empty")]
    Empty,
    #[error("bot id is longer than {MAX_BOT_ID_LEN} characters")]
    TooLong,
    #[error("bot id may only contain letters, digits, '.', '_', ':' and '-'")]
    InvalidCharacter,
}

impl BotId {
    pub fn parse(raw: &str) -> Result<Self, BotIdError> {
        if raw.is_empty() {
            return Err(BotIdError::Empty);
        }
        if raw.len() > MAX_BOT_ID_LEN {
            return Err(BotIdError::TooLong);
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err(BotIdError::InvalidCharacter);
        }
        // "." and ".." are made of allowed characters but mean something to every path parser.
        if raw.bytes().all(|b| b == b'.') {
            return Err(BotIdError::InvalidCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The reserved id account-level events are kept under: no bot, no lifecycle, never
    /// reconciled.
    pub fn is_account_level(&self) -> bool {
        self.0 == crate::domain::payload::CALENDAR_BOT
    }
}

impl fmt::Display for BotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for BotId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for BotId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        BotId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuids_and_test_ids() {
        for ok in [
            "test-123",
            "0b5e1e7c-8e0f-4c3a-9f57-2f1d1a9b7c11",
            "a.b_c:d-e",
            "x",
        ] {
            assert_eq!(BotId::parse(ok).map(|b| b.to_string()), Ok(ok.to_owned()));
        }
        assert!(BotId::parse(&"a".repeat(MAX_BOT_ID_LEN)).is_ok());
    }

    #[test]
    fn refuses_what_could_escape_a_key_or_path() {
        assert_eq!(BotId::parse(""), Err(BotIdError::Empty));
        assert_eq!(
            BotId::parse(&"a".repeat(MAX_BOT_ID_LEN + 1)),
            Err(BotIdError::TooLong)
        );
        for bad in [
            "../etc", "a/b", "..", ".", "a b", "bot#1", "é", "a\0b", "a\nb",
        ] {
            assert_eq!(
                BotId::parse(bad),
                Err(BotIdError::InvalidCharacter),
                "{bad:?}"
            );
        }
    }
}
