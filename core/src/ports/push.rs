//! The pusher port: deliver one message to one WebSocket connection. On AWS and locally alike
//! the adapter is API Gateway's management API (`postToConnection`, crate `relay-apigateway`),
//! because `relay serve` serves that API itself.

use async_trait::async_trait;

use crate::ports::connections::ConnectionId;

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

    /// Closes the connection (API Gateway's DeleteConnection). A connection already gone is
    /// `Err(Gone)`, which callers treat as done.
    async fn close(&self, connection: &ConnectionId) -> Result<(), PushError>;
}
