//! Fan-out Lambda: the events table's stream (inserts of event items, filtered by the event
//! source mapping) decoded into domain events and sent to every subscribed browser, with
//! partial batch failures.

use std::sync::Arc;

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_apigateway::ApiGatewayPusher;
use relay_core::handlers::fanout::FanoutHandler;
use relay_dynamodb::{DynamoConnections, client_for};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    let endpoint = config.websocket_endpoint()?;
    let concurrency = config.fanout_concurrency;
    let connections = Arc::new(DynamoConnections::new(
        client_for(None).await,
        config.connections_table.clone(),
    ));
    let pusher = Arc::new(ApiGatewayPusher::for_endpoint(endpoint).await);
    let handler = Arc::new(FanoutHandler::new(connections, pusher, concurrency));
    run(service_fn(move |event: LambdaEvent<Event>| {
        let handler = handler.clone();
        async move {
            Ok::<DynamoDbEventResponse, Error>(
                relay_dynamodb::stream::fan_out(&handler, event.payload).await,
            )
        }
    }))
    .await
}
