//! Webhook authentication: any configured scheme that matches is enough. Every comparison is
//! constant-time, and no secret (nor a part of one) ever leaves this module.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Standard Webhooks' replay window.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// Which scheme accepted a delivery (logged; never the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    ApiKey,
    Signature,
    CallbackSecret,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::ApiKey => "api_key",
            Scheme::Signature => "signature",
            Scheme::CallbackSecret => "callback_secret",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "no webhook authentication configured: set MEETINGBAAS_API_KEY, MEETINGBAAS_WEBHOOK_SECRET or MEETINGBAAS_CALLBACK_SECRET"
    )]
    NothingConfigured,
    #[error(
        "MEETINGBAAS_WEBHOOK_SECRET is not a valid whsec_ secret (expected whsec_ followed by base64)"
    )]
    BadWebhookSecret,
}

/// Why a delivery was refused. Only for logs and tests: the response is always `unauthorized`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials for any configured scheme")]
    Missing,
    #[error("credentials did not match")]
    Mismatch,
    #[error("signature headers incomplete")]
    IncompleteSignature,
    #[error("signature timestamp outside the tolerance")]
    StaleTimestamp,
}

/// The webhook secrets as the settings give them (`secrecy`: `Debug` shows `[REDACTED]`, and
/// reading one is an explicit `expose_secret`).
#[derive(Clone, Default, Debug)]
pub struct AuthSettings {
    /// `MEETINGBAAS_API_KEY`, split at commas: every key accepted (for rotation).
    pub api_keys: Vec<SecretString>,
    pub webhook_secret: Option<SecretString>,
    pub callback_secret: Option<SecretString>,
}

impl AuthSettings {
    /// A comma-separated key list as the setting holds it; blanks dropped.
    pub fn key_list(raw: &str) -> Vec<SecretString> {
        raw.split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(SecretString::from)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.api_keys.is_empty() && self.webhook_secret.is_none() && self.callback_secret.is_none()
    }
}

/// Verifies deliveries. Keys are kept only as SHA-256 digests, so comparing digests of equal
/// length is constant-time whatever the length of what was sent.
pub struct Authenticator {
    api_key_digests: Vec<[u8; 32]>,
    webhook_key: Option<Vec<u8>>,
    callback_digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("api_keys", &self.api_key_digests.len())
            .field("signature", &self.webhook_key.is_some())
            .field("callback_secret", &self.callback_digest.is_some())
            .finish()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn non_empty(s: &Option<SecretString>) -> Option<&str> {
    s.as_ref()
        .map(|s| s.expose_secret().trim())
        .filter(|s| !s.is_empty())
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        let api_key_digests: Vec<[u8; 32]> = settings
            .api_keys
            .iter()
            .map(|k| k.expose_secret().trim())
            .filter(|k| !k.is_empty())
            .map(|k| digest(k.as_bytes()))
            .collect();
        let webhook_key = non_empty(&settings.webhook_secret)
            .map(|s| {
                let b64 = s.strip_prefix("whsec_").unwrap_or(s);
                B64.decode(b64)
                    .ok()
                    .filter(|k| !k.is_empty())
                    .ok_or(AuthConfigError::BadWebhookSecret)
            })
            .transpose()?;
        let callback_digest = non_empty(&settings.callback_secret).map(|s| digest(s.as_bytes()));
        if api_key_digests.is_empty() && webhook_key.is_none() && callback_digest.is_none() {
            return Err(AuthConfigError::NothingConfigured);
        }
        Ok(Self {
            api_key_digests,
            webhook_key,
            callback_digest,
        })
    }

    /// Checks every configured scheme whose headers are present; the first that matches wins.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Scheme, AuthError> {
        let mut failure = AuthError::Missing;
        if !self.api_key_digests.is_empty()
            && let Some(sent) = header(headers, "x-meeting-baas-api-key")
        {
            let sent = digest(sent);
            let mut ok = Choice::from(0);
            // No early exit: every key is compared whatever matched before.
            for key in &self.api_key_digests {
                ok |= key.ct_eq(&sent);
            }
            if bool::from(ok) {
                return Ok(Scheme::ApiKey);
            }
            failure = AuthError::Mismatch;
        }
        if let Some(key) = &self.webhook_key {
            match verify_signature(key, headers, body, now_unix) {
                Ok(()) => return Ok(Scheme::Signature),
                Err(AuthError::Missing) => {}
                Err(e) => failure = e,
            }
        }
        if let Some(secret) = &self.callback_digest
            && let Some(sent) = header(headers, "x-mb-secret")
        {
            if bool::from(secret.ct_eq(&digest(sent))) {
                return Ok(Scheme::CallbackSecret);
            }
            failure = AuthError::Mismatch;
        }
        Err(failure)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get(name).map(|v| v.as_bytes())
}

