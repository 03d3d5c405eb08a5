//! The MeetingBaaS API calls the control routes make (v1: create a bot, remove it, set the
//! account webhook URL), with a bounded timeout and errors that say what MeetingBaaS said
//! without ever repeating our key.

use std::time::Duration;

use async_trait::async_trait;
use relay_core::BotId;
use relay_core::ports::meetingbaas::{MeetingBaas, MeetingBaasError};
use serde_json::Value;

pub use relay_core::ports::meetingbaas::DEFAULT_TIMEOUT;

#[derive(Clone)]
pub struct MeetingBaasClient {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for MeetingBaasClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeetingBaasClient")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl MeetingBaasClient {
    /// `api_keys`: the `MEETINGBAAS_API_KEY` setting; its first key authenticates our calls.
    pub fn new(base: &str, api_keys: Option<&str>, timeout: Duration) -> Self {
        let api_key = api_keys
            .and_then(|keys| keys.split(',').map(str::trim).find(|k| !k.is_empty()))
            .map(str::to_owned);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            api_key,
            timeout,
        }
    }

    fn key(&self) -> Result<&str, MeetingBaasError> {
        self.api_key.as_deref().ok_or(MeetingBaasError::NoKey)
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, MeetingBaasError> {
        let resp = req
            .header("x-meeting-baas-api-key", self.key()?)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    MeetingBaasError::Timeout(self.timeout)
                } else {
                    MeetingBaasError::Unreachable
                }
            })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| {
            if e.is_timeout() {
                MeetingBaasError::Timeout(self.timeout)
            } else {
                MeetingBaasError::Unreachable
            }
        })?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let message = ["message", "error", "detail"]
            .iter()
            .find_map(|k| {
                json.get(*k).map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
            })
            .unwrap_or_else(|| text.chars().take(300).collect());
        let mut message: String = message.chars().take(300).collect();
        if let Some(key) = &self.api_key {
            message = message.replace(key.as_str(), "<redacted>");
        }
        Err(MeetingBaasError::Upstream {
            status: status.as_u16(),
            message,
        })
    }
}

#[async_trait]
impl MeetingBaas for MeetingBaasClient {
    /// `POST /bots/`: returns the new bot's id (v1 `{"bot_id"}`, v2 `{"data":{"bot_id"}}`).
    async fn create_bot(&self, body: &Value) -> Result<String, MeetingBaasError> {
        let out = self
            .call(self.http.post(format!("{}/bots/", self.base)).json(body))
            .await?;
        out.get("bot_id")
            .or_else(|| out.get("data").and_then(|d| d.get("bot_id")))
            .and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .ok_or(MeetingBaasError::NoBotId)
    }

    /// `DELETE /bots/{bot_id}`: the bot leaves its meeting.
    async fn remove_bot(&self, bot: &BotId) -> Result<(), MeetingBaasError> {
        self.call(self.http.delete(format!("{}/bots/{bot}", self.base)))
            .await
            .map(|_| ())
    }

    /// `POST /accounts/webhook_url`: the account's default webhook URL.
    async fn set_account_webhook(&self, url: &str) -> Result<(), MeetingBaasError> {
        let body = serde_json::json!({ "webhook_url": url });
        self.call(
            self.http
                .post(format!("{}/accounts/webhook_url", self.base))
                .json(&body),
        )
        .await
        .map(|_| ())
    }
}
