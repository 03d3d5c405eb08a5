//! The MeetingBaaS API port: the calls the control routes make. The adapter (`relay-meetingbaas`)
//! speaks one API version ([`ApiVersion`], `MEETINGBAAS_API_VERSION`), bounds every call in time
//! and never repeats our key or a callback secret in an error.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::Value;

use crate::domain::bot_id::BotId;

/// The MeetingBaaS API the relay calls (`MEETINGBAAS_API_VERSION`, default `v1`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ApiVersion {
    /// `POST /bots/`, `DELETE /bots/{id}`, `POST /accounts/webhook_url`.
    #[default]
    V1,
    /// `POST /v2/bots`, `POST /v2/bots/{id}/leave|resend-webhook|retry-callback`; the account
    /// webhook is set in the MeetingBaaS dashboard (no API).
    V2,
}

impl ApiVersion {
    /// `v1` or `v2`, exactly; anything else is `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "v1" => Some(Self::V1),
            "v2" => Some(Self::V2),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MeetingBaasError {
    /// MeetingBaaS answered with an error status (502 to our caller, with its message, our key
    /// and any callback secret we sent replaced by `<redacted>`).
    #[error("MeetingBaaS answered {status}: {message}")]
    Upstream { status: u16, message: String },
    /// No answer within the bound (504).
    #[error("MeetingBaaS did not answer within {0:?}")]
    Timeout(Duration),
    #[error("MeetingBaaS could not be reached")]
    Unreachable,
    /// Our side is not configured to call MeetingBaaS (503).
    #[error("MEETINGBAAS_API_KEY is not set")]
    NoKey,
    #[error("MeetingBaaS answered without a bot id")]
    NoBotId,
    /// The call does not exist in the API version this client speaks (501).
    #[error("{call} is not part of the MeetingBaaS {version} API")]
    Unsupported {
        call: &'static str,
        version: ApiVersion,
    },
}

/// Where and how MeetingBaaS delivers a v2 bot's callbacks (`callback_config`, and the body of
/// `retry-callback`): `url` with `method` POST, the `secret` in its `x-mb-secret` header.
#[derive(Clone, Debug)]
pub struct CallbackConfig {
    pub url: String,
    pub secret: SecretString,
}

/// Default bound on one MeetingBaaS call: the api Lambda must answer well within its own timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Every call may fail with `Upstream`, `Timeout`, `Unreachable` or `NoKey`; the others are
/// named on the calls that return them.
#[async_trait]
pub trait MeetingBaas: Send + Sync + 'static {
    /// The API version this client speaks; the handler builds request bodies for it.
    fn version(&self) -> ApiVersion;

    /// Creates a bot from the request body the handler built for [`MeetingBaas::version`]
    /// (v1 `POST /bots/`, v2 `POST /v2/bots`); returns the new bot's id, or `NoBotId`.
    async fn create_bot(&self, body: &Value) -> Result<String, MeetingBaasError>;

    /// The bot leaves its meeting (v1 `DELETE /bots/{id}`, v2 `POST /v2/bots/{id}/leave`).
    async fn remove_bot(&self, bot: &BotId) -> Result<(), MeetingBaasError>;

    /// The account's default webhook URL (v1 `POST /accounts/webhook_url`); `Unsupported` on v2.
    async fn set_account_webhook(&self, url: &str) -> Result<(), MeetingBaasError>;

    /// MeetingBaaS sends the bot's final webhook again (v2 `POST /v2/bots/{id}/resend-webhook`);
    /// `Unsupported` on v1.
    async fn resend_final_webhook(&self, bot: &BotId) -> Result<(), MeetingBaasError>;

    /// MeetingBaaS sends the bot's callback again, to `callback`
    /// (v2 `POST /v2/bots/{id}/retry-callback`); `Unsupported` on v1.
    async fn retry_callback(
        &self,
        bot: &BotId,
        callback: &CallbackConfig,
    ) -> Result<(), MeetingBaasError>;
}
