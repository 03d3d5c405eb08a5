//! Webhook Lambda: config and the event store built once; every request goes through the
//! relay's HTTP surface to the core's webhook handler.

use std::sync::Arc;

use lambda_http::{Error, run};
use relay_core::domain::auth::Authenticator;
use relay_core::handlers::webhook::WebhookHandler;
use relay_dynamodb::{DynamoStore, client_for};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    // No configured scheme is a start-up error: the function must never accept anonymous posts.
    let auth = Authenticator::new(&config.auth)?;
    let store = Arc::new(DynamoStore::new(
        client_for(None).await,
        config.events_table.clone(),
        config.retention,
    ));
    let handler = Arc::new(WebhookHandler::new(auth, store, config.max_body_bytes));
    run(relay_http::with_json_fallbacks(relay_http::webhook_router(
        handler,
    )))
    .await
}
