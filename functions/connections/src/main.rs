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
use relay_core::config::Config;
use relay_core::handlers::subscription::SubscriptionHandler;
use relay_core::secrets::Rebuilt;
use relay_dynamodb::{DynamoConnections, DynamoStore, SdkConfig, client_from, sdk_config};
use relay_secrets::LambdaSecrets;

struct App {
    config: Config,
    secrets: LambdaSecrets,
    aws: tokio::sync::OnceCell<SdkConfig>,
    pusher: tokio::sync::OnceCell<Arc<ApiGatewayPusher>>,
    handler: Rebuilt<SubscriptionHandler>,
}

impl App {
    async fn handler(&self) -> Result<Arc<SubscriptionHandler>, Error> {
        let endpoint = self.config.websocket_endpoint()?;
        let aws = self.aws.get_or_init(|| sdk_config(None)).await;
        let pusher = self
            .pusher
            .get_or_init(|| async { Arc::new(ApiGatewayPusher::for_endpoint(endpoint).await) })
            .await;
        let secrets = self.secrets.current(aws).await?;
        self.handler
            .get(secrets, |secrets| {
                let config = secrets.map_or_else(|| self.config.clone(), |s| s.apply(&self.config));
                let tokens = config.token_keys()?;
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
                Ok::<_, Error>(SubscriptionHandler::new(
                    tokens,
                    connections,
                    events,
                    pusher.clone(),
                ))
            })
            .await
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    relay_cloudwatch::install("connections");
    // A missing endpoint is a start-up error, as before; the client itself comes later.
    config.websocket_endpoint()?;
    let app = Arc::new(App {
        secrets: LambdaSecrets::with_refresh(config.secrets_arn.clone(), config.secrets_refresh),
        config,
        aws: tokio::sync::OnceCell::new(),
        pusher: tokio::sync::OnceCell::new(),
        handler: Rebuilt::default(),
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
