//! Settings from the environment, read once at start-up by each host (the README's table).

use secrecy::{ExposeSecret, SecretString};

use crate::domain::auth::AuthSettings;
use crate::domain::token::{TokenError, TokenKeys};
use crate::handlers::fanout::DEFAULT_CONCURRENCY;
use crate::handlers::reconcile::ReconcileSettings;
use crate::ports::meetingbaas::ApiVersion;
use crate::ports::store::Retention;

/// Default cap on a webhook body; Lambda's synchronous payload limit is 6 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} must be {expected}")]
    Invalid {
        name: &'static str,
        expected: &'static str,
    },
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("RELAY_CLIENT_SECRET cannot sign tokens: {0}")]
    ClientSecret(TokenError),
}

/// Every setting, parsed once. Secrets are `SecretString`s: `Debug` prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Config {
    pub auth: AuthSettings,
    pub client_secret: Option<SecretString>,
    pub meetingbaas_api_url: String,
    /// The MeetingBaaS API the control routes call (`MEETINGBAAS_API_VERSION`, default v1).
    pub meetingbaas_api_version: ApiVersion,
    pub public_base_url: Option<String>,
    pub events_table: String,
    pub connections_table: String,
    websocket_endpoint: Option<String>,
    pub retention: Retention,
    pub max_body_bytes: usize,
    pub cors_allow_origins: Vec<String>,
    /// Bound on one MeetingBaaS API call (`MEETINGBAAS_TIMEOUT_MS`, default 10 s).
    pub meetingbaas_timeout: std::time::Duration,
    /// Posts in flight at once per fan-out batch (`FANOUT_CONCURRENCY`).
    pub fanout_concurrency: usize,
    /// Which sessions a reconciliation pass asks about (`RECONCILE_AFTER_SECONDS`).
    pub reconcile: ReconcileSettings,
    /// How often `relay serve` runs a pass (`RECONCILE_INTERVAL_SECONDS`; on AWS the
    /// template's schedule).
    pub reconcile_interval: std::time::Duration,
    /// The AWS Secrets Manager secret holding the four secrets (`RELAY_SECRETS_ARN`, set on
    /// AWS): when set, the Lambda hosts take the secrets from it, not from the environment.
    pub secrets_arn: Option<String>,
    /// How long the secrets read from `secrets_arn` are kept before they are read again:
    /// [`crate::secrets::REFRESH_EVERY`], unless `RELAY_TESTING_SECRETS_REFRESH_SECONDS` (tests
    /// only: the rotation test of the functions in the loop) says otherwise.
    pub secrets_refresh: std::time::Duration,
}

impl Config {
    /// Every environment variable the relay reads (what a test clears so the caller's
    /// environment cannot leak in). The standard AWS variables are aws-config's.
    pub const VARS: [&'static str; 23] = [
        "MEETINGBAAS_API_KEY",
        "MEETINGBAAS_WEBHOOK_SECRET",
        "MEETINGBAAS_CALLBACK_SECRET",
        "MEETINGBAAS_API_URL",
        "MEETINGBAAS_API_VERSION",
        "MEETINGBAAS_TIMEOUT_MS",
        "RELAY_CLIENT_SECRET",
        "PUBLIC_BASE_URL",
        "EVENTS_TABLE",
        "CONNECTIONS_TABLE",
        "WEBSOCKET_ENDPOINT",
        "RETENTION_DAYS",
        "MAX_BODY_BYTES",
        "CORS_ALLOW_ORIGINS",
        "FANOUT_CONCURRENCY",
        "RECONCILE_AFTER_SECONDS",
        "RECONCILE_INTERVAL_SECONDS",
        "RELAY_LISTEN",
        "RELAY_DATA_DIR",
        "RELAY_SECRETS_ARN",
        // `relay serve` only, for the tests of its local `@connections` API (docs/security.md).
        "RELAY_TESTING_MANAGEMENT_KEY",
        // The functions in the loop only, for their key-rotation test (tests/rotation.rs).
        "RELAY_TESTING_SECRETS_REFRESH_SECONDS",
        "RUST_LOG",
    ];

