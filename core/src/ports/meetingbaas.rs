//! The MeetingBaaS API port: the calls the control routes make. The adapter (`relay-meetingbaas`)
//! bounds every call in time and never repeats our key in an error.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::bot_id::BotId;

#[derive(Debug, thiserror::Error)]
pub enum MeetingBaasError {
    /// MeetingBaaS answered with an error status (502 to our caller, with its message).
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
}

/// Default bound on one MeetingBaaS call: the api Lambda must answer well within its own timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[async_trait]
pub trait MeetingBaas: Send + Sync + 'static {
    /// Creates a bot from the request body the handler built; returns the new bot's id.
    async fn create_bot(&self, body: &Value) -> Result<String, MeetingBaasError>;

    /// The bot leaves its meeting.
    async fn remove_bot(&self, bot: &BotId) -> Result<(), MeetingBaasError>;

    /// The account's default webhook URL.
    async fn set_account_webhook(&self, url: &str) -> Result<(), MeetingBaasError>;
}
