//! API Lambda: the REST routes, with the event store and token keys built once.

use std::sync::Arc;

use lambda_http::{Error, Request, run, service_fn};
use shared::api::ApiHandler;
use shared::config::Config;
use shared::store::dynamodb::{DynamoStore, client_for};
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
    let events = Arc::new(DynamoStore::new(
        client_for(None).await,
        config.events_table.clone(),
        config.retention,
    ));
    let handler = Arc::new(ApiHandler::new(
        tokens,
        events,
        config.cors_allow_origins.clone(),
        config.control(),
    ));
    run(service_fn(move |req: Request| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handler.handle(req).await) }
    }))
    .await
}