    /// The management API base URL the fan-out and the WebSocket routes post through.
    pub fn websocket_endpoint(&self) -> Result<&str, ConfigError> {
        self.websocket_endpoint
            .as_deref()
            .ok_or(ConfigError::Missing("WEBSOCKET_ENDPOINT"))
    }

    /// The keys client tokens are signed and checked with.
    pub fn token_keys(&self) -> Result<TokenKeys, ConfigError> {
        let secret = self
            .client_secret
            .as_ref()
            .ok_or(ConfigError::Missing("RELAY_CLIENT_SECRET"))?;
        TokenKeys::new(secret.expose_secret()).map_err(ConfigError::ClientSecret)
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same as [`Config::from_env`] over any lookup, so tests need not touch the process env.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let retention_days = match get("RETENTION_DAYS") {
            None => Retention::default().days,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=36_500).contains(d))
                .ok_or(ConfigError::Invalid {
                    name: "RETENTION_DAYS",
                    expected: "a whole number of days from 1 to 36500",
                })?,
        };
        let max_body_bytes = match get("MAX_BODY_BYTES") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1024)
                    .ok_or(ConfigError::Invalid {
                        name: "MAX_BODY_BYTES",
                        expected: "a number of bytes, at least 1024",
                    })?
            }
        };
        let meetingbaas_timeout = match get("MEETINGBAAS_TIMEOUT_MS") {
            None => crate::ports::meetingbaas::DEFAULT_TIMEOUT,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|ms| (100..=60_000).contains(ms))
                .map(std::time::Duration::from_millis)
                .ok_or(ConfigError::Invalid {
                    name: "MEETINGBAAS_TIMEOUT_MS",
                    expected: "milliseconds from 100 to 60000",
                })?,
        };
        let meetingbaas_api_version = match get("MEETINGBAAS_API_VERSION") {
            None => ApiVersion::default(),
            Some(v) => ApiVersion::parse(&v).ok_or(ConfigError::Invalid {
                name: "MEETINGBAAS_API_VERSION",
                expected: "v1 or v2",
            })?,
        };
        let fanout_concurrency = match get("FANOUT_CONCURRENCY") {
            None => DEFAULT_CONCURRENCY,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or(ConfigError::Invalid {
                    name: "FANOUT_CONCURRENCY",
                    expected: "a number of posts from 1 to 1024",
                })?,
        };
        let seconds = |name: &'static str, default: std::time::Duration| match get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=30 * 86_400).contains(n))
                .map(std::time::Duration::from_secs)
                .ok_or(ConfigError::Invalid {
                    name,
                    expected: "a number of seconds from 1 to 2592000",
                }),
        };
        let reconcile = ReconcileSettings {
            after: seconds(
                "RECONCILE_AFTER_SECONDS",
                crate::handlers::reconcile::DEFAULT_AFTER,
            )?,
            ..ReconcileSettings::default()
        };
        let reconcile_interval = seconds(
            "RECONCILE_INTERVAL_SECONDS",
            crate::handlers::reconcile::DEFAULT_INTERVAL,
        )?;
        let secrets_refresh = seconds(
            "RELAY_TESTING_SECRETS_REFRESH_SECONDS",
            crate::secrets::REFRESH_EVERY,
        )?;
        Ok(Self {
            reconcile,
            reconcile_interval,
            meetingbaas_timeout,
            fanout_concurrency,
            meetingbaas_api_version,
            auth: AuthSettings {
                api_keys: get("MEETINGBAAS_API_KEY")
                    .map(|v| AuthSettings::key_list(&v))
                    .unwrap_or_default(),
                webhook_secret: get("MEETINGBAAS_WEBHOOK_SECRET").map(SecretString::from),
                callback_secret: get("MEETINGBAAS_CALLBACK_SECRET").map(SecretString::from),
            },
            client_secret: get("RELAY_CLIENT_SECRET").map(SecretString::from),
            meetingbaas_api_url: get("MEETINGBAAS_API_URL")
                .unwrap_or_else(|| "https://api.meetingbaas.com".to_owned()),
            public_base_url: get("PUBLIC_BASE_URL"),
            events_table: get("EVENTS_TABLE").unwrap_or_else(|| "meeting-relay-events".to_owned()),
            connections_table: get("CONNECTIONS_TABLE")
                .unwrap_or_else(|| "meeting-relay-connections".to_owned()),
            websocket_endpoint: get("WEBSOCKET_ENDPOINT"),
            secrets_arn: get("RELAY_SECRETS_ARN"),
            secrets_refresh,
            retention: Retention {
                days: retention_days,
            },
            max_body_bytes,
            cors_allow_origins: get("CORS_ALLOW_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = cfg(&[]).unwrap();
        assert_eq!(
            (c.retention.days, c.max_body_bytes),
            (30, DEFAULT_MAX_BODY_BYTES)
        );
        assert_eq!(c.meetingbaas_api_url, "https://api.meetingbaas.com");
        let c = cfg(&[
            ("RETENTION_DAYS", "7"),
            ("MAX_BODY_BYTES", "2048"),
            ("CORS_ALLOW_ORIGINS", "https://a, https://b"),
        ])
        .unwrap();
        assert_eq!((c.retention.days, c.max_body_bytes), (7, 2048));
        assert_eq!(c.cors_allow_origins, vec!["https://a", "https://b"]);
        assert!(cfg(&[("RETENTION_DAYS", "0")]).is_err());
        assert!(cfg(&[("MAX_BODY_BYTES", "lots")]).is_err());
        assert_eq!(c.meetingbaas_api_version, ApiVersion::V1, "default");
        // Blank values count as unset.
        assert_eq!(
            cfg(&[("MEETINGBAAS_API_VERSION", " ")])
                .unwrap()
                .meetingbaas_api_version,
            ApiVersion::V1
        );
        assert!(
            cfg(&[("MEETINGBAAS_API_KEY", "  ")])
                .unwrap()
                .auth
                .api_keys
                .is_empty()
        );
    }

    #[test]
    fn secrets_never_show_and_the_typed_accessors_say_what_is_missing() {
        let c = cfg(&[
            ("MEETINGBAAS_API_KEY", "key-one, key-two"),
            (
                "MEETINGBAAS_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            ("MEETINGBAAS_CALLBACK_SECRET", "callback-secret"),
            ("RELAY_CLIENT_SECRET", "client-secret"),
            ("FANOUT_CONCURRENCY", "8"),
        ])
        .unwrap();
        assert_eq!(c.auth.api_keys.len(), 2);
        assert_eq!(c.fanout_concurrency, 8);
        let shown = format!("{c:?}");
        for secret in [
            "key-one",
            "key-two",
            "MfKQ9r8G",
            "callback-secret",
            "client-secret",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(c.token_keys().is_ok());
        assert_eq!(
            c.websocket_endpoint().err(),
            Some(ConfigError::Missing("WEBSOCKET_ENDPOINT"))
        );
        let bare = cfg(&[]).unwrap();
        assert!(matches!(
            bare.token_keys(),
            Err(ConfigError::Missing("RELAY_CLIENT_SECRET"))
        ));
        assert_eq!(bare.fanout_concurrency, DEFAULT_CONCURRENCY);
        assert!(cfg(&[("FANOUT_CONCURRENCY", "0")]).is_err());
    }

    /// Every variable `from_lookup` asks for is listed in `VARS`.
    #[test]
    fn vars_lists_every_setting_read() {
        let asked = std::cell::RefCell::new(Vec::<String>::new());
        let _ = Config::from_lookup(|name| {
            asked.borrow_mut().push(name.to_owned());
            None
        });
        for name in asked.into_inner() {
            assert!(Config::VARS.contains(&name.as_str()), "{name} not in VARS");
        }
    }

    #[test]
    fn api_version_is_v1_or_v2() {
        for (raw, want) in [("v1", ApiVersion::V1), ("v2", ApiVersion::V2)] {
            assert_eq!(
                cfg(&[("MEETINGBAAS_API_VERSION", raw)])
                    .unwrap()
                    .meetingbaas_api_version,
                want
            );
        }
        for bad in ["v3", "V2", "2", "latest"] {
            let err = cfg(&[("MEETINGBAAS_API_VERSION", bad)]).unwrap_err();
            assert_eq!(err.to_string(), "MEETINGBAAS_API_VERSION must be v1 or v2");
        }
    }
}
