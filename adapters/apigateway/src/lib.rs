//! API Gateway adapters. Outbound: the pusher, API Gateway's management API
//! (`postToConnection`), which `relay serve` also serves itself. Inbound: the WebSocket route
//! events of the connections function, turned into the core's [`WsRequest`] ([`websocket`]).

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_apigatewaymanagement::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use relay_core::ports::connections::ConnectionId;
use relay_core::ports::push::{PushError, Pusher};

pub mod management_key;
pub mod websocket;

pub use management_key::ManagementKey;

pub use relay_core::handlers::subscription::WsRequest;

pub struct ApiGatewayPusher {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ApiGatewayPusher {
    pub fn new(client: aws_sdk_apigatewaymanagement::Client) -> Self {
        Self { client }
    }

    /// A management API client for `endpoint` (`WEBSOCKET_ENDPOINT`: the stage's https URL),
    /// with bounded timeouts and the Lambda's credentials (SigV4).
    pub async fn for_endpoint(endpoint: &str) -> Self {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts())
            .load()
            .await;
        let mut builder =
            aws_sdk_apigatewaymanagement::config::Builder::from(&shared).endpoint_url(endpoint);
        if shared.region().is_none() {
            builder = builder.region(aws_sdk_apigatewaymanagement::config::Region::new(
                "us-east-1",
            ));
        }
        Self::new(aws_sdk_apigatewaymanagement::Client::from_conf(
            builder.build(),
        ))
    }

    /// The client of the local host's own management API (`relay serve`, e.g.
    /// `http://127.0.0.1:8000`): every request carries `key`, which the local endpoint checks
    /// where AWS checks a SigV4 signature.
    pub async fn for_local_endpoint(endpoint: &str, key: ManagementKey) -> Self {
        Self::new(aws_sdk_apigatewaymanagement::Client::from_conf(
            local_config(endpoint, timeouts(), key).await,
        ))
    }
}

fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(1))
        .operation_attempt_timeout(std::time::Duration::from_secs(3))
        .operation_timeout(std::time::Duration::from_secs(8))
        .build()
}

/// Puts the management key on every request (every attempt: retries included), after the
/// signing stage, which has nothing to sign here.
#[derive(Debug)]
struct SendManagementKey(ManagementKey);

impl Intercept for SendManagementKey {
    fn name(&self) -> &'static str {
        "SendManagementKey"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        context
            .request_mut()
            .headers_mut()
            .insert(management_key::HEADER, self.0.header_value().clone());
        Ok(())
    }
}

/// The client of the local host's management API (`relay serve`): the same client, operation,
/// retries, timeouts and HTTP as on AWS, minus what only AWS needs. The local host checks the
/// process's management key, not a signature, so the client has no credentials and signs
/// nothing: with no identity for SigV4, the SDK's own no-auth scheme (`allow_no_auth`) is the
/// one chosen, which saves the signature's hashing and HMACs on every post; an interceptor
/// adds the key. Stalled stream protection (a throughput monitor around every request and
/// response body, for slow networks) is off: the bodies are a few hundred bytes over loopback.
async fn local_config(
    endpoint: &str,
    timeouts: aws_config::timeout::TimeoutConfig,
    key: ManagementKey,
) -> aws_sdk_apigatewaymanagement::Config {
    use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
    use aws_sdk_apigatewaymanagement::config::{
        BehaviorVersion, Region, StalledStreamProtectionConfig,
    };
    // `AWS_REGION`/`AWS_DEFAULT_REGION`, else us-east-1: never the instance metadata service,
    // which a laptop does not have.
    let region = aws_config::meta::region::RegionProviderChain::first_try(
        aws_config::environment::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(Region::from_static("us-east-1"))
    .region()
    .await
    .unwrap_or_else(|| Region::from_static("us-east-1"));
    aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .endpoint_url(endpoint)
        .timeout_config(timeouts)
        // What the AWS client gets from aws-config's defaults: standard mode, 3 attempts.
        .retry_config(RetryConfig::standard())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .allow_no_auth()
        .interceptor(SendManagementKey(key))
        .build()
}

/// Gone (410) or a failure worth a retry.
fn push_error<E>(
    e: &aws_sdk_apigatewaymanagement::error::SdkError<
        E,
        aws_sdk_apigatewaymanagement::config::http::HttpResponse,
    >,
    gone: bool,
) -> PushError
where
    E: std::error::Error + 'static,
{
    if gone || e.raw_response().is_some_and(|r| r.status().as_u16() == 410) {
        return PushError::Gone;
    }
    PushError::Failed(aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e).to_string())
}

#[async_trait]
impl Pusher for ApiGatewayPusher {
    async fn close(&self, connection: &ConnectionId) -> Result<(), PushError> {
        match self
            .client
            .delete_connection()
            .connection_id(connection.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let gone = e.as_service_error().is_some_and(|s| s.is_gone_exception());
                Err(push_error(&e, gone))
            }
        }
    }

    async fn send(&self, connection: &ConnectionId, message: &str) -> Result<(), PushError> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(connection.as_str())
            .data(Blob::new(message.as_bytes()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_gone_exception()) {
                    return Err(PushError::Gone);
                }
                if e.raw_response().is_some_and(|r| r.status().as_u16() == 410) {
                    return Err(PushError::Gone);
                }
                Err(PushError::Failed(
                    aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e).to_string(),
                ))
            }
        }
    }
}
