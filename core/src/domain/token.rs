//! Client tokens: HS256 JWTs any backend can mint with a stock library.

use serde::{Deserialize, Serialize};

use crate::domain::bot_id::BotId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Control,
}

impl Scope {
    /// `control` includes `read`.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Control || needed == Scope::Read
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    /// Bot ids this token may see, or `["*"]` for all.
    #[serde(default)]
    pub bots: Vec<String>,
    #[serde(default = "default_scope")]
    pub scope: Scope,
}

fn default_scope() -> Scope {
    Scope::Read
}

impl Claims {
    pub fn allows_bot(&self, bot: &BotId) -> bool {
        self.bots.iter().any(|b| b == "*" || b == bot.as_str())
    }

    pub fn allows_all_bots(&self) -> bool {
        self.bots.iter().any(|b| b == "*")
    }
}

/// Clock skew allowed on `nbf` and `iat` (a backend's clock a little ahead of this one).
pub const LEEWAY_SECS: i64 = 30;

/// The registered claims checked beside [`Claims`] (NumericDate: a JSON number, whole or not).
#[derive(Deserialize)]
struct Wire {
    #[serde(flatten)]
    claims: Claims,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token invalid")]
    Invalid,
    #[error("token could not be signed")]
    Signing,
    #[error("RELAY_CLIENT_SECRET is empty or unusable")]
    BadSecret,
}

/// Signs and verifies with one shared secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(<redacted>)")
    }
}

impl TokenKeys {
    pub fn new(secret: &str) -> Result<Self, TokenError> {
        if secret.is_empty() {
            return Err(TokenError::BadSecret);
        }
        Ok(Self {
            encoding: jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())
                .map_err(|_| TokenError::BadSecret)?,
            decoding: jsonwebtoken::DecodingKey::from_secret(secret.as_bytes())
                .map_err(|_| TokenError::BadSecret)?,
        })
    }

    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &self.encoding,
        )
        .map_err(|_| TokenError::Signing)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `aud` is accepted and ignored (a backend's stock library may always set one);
        // `nbf` and `iat` are checked below, with their own leeway.
        validation.validate_aud = false;
        validation.validate_nbf = false;
        let wire = jsonwebtoken::decode::<Wire>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let latest = (chrono::Utc::now().timestamp() + LEEWAY_SECS) as f64;
        for t in [wire.nbf, wire.iat].into_iter().flatten() {
            if !t.is_finite() {
                return Err(TokenError::Invalid);
            }
            if t > latest {
                return Err(TokenError::NotYetValid);
            }
        }
        Ok(wire.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(bots: &[&str], exp_in: i64, scope: Scope) -> Claims {
        Claims {
            sub: "user-1".into(),
            exp: chrono::Utc::now().timestamp() + exp_in,
            bots: bots.iter().map(|b| b.to_string()).collect(),
            scope,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let keys = TokenKeys::new("s3cret").unwrap();
        let c = claims(&["bot-1"], 3600, Scope::Read);
        let t = keys.mint(&c).unwrap();
        assert_eq!(keys.verify(&t), Ok(c.clone()));
        assert!(c.allows_bot(&BotId::parse("bot-1").unwrap()));
        assert!(!c.allows_bot(&BotId::parse("bot-2").unwrap()));
        assert_eq!(
            TokenKeys::new("other").unwrap().verify(&t),
            Err(TokenError::Invalid)
        );
        assert_eq!(keys.verify("not.a.jwt"), Err(TokenError::Invalid));
        let old = keys.mint(&claims(&["bot-1"], -10, Scope::Read)).unwrap();
        assert_eq!(keys.verify(&old), Err(TokenError::Expired));
        let star = claims(&["*"], 60, Scope::Control);
        assert!(star.allows_bot(&BotId::parse("any").unwrap()) && star.allows_all_bots());
        assert_eq!(TokenKeys::new("").err(), Some(TokenError::BadSecret));
        assert!(Scope::Control.allows(Scope::Read) && !Scope::Read.allows(Scope::Control));
    }

    /// Signs arbitrary claims JSON with `secret`, as another backend's library would.
    fn sign(secret: &str, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn nbf_and_iat_are_honoured_and_aud_is_ignored() {
        let keys = TokenKeys::new("s3cret").unwrap();
        let now = chrono::Utc::now().timestamp();
        let base = serde_json::json!({"sub": "u", "exp": now + 600, "bots": ["b"]});
        let with = |k: &str, v: serde_json::Value| {
            let mut c = base.clone();
            c[k] = v;
            sign("s3cret", &c)
        };
        assert!(
            keys.verify(&with("aud", serde_json::json!("my-app")))
                .is_ok()
        );
        assert!(
            keys.verify(&with("aud", serde_json::json!(["a", "b"])))
                .is_ok()
        );
        assert!(
            keys.verify(&with("nbf", serde_json::json!(now - 5)))
                .is_ok()
        );
        assert!(keys.verify(&with("iat", serde_json::json!(now))).is_ok());
        // Within the leeway: a clock a little ahead.
        assert!(
            keys.verify(&with("nbf", serde_json::json!(now + 5)))
                .is_ok()
        );
        assert_eq!(
            keys.verify(&with("nbf", serde_json::json!(now + 300))),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            keys.verify(&with("iat", serde_json::json!(now as f64 + 300.5))),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            keys.verify(&with("nbf", serde_json::json!("soon"))),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn alg_none_is_refused() {
        // header {"alg":"none"} with a valid-looking payload and no signature.
        let t = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5LCJib3RzIjpbIioiXX0.";
        assert_eq!(
            TokenKeys::new("s").unwrap().verify(t),
            Err(TokenError::Invalid)
        );
    }
}
