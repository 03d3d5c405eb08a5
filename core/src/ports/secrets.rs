//! Where the four secrets come from on AWS: one secret (a JSON object with the keys of
//! [`SECRET_KEYS`]) that an adapter reads (`relay-secrets`: AWS Secrets Manager). `relay serve`
//! keeps reading them from its environment ([`crate::config::Config::from_env`]).

use secrecy::{ExposeSecret, SecretString};

use crate::config::Config;
use crate::domain::auth::AuthSettings;

/// The keys of the secret's JSON object, the names of the settings they replace.
pub const SECRET_KEYS: [&str; 4] = [
    "MEETINGBAAS_API_KEY",
    "MEETINGBAAS_WEBHOOK_SECRET",
    "MEETINGBAAS_CALLBACK_SECRET",
    "RELAY_CLIENT_SECRET",
];

/// Why no secrets could be had. Never carries a secret value (nor a fragment of the JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// The store could not be read (network, permissions, no such secret): retry later.
    #[error("the secrets could not be read: {0}")]
    Unavailable(String),
    /// The secret is not a JSON object of strings under the expected keys.
    #[error("the secret is malformed: {0}")]
    Malformed(&'static str),
}

/// The four secret settings, each `None` when absent or blank in the secret. `Debug` prints
/// `[REDACTED]` for every value.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// `MEETINGBAAS_API_KEY`: a comma-separated list during a rotation (every key accepted,
    /// the first used for outbound calls).
    pub meetingbaas_api_key: Option<SecretString>,
    pub meetingbaas_webhook_secret: Option<SecretString>,
    pub meetingbaas_callback_secret: Option<SecretString>,
    pub relay_client_secret: Option<SecretString>,
}

impl Secrets {
    /// The secret's JSON object. Keys other than [`SECRET_KEYS`] are ignored; a value that is
    /// not a string is an error naming the key, never the value.
    pub fn from_json(raw: &str) -> Result<Self, SecretsError> {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(raw).map_err(|_| SecretsError::Malformed("not a JSON object"))?;
        let mut values: [Option<SecretString>; 4] = Default::default();
        for (slot, key) in values.iter_mut().zip(SECRET_KEYS) {
            *slot = match object.get(key) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(v)) => Some(v.trim())
                    .filter(|v| !v.is_empty())
                    .map(SecretString::from),
                Some(_) => return Err(SecretsError::Malformed(key)),
            };
        }
        let [api_key, webhook, callback, client] = values;
        Ok(Self {
            meetingbaas_api_key: api_key,
            meetingbaas_webhook_secret: webhook,
            meetingbaas_callback_secret: callback,
            relay_client_secret: client,
        })
    }

    /// The settings with these secrets in place of whatever the environment had (a key the
    /// secret lacks is unset: the secret is the whole truth on AWS).
    pub fn apply(&self, config: &Config) -> Config {
        let mut config = config.clone();
        config.auth.api_keys = self
            .meetingbaas_api_key
            .as_ref()
            .map(|v| AuthSettings::key_list(v.expose_secret()))
            .unwrap_or_default();
        config.auth.webhook_secret = self.meetingbaas_webhook_secret.clone();
        config.auth.callback_secret = self.meetingbaas_callback_secret.clone();
        config.client_secret = self.relay_client_secret.clone();
        config
    }

    /// Whether both hold the same values (a refresh that changed nothing rebuilds nothing).
    pub fn same_as(&self, other: &Secrets) -> bool {
        fn eq(a: &Option<SecretString>, b: &Option<SecretString>) -> bool {
            a.as_ref().map(|s| s.expose_secret()) == b.as_ref().map(|s| s.expose_secret())
        }
        eq(&self.meetingbaas_api_key, &other.meetingbaas_api_key)
            && eq(
                &self.meetingbaas_webhook_secret,
                &other.meetingbaas_webhook_secret,
            )
            && eq(
                &self.meetingbaas_callback_secret,
                &other.meetingbaas_callback_secret,
            )
            && eq(&self.relay_client_secret, &other.relay_client_secret)
    }
}

/// Reads the current version of the secret.
#[async_trait::async_trait]
pub trait SecretsSource: Send + Sync {
    async fn fetch(&self) -> Result<Secrets, SecretsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_keys_blank_as_unset() {
        let s = Secrets::from_json(
            r#"{"MEETINGBAAS_API_KEY":"old, new","MEETINGBAAS_WEBHOOK_SECRET":"",
                "RELAY_CLIENT_SECRET":"client","other":1}"#,
        )
        .unwrap();
        let config = s.apply(&Config::from_lookup(|_| None).unwrap());
        assert_eq!(config.auth.api_keys.len(), 2);
        assert_eq!(config.auth.api_keys[1].expose_secret(), "new");
        assert!(config.auth.webhook_secret.is_none());
        assert!(config.auth.callback_secret.is_none());
        assert_eq!(
            config.client_secret.as_ref().map(|c| c.expose_secret()),
            Some("client")
        );
    }

    #[test]
    fn apply_replaces_what_the_environment_had() {
        let env = Config::from_lookup(|k| match k {
            "MEETINGBAAS_API_KEY" | "RELAY_CLIENT_SECRET" | "MEETINGBAAS_CALLBACK_SECRET" => {
                Some("env".into())
            }
            _ => None,
        })
        .unwrap();
        assert!(!env.auth.is_empty());
        let config = Secrets::default().apply(&env);
        assert!(config.auth.is_empty());
        assert!(config.client_secret.is_none());
    }

    #[test]
    fn errors_name_the_key_never_the_value() {
        let err = Secrets::from_json(r#"{"RELAY_CLIENT_SECRET": 12345678}"#).unwrap_err();
        assert_eq!(err, SecretsError::Malformed("RELAY_CLIENT_SECRET"));
        assert!(!err.to_string().contains("12345678"));
        let err = Secrets::from_json("hunter2-not-json").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(Secrets::from_json("[\"a\"]").is_err());
    }

    #[test]
    fn debug_redacts() {
        let s = Secrets::from_json(r#"{"MEETINGBAAS_API_KEY":"plain-key-value"}"#).unwrap();
        assert!(!format!("{s:?}").contains("plain-key-value"));
    }

    #[test]
    fn same_as_compares_values() {
        let a = Secrets::from_json(r#"{"MEETINGBAAS_API_KEY":"k1"}"#).unwrap();
        let b = Secrets::from_json(r#"{"MEETINGBAAS_API_KEY":"k1"}"#).unwrap();
        let c = Secrets::from_json(r#"{"MEETINGBAAS_API_KEY":"k1,k2"}"#).unwrap();
        assert!(a.same_as(&b));
        assert!(!a.same_as(&c));
    }
}
