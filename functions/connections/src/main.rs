//! Connections Lambda: stores, adapters and the management API client built once; each
//! WebSocket route event handed to the shared handler.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::config::Config;
use shared::connection::dynamodb::DynamoConnections;
use shared::push::ApiGatewayPusher;
use shared::store::dynamodb::{DynamoStore, client_for};
use shared::subscription::SubscriptionHandler;
use shared::token::TokenKeys;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let tokens = TokenKeys::new(
        config
            .client_secret
            .as_deref()
            .ok_or("RELAY_CLIENT_SECRET is not set")?,
    )?;
    let endpoint = config
        .websocket_endpoint
        .as_deref()
        .ok_or("WEBSOCKET_ENDPOINT is not set")?;
    let client = client_for(None).await;
    let events = Arc::new(DynamoStore::new(
        client.clone(),
        config.events_table.clone(),
        config.retention,
    ));
    let connections = Arc::new(DynamoConnections::new(
        client,
        config.connections_table.clone(),
    ));
    let pusher = Arc::new(ApiGatewayPusher::for_endpoint(endpoint, false).await);
    let handler = Arc::new(SubscriptionHandler::new(
        tokens,
        connections,
        events,
        pusher,
    ));
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let handler = handler.clone();
            async move { Ok::<ApiGatewayProxyResponse, Error>(handler.handle(event.payload).await) }
        },
    ))
    .await
}
