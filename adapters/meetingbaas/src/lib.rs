//! The MeetingBaaS API calls the control routes make, in the API version the client is built
//! for (v1: create a bot, remove it, set the account webhook URL; v2: create a bot, make it leave,
//! resend its final webhook, retry its callback), with a bounded timeout and errors that say what
//! MeetingBaaS said without ever repeating our key or the callback secret we sent.

use std::time::Duration;

use async_trait::async_trait;
use relay_core::BotId;
use relay_core::ports::meetingbaas::{ApiVersion, CallbackConfig, MeetingBaas, MeetingBaasError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

pub use relay_core::ports::meetingbaas::DEFAULT_TIMEOUT;

#[derive(Clone, Debug)]
pub struct MeetingBaasClient {
    http: reqwest::Client,
    base: String,
    api_key: Option<SecretString>,
    timeout: Duration,
    version: ApiVersion,
}

impl MeetingBaasClient {
    /// `api_keys`: the `MEETINGBAAS_API_KEY` setting; its first key authenticates our calls.
    /// `version`: the API the calls go to (`MEETINGBAAS_API_VERSION`).
    pub fn new(
        base: &str,
        api_keys: &[SecretString],
        timeout: Duration,
        version: ApiVersion,
    ) -> Self {
        let api_key = api_keys
            .iter()
            .find(|k| !k.expose_secret().trim().is_empty())
            .cloned();
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
            version,
        }
    }

    fn key(&self) -> Result<&str, MeetingBaasError> {
        self.api_key
            .as_ref()
            .map(|k| k.expose_secret().trim())
            .ok_or(MeetingBaasError::NoKey)
    }

    fn unsupported(&self, call: &'static str) -> MeetingBaasError {
        MeetingBaasError::Unsupported {
            call,
            version: self.version,
        }
    }

    /// Sends `req` with our key; an error status comes back as `Upstream` with MeetingBaaS's
    /// message, our key and every one of `sent_secrets` replaced by `<redacted>`.
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        sent_secrets: &[&str],
    ) -> Result<Value, MeetingBaasError> {
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
            .unwrap_or_else(|| text.chars().take(4096).collect());
        // Redacted before it is cut short, so no prefix of a secret survives the cut.
        let mut message = message;
        for secret in self
            .api_key
            .as_ref()
            .map(|k| k.expose_secret())
            .into_iter()
            .chain(sent_secrets.iter().copied())
        {
            if !secret.is_empty() {
                message = message.replace(secret, "<redacted>");
            }
        }
        let message: String = message.chars().take(300).collect();
        Err(MeetingBaasError::Upstream {
            status: status.as_u16(),
            message,
        })
    }
}

/// The new bot's id in a create-bot answer (v1 `{"bot_id"}`, v2 `{"data":{"bot_id"}}`).
fn bot_id_of(out: &Value) -> Option<String> {
    out.get("bot_id")
        .or_else(|| out.get("data").and_then(|d| d.get("bot_id")))
        .and_then(|v| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        })
}

#[async_trait]
impl MeetingBaas for MeetingBaasClient {
    fn version(&self) -> ApiVersion {
        self.version
    }

    /// v1 `POST /bots/`, v2 `POST /v2/bots`: returns the new bot's id.
    async fn create_bot(&self, body: &Value) -> Result<String, MeetingBaasError> {
        let path = match self.version {
            ApiVersion::V1 => "/bots/",
            ApiVersion::V2 => "/v2/bots",
        };
        // A v2 body carries our callback secret; MeetingBaaS may echo the body in an error.
        let secret = body
            .pointer("/callback_config/secret")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let out = self
            .call(
                self.http.post(format!("{}{path}", self.base)).json(body),
                &[secret],
            )
            .await?;
        bot_id_of(&out).ok_or(MeetingBaasError::NoBotId)
    }

    /// v1 `DELETE /bots/{bot_id}`, v2 `POST /v2/bots/{bot_id}/leave`: the bot leaves its meeting.
    async fn remove_bot(&self, bot: &BotId) -> Result<(), MeetingBaasError> {
        let req = match self.version {
            ApiVersion::V1 => self.http.delete(format!("{}/bots/{bot}", self.base)),
            ApiVersion::V2 => self.http.post(format!("{}/v2/bots/{bot}/leave", self.base)),
        };
        self.call(req, &[]).await.map(|_| ())
    }

    /// v1 `POST /accounts/webhook_url`: the account's default webhook URL.
    async fn set_account_webhook(&self, url: &str) -> Result<(), MeetingBaasError> {
        if self.version != ApiVersion::V1 {
            return Err(self.unsupported("setting the account webhook URL"));
        }
        let body = serde_json::json!({ "webhook_url": url });
        self.call(
            self.http
                .post(format!("{}/accounts/webhook_url", self.base))
                .json(&body),
            &[],
        )
        .await
        .map(|_| ())
    }

    /// v2 `POST /v2/bots/{bot_id}/resend-webhook`.
    async fn resend_final_webhook(&self, bot: &BotId) -> Result<(), MeetingBaasError> {
        if self.version != ApiVersion::V2 {
            return Err(self.unsupported("resend-webhook"));
        }
        self.call(
            self.http
                .post(format!("{}/v2/bots/{bot}/resend-webhook", self.base)),
            &[],
        )
        .await
        .map(|_| ())
    }

    /// v2 `POST /v2/bots/{bot_id}/retry-callback` with `{url, method: "POST", secret}`.
    async fn retry_callback(
        &self,
        bot: &BotId,
        callback: &CallbackConfig,
    ) -> Result<(), MeetingBaasError> {
        if self.version != ApiVersion::V2 {
            return Err(self.unsupported("retry-callback"));
        }
        let body = serde_json::json!({
            "url": callback.url,
            "method": "POST",
            "secret": callback.secret.expose_secret(),
        });
        self.call(
            self.http
                .post(format!("{}/v2/bots/{bot}/retry-callback", self.base))
                .json(&body),
            &[callback.secret.expose_secret()],
        )
        .await
        .map(|_| ())
    }
}
