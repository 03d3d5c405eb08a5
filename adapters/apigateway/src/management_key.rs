//! The local host's management API key. On AWS, API Gateway's `@connections` API takes only
//! SigV4-signed requests from an IAM principal allowed `execute-api:ManageConnections`;
//! `relay serve` plays that API itself, and this key is what stands for the signature there: 32
//! bytes from the operating system's RNG, made once per process, held only in memory, sent by
//! the process's own management API client (the [`crate::ApiGatewayPusher`] of
//! [`crate::ApiGatewayPusher::for_local_endpoint`]) on every request and checked in constant
//! time by the endpoint. A local process that can read the logs (which name connection ids) but
//! not this process's memory cannot post to a browser. See docs/security.md.

use std::fmt;

use subtle::ConstantTimeEq;

/// The header the key travels in: `Authorization`, as SigV4's signature does on AWS, which the
/// SDK's own request logging redacts (its `Debug` of headers hides `authorization`), so the
/// key is not written even by a `RUST_LOG=trace` relay.
pub const HEADER: &str = "authorization";
/// The scheme word before the key in [`HEADER`].
pub const SCHEME: &str = "RelayManagementKey";

/// The key, as the header value it is sent as (`RelayManagementKey <64 hex digits>`). Its
/// `Debug` never shows it; nothing else prints it.
#[derive(Clone)]
pub struct ManagementKey {
    header_value: http::HeaderValue,
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ManagementKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagementKeyError {
    #[error("the operating system's random number generator failed: {0}")]
    Rng(getrandom::Error),
    #[error("a management key is 64 hexadecimal digits (32 bytes)")]
    Malformed,
}

impl ManagementKey {
    /// A new key: 32 bytes from the operating system's RNG.
    pub fn generate() -> Result<Self, ManagementKeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(ManagementKeyError::Rng)?;
        Self::from_bytes(&bytes)
    }

    /// A key given as 64 hex digits (only the tests of the management API itself give one, so
    /// that they can call it as the relay does; see `RELAY_TESTING_MANAGEMENT_KEY`).
    pub fn from_hex(text: &str) -> Result<Self, ManagementKeyError> {
        let text = text.trim();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| ManagementKeyError::Malformed)?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8; 32]) -> Result<Self, ManagementKeyError> {
        let mut header_value =
            http::HeaderValue::try_from(format!("{SCHEME} {}", hex::encode(bytes)))
                .map_err(|_| ManagementKeyError::Malformed)?;
        // `http`'s own `Debug` of a sensitive value prints `Sensitive`.
        header_value.set_sensitive(true);
        Ok(Self { header_value })
    }

    /// The `Authorization` value a request must carry.
    pub fn header_value(&self) -> &http::HeaderValue {
        &self.header_value
    }

    /// Whether `headers` carry this key: exactly one `Authorization` header, equal to
    /// [`Self::header_value`] (compared in constant time; its length is no secret).
    pub fn verify(&self, headers: &http::HeaderMap) -> bool {
        let mut values = headers.get_all(HEADER).iter();
        match (values.next(), values.next()) {
            (Some(sent), None) => sent.as_bytes().ct_eq(self.header_value.as_bytes()).into(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_verified_exactly_and_never_printed() {
        let (a, b) = (ManagementKey::generate(), ManagementKey::generate());
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("no OS RNG");
        };
        assert_ne!(a.header_value(), b.header_value());
        let mut h = http::HeaderMap::new();
        assert!(!a.verify(&h));
        h.insert(HEADER, a.header_value().clone());
        assert!(a.verify(&h) && !b.verify(&h));
        h.append(HEADER, a.header_value().clone());
        assert!(!a.verify(&h), "two Authorization headers");
        let text = a.header_value().to_str().unwrap_or_default().to_owned();
        let mut h = http::HeaderMap::new();
        h.insert(
            HEADER,
            http::HeaderValue::from_str(&text[..text.len() - 1]).unwrap_or_else(|_| panic!()),
        );
        assert!(!a.verify(&h), "a prefix");
        assert_eq!(format!("{a:?}"), "ManagementKey(<redacted>)");
        assert!(!format!("{:?}", a.header_value()).contains(&text[SCHEME.len() + 1..]));

        let hex64 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let given = ManagementKey::from_hex(hex64).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            given.header_value().to_str().ok(),
            Some(format!("{SCHEME} {hex64}").as_str())
        );
        for bad in [
            "",
            "00",
            &hex64[1..],
            &format!("{hex64}00"),
            &hex64.replace('0', "g"),
        ] {
            assert!(ManagementKey::from_hex(bad).is_err(), "{bad:?}");
        }
    }
}