/// Standard Webhooks (Svix): HMAC-SHA256 over `{id}.{timestamp}.{body}`, base64, in one or more
/// space-separated `v1,<sig>` entries; `svix-*` or `webhook-*` headers.
fn verify_signature(
    key: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), AuthError> {
    let get = |suffix: &str| {
        header(headers, &format!("svix-{suffix}"))
            .or_else(|| header(headers, &format!("webhook-{suffix}")))
    };
    let (id, ts, sigs) = match (get("id"), get("timestamp"), get("signature")) {
        (None, None, None) => return Err(AuthError::Missing),
        (Some(id), Some(ts), Some(sigs)) => (id, ts, sigs),
        _ => return Err(AuthError::IncompleteSignature),
    };
    let ts_num: i64 = std::str::from_utf8(ts)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or(AuthError::IncompleteSignature)?;
    if (now_unix - ts_num).abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(AuthError::StaleTimestamp);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| AuthError::Mismatch)?;
    mac.update(id);
    mac.update(b".");
    mac.update(ts);
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let mut ok = Choice::from(0);
    for entry in sigs.split(|b| *b == b' ') {
        let Some(sig) = entry.strip_prefix(b"v1,") else {
            continue;
        };
        if let Ok(sig) = B64.decode(sig) {
            ok |= expected.as_slice().ct_eq(&sig);
        }
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

/// Signs like a Standard Webhooks sender: what tests, `relay send-test-event` and the benches use.
pub fn sign(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, AuthConfigError> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = B64
        .decode(b64)
        .map_err(|_| AuthConfigError::BadWebhookSecret)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key).map_err(|_| AuthConfigError::BadWebhookSecret)?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn auth(keys: Option<&str>, whsec: Option<&str>, cb: Option<&str>) -> Authenticator {
        Authenticator::new(&AuthSettings {
            api_keys: keys.map(AuthSettings::key_list).unwrap_or_default(),
            webhook_secret: whsec.map(Into::into),
            callback_secret: cb.map(Into::into),
        })
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn api_key_list_allows_rotation() {
        let a = auth(Some("old-key, new-key"), None, None);
        for k in ["old-key", "new-key"] {
            assert_eq!(
                a.verify(&headers(&[("x-meeting-baas-api-key", k)]), b"{}", 0),
                Ok(Scheme::ApiKey)
            );
        }
        for k in ["old", "new-key2", "", "old-key,new-key"] {
            assert_eq!(
                a.verify(&headers(&[("x-meeting-baas-api-key", k)]), b"{}", 0),
                Err(AuthError::Mismatch),
                "{k:?}"
            );
        }
        assert_eq!(
            a.verify(&HeaderMap::new(), b"{}", 0),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn standard_webhooks_signature() {
        let a = auth(None, Some(SECRET), None);
        let body = br#"{"event":"bot.completed"}"#;
        let now = 1_764_400_000;
        let good = sign(SECRET, "msg_1", now, body).unwrap();
        let h = |sig: &str, ts: i64| {
            headers(&[
                ("svix-id", "msg_1"),
                ("svix-timestamp", &ts.to_string()),
                ("svix-signature", sig),
            ])
        };
        assert_eq!(a.verify(&h(&good, now), body, now), Ok(Scheme::Signature));
        // Several signatures (key rotation on the sender's side): any one may match.
        assert_eq!(
            a.verify(&h(&format!("v1,AAAA {good}"), now), body, now),
            Ok(Scheme::Signature)
        );
        // webhook-* spellings.
        let wh = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &now.to_string()),
            ("webhook-signature", &good),
        ]);
        assert_eq!(a.verify(&wh, body, now), Ok(Scheme::Signature));
        // Tampered body, wrong id, stale or future timestamp, partial headers.
        assert_eq!(
            a.verify(&h(&good, now), b"{}", now),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            a.verify(&h(&good, now), body, now + 301),
            Err(AuthError::StaleTimestamp)
        );
        assert_eq!(
            a.verify(&h(&good, now), body, now - 301),
            Err(AuthError::StaleTimestamp)
        );
        assert_eq!(
            a.verify(&headers(&[("svix-id", "msg_1")]), body, now),
            Err(AuthError::IncompleteSignature)
        );
        assert_eq!(
            a.verify(&h("v2,abc", now), body, now),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn callback_secret_and_any_scheme_suffices() {
        let a = auth(Some("k"), None, Some("cb-secret"));
        assert_eq!(
            a.verify(&headers(&[("x-mb-secret", "cb-secret")]), b"{}", 0),
            Ok(Scheme::CallbackSecret)
        );
        // A wrong API key does not stop a valid callback secret from counting.
        let both = headers(&[
            ("x-meeting-baas-api-key", "nope"),
            ("x-mb-secret", "cb-secret"),
        ]);
        assert_eq!(a.verify(&both, b"{}", 0), Ok(Scheme::CallbackSecret));
        assert_eq!(
            a.verify(&headers(&[("x-mb-secret", "cb")]), b"{}", 0),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn configuration_errors_and_debug_hides_secrets() {
        assert_eq!(
            Authenticator::new(&AuthSettings::default()).err(),
            Some(AuthConfigError::NothingConfigured)
        );
        let blank = AuthSettings {
            api_keys: AuthSettings::key_list(" , "),
            ..Default::default()
        };
        assert_eq!(
            Authenticator::new(&blank).err(),
            Some(AuthConfigError::NothingConfigured)
        );
        let bad = AuthSettings {
            webhook_secret: Some("whsec_!!!".into()),
            ..Default::default()
        };
        assert_eq!(
            Authenticator::new(&bad).err(),
            Some(AuthConfigError::BadWebhookSecret)
        );
        let s = AuthSettings {
            api_keys: AuthSettings::key_list("topsecret"),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("topsecret"));
        assert!(!format!("{:?}", Authenticator::new(&s).unwrap()).contains("topsecret"));
    }
}
