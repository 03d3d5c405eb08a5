//! Fan-out Lambda: the events table's stream (inserts of event items, filtered by the event
//! source mapping) decoded into domain events and sent to every subscribed browser, with
//! partial batch failures. It uses no secret. Init reads only the environment; the AWS
//! configuration and the clients come with the first batch.

use relay_cloudwatch::flushing;
use std::sync::Arc;

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_apigateway::ApiGatewayPusher;
use relay_core::config::Config;
use relay_core::handlers::fanout::FanoutHandler;
use relay_dynamodb::{DynamoConnections, client_from, sdk_config};

async fn build(config: &Config) -> Result<FanoutHandler, Error> {
    let endpoint = config.websocket_endpoint()?;
    let connections = Arc::new(DynamoConnections::new(
        client_from(&sdk_config(None).await),
        config.connections_table.clone(),
    ));
    let pusher = Arc::new(ApiGatewayPusher::for_endpoint(endpoint).await);
    Ok(FanoutHandler::new(
        connections,
        pusher,
        config.fanout_concurrency,
    ))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    relay_cloudwatch::install("fanout");
    config.websocket_endpoint()?;
    let config = Arc::new(config);
    let handler = Arc::new(tokio::sync::OnceCell::<FanoutHandler>::new());
    run(flushing(service_fn(move |event: LambdaEvent<Event>| {
        let (config, handler) = (config.clone(), handler.clone());
        async move {
            let handler = handler.get_or_try_init(|| build(&config)).await?;
            Ok::<DynamoDbEventResponse, Error>(
                relay_dynamodb::stream::fan_out(handler, event.payload).await,
            )
        }
    })))
    .await
}
