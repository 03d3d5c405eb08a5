//! The relay's secrets on AWS: [`SecretsManagerSource`] reads the one Secrets Manager secret
//! (`RELAY_SECRETS_ARN`, a JSON object with the keys `MEETINGBAAS_API_KEY`,
//! `MEETINGBAAS_WEBHOOK_SECRET`, `MEETINGBAAS_CALLBACK_SECRET`, `RELAY_CLIENT_SECRET`), and
//! [`LambdaSecrets`] is what a Lambda host holds: nothing at init, the client and the first
//! read on the first invocation that needs them, a re-read at most every 5 minutes.

use std::sync::Arc;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use relay_core::ports::secrets::{Secrets, SecretsError, SecretsSource};
use relay_core::secrets::Refreshing;

/// `GetSecretValue` of one secret (its current version, `AWSCURRENT`).
pub struct SecretsManagerSource {
    client: Client,
    secret_id: String,
}

impl SecretsManagerSource {
    /// A client from the host's shared AWS configuration (region, credentials, timeouts,
    /// `AWS_ENDPOINT_URL_SECRETSMANAGER`).
    pub fn new(sdk: &aws_config::SdkConfig, secret_id: impl Into<String>) -> Self {
        Self::with_client(Client::new(sdk), secret_id)
    }

    pub fn with_client(client: Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }
}

#[async_trait::async_trait]
impl SecretsSource for SecretsManagerSource {
    async fn fetch(&self) -> Result<Secrets, SecretsError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            // The SDK's error says what failed (no such secret, access denied, timeout); a
            // GetSecretValue error never carries the secret's value.
            .map_err(|e| SecretsError::Unavailable(DisplayErrorContext(&e).to_string()))?;
        let raw = output
            .secret_string()
            .ok_or(SecretsError::Malformed("no SecretString (a binary secret)"))?;
        Secrets::from_json(raw)
    }
}

/// The secrets of a Lambda host: none without `RELAY_SECRETS_ARN` (the environment's then
/// stand), otherwise the secret, read on first use and at most every 5 minutes after.
pub struct LambdaSecrets {
    arn: Option<String>,
    refresh: std::time::Duration,
    source: tokio::sync::OnceCell<Refreshing<SecretsManagerSource>>,
}

impl LambdaSecrets {
    /// Costs nothing: no client, no read, until [`LambdaSecrets::current`].
    pub fn new(arn: Option<String>) -> Self {
        Self::with_refresh(arn, relay_core::secrets::REFRESH_EVERY)
    }

    /// Read again at most every `refresh` (the configuration's `secrets_refresh`).
    pub fn with_refresh(arn: Option<String>, refresh: std::time::Duration) -> Self {
        Self {
            arn,
            refresh,
            source: tokio::sync::OnceCell::new(),
        }
    }

    /// The current secrets (`None`: no secret configured, use the environment).
    pub async fn current(
        &self,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Option<Arc<Secrets>>, SecretsError> {
        let Some(arn) = &self.arn else {
            return Ok(None);
        };
        let source = self
            .source
            .get_or_init(|| async {
                Refreshing::with_clock(
                    SecretsManagerSource::new(sdk, arn.clone()),
                    self.refresh,
                    Arc::new(relay_core::secrets::SystemClock),
                )
            })
            .await;
        source.current().await.map(Some)
    }
}

/// What a function builds from its configuration, the AWS configuration and its current
/// secrets, the way every function with a secret does it: nothing at init (it only reads the
/// environment), the AWS configuration once on the first invocation, the value built then and
/// again whenever a refresh of the secrets brings other values.
pub struct FromSecrets<T> {
    config: relay_core::config::Config,
    secrets: LambdaSecrets,
    aws: tokio::sync::OnceCell<aws_config::SdkConfig>,
    built: relay_core::secrets::Rebuilt<T>,
}

impl<T> FromSecrets<T> {
    pub fn new(config: relay_core::config::Config) -> Self {
        Self {
            secrets: LambdaSecrets::with_refresh(
                config.secrets_arn.clone(),
                config.secrets_refresh,
            ),
            config,
            aws: tokio::sync::OnceCell::new(),
            built: relay_core::secrets::Rebuilt::default(),
        }
    }

    /// The configuration as the environment gives it (before any secret is applied).
    pub fn config(&self) -> &relay_core::config::Config {
        &self.config
    }

    /// The AWS configuration, loaded by `load` on the first call.
    pub async fn aws<F>(&self, load: impl FnOnce() -> F) -> &aws_config::SdkConfig
    where
        F: std::future::Future<Output = aws_config::SdkConfig>,
    {
        self.aws.get_or_init(load).await
    }

    /// The value for the current secrets: `build` gets the configuration with the secrets
    /// applied (the environment's alone without a secret) and the AWS configuration. A failed
    /// read or build is the caller's error, tried again at the next call.
    pub async fn get<F>(
        &self,
        load: impl FnOnce() -> F,
        build: impl FnOnce(&relay_core::config::Config, &aws_config::SdkConfig) -> Result<T, String>,
    ) -> Result<Arc<T>, String>
    where
        F: std::future::Future<Output = aws_config::SdkConfig>,
    {
        let aws = self.aws(load).await;
        let secrets = self.secrets.current(aws).await.map_err(|e| e.to_string())?;
        self.built
            .get(secrets, |secrets| {
                let config = secrets.map_or_else(|| self.config.clone(), |s| s.apply(&self.config));
                build(&config, aws)
            })
            .await
    }
}
