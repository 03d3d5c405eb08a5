//! Connections Lambda: stores and the management API client built once; each WebSocket route
//! event turned into the core's route request and its reply back into the route's answer.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_apigateway::{ApiGatewayPusher, websocket};
use relay_core::handlers::subscription::SubscriptionHandler;
use relay_dynamodb::{DynamoConnections, DynamoStore, client_for};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    let tokens = config.token_keys()?;
    let endpoint = config.websocket_endpoint()?;
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
    let pusher = Arc::new(ApiGatewayPusher::for_endpoint(endpoint).await);
    let handler = Arc::new(SubscriptionHandler::new(
        tokens,
        connections,
        events,
        pusher,
    ));
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let handler = handler.clone();
            async move {
                let reply = handler.handle(websocket::request(event.payload)).await;
                Ok::<ApiGatewayProxyResponse, Error>(websocket::response(reply))
            }
        },
    ))
    .await
}
