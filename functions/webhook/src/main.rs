//! Webhook Lambda: config and adapters built once, each request handed to the shared handler.

use std::sync::Arc;

use lambda_http::{Error, Request, run, service_fn};
use shared::auth::Authenticator;
use shared::config::Config;
use shared::store::dynamodb::{self, DynamoStore};
use shared::webhook::WebhookHandler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    // No configured scheme is a start-up error: the function must never accept anonymous posts.
    let auth = Authenticator::new(&config.auth)?;
    let client = dynamodb::client_for(None).await;
    let store = Arc::new(DynamoStore::new(
        client,
        config.events_table.clone(),
        config.retention,
    ));
    let handler = Arc::new(WebhookHandler::new(auth, store, config.max_body_bytes));
    run(service_fn(move |req: Request| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handler.handle(req).await) }
    }))
    .await
}
