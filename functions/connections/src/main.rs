//! Connections Lambda: init reads only the environment; the AWS configuration, the secrets
//! (RELAY_SECRETS_ARN), the stores and the management API client come on the first route event,
//! and the handler (its token keys) is rebuilt when a refresh of the secrets (at most every 5
//! minutes) brings another client secret. Each WebSocket route event is turned into the core's
//! route request and its reply back into the route's answer.

use relay_cloudwatch::flushing;
use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_apigateway::{ApiGatewayPusher, websocket};
use relay_core::handlers::subscription::SubscriptionHandler;
use relay_dynamodb::{DynamoConnections, DynamoStore, client_from, sdk_config};
use relay_secrets::FromSecrets;

struct App {
    handler: FromSecrets<SubscriptionHandler>,
    pusher: tokio::sync::OnceCell<Arc<ApiGatewayPusher>>,
}

impl App {
    /// The route handler, whose token keys hold the client secret.
    async fn handler(&self) -> Result<Arc<SubscriptionHandler>, Error> {
        let endpoint = self.handler.config().websocket_endpoint()?;
        let pusher = self
            .pusher
            .get_or_init(|| async { Arc::new(ApiGatewayPusher::for_endpoint(endpoint).await) })
            .await;
        let handler = self
            .handler
            .get(
                || sdk_config(None),
                |config, aws| {
                    let tokens = config.token_keys().map_err(|e| e.to_string())?;
                    let client = client_from(aws);
                    let events = Arc::new(DynamoStore::new(
                        client.clone(),
                        config.events_table.clone(),
                        config.retention,
                    ));
                    let connections = Arc::new(DynamoConnections::new(
                        client,
                        config.connections_table.clone(),
                    ));
                    Ok(SubscriptionHandler::new(
                        tokens,
                        connections,
                        events,
                        pusher.clone(),
                    ))
                },
            )
            .await?;
        Ok(handler)
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    relay_cloudwatch::install("connections");
    // A missing endpoint is a start-up error, as before; the client itself comes later.
    config.websocket_endpoint()?;
    let app = Arc::new(App {
        handler: FromSecrets::new(config),
        pusher: tokio::sync::OnceCell::new(),
    });
    run(flushing(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let app = app.clone();
            async move {
                let handler = app.handler().await?;
                let reply = handler.handle(websocket::request(event.payload)).await;
                Ok::<ApiGatewayProxyResponse, Error>(websocket::response(reply))
            }
        },
    )))
    .await
}
