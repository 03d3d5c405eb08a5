//! The pusher port: deliver one message to one WebSocket connection. On AWS and locally alike
//! the adapter is API Gateway's management API (`postToConnection`), because `relay serve`
//! serves that API itself.

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::primitives::Blob;

use crate::connection::ConnectionId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// 410: the connection is gone; forget it.
    #[error("connection gone")]
    Gone,
    /// Anything else (throttling, timeouts, 5xx): worth a retry.
    #[error("push failed: {0}")]
    Failed(String),
}

#[async_trait]
pub trait Pusher: Send + Sync + 'static {
    async fn send(&self, connection: &ConnectionId, message: &str) -> Result<(), PushError>;
}

pub struct ApiGatewayPusher {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ApiGatewayPusher {
    pub fn new(client: aws_sdk_apigatewaymanagement::Client) -> Self {
        Self { client }
    }

    /// A management API client for `endpoint` (`WEBSOCKET_ENDPOINT`: the stage's https URL on
    /// AWS, `http://127.0.0.1:8000` locally), with bounded timeouts. `local`: the local host,
    /// which needs no real credentials.
    pub async fn for_endpoint(endpoint: &str, local: bool) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(1))
            .operation_attempt_timeout(std::time::Duration::from_secs(3))
            .operation_timeout(std::time::Duration::from_secs(8))
            .build();
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts);
        if local {
            loader = loader.region(crate::store::dynamodb::local_region());
        }
        let shared = loader.load().await;
        let mut builder =
            aws_sdk_apigatewaymanagement::config::Builder::from(&shared).endpoint_url(endpoint);
        if shared.region().is_none() {
            builder = builder.region(aws_sdk_apigatewaymanagement::config::Region::new(
                "us-east-1",
            ));
        }
        if local {
            // The local host does not check signatures (it answers loopback peers only).
            builder = builder.credentials_provider(
                aws_sdk_apigatewaymanagement::config::Credentials::new(
                    "local",
                    "local",
                    None,
                    None,
                    "relay-local",
                ),
            );
        }
        Self::new(aws_sdk_apigatewaymanagement::Client::from_conf(
            builder.build(),
        ))
    }
}

#[async_trait]
impl Pusher for ApiGatewayPusher {
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
