//! API Lambda: the REST routes as the relay's axum Router, with the event store, the token keys
//! and the MeetingBaaS client built once.

use std::sync::Arc;

use lambda_http::{Error, run};
use relay_core::handlers::api::{ApiHandler, Control};
use relay_dynamodb::{DynamoStore, client_for};
use relay_meetingbaas::MeetingBaasClient;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    let tokens = config.token_keys()?;
    let events = Arc::new(DynamoStore::new(
        client_for(None).await,
        config.events_table.clone(),
        config.retention,
    ));
    let control = Control {
        meetingbaas: Arc::new(MeetingBaasClient::new(
            &config.meetingbaas_api_url,
            &config.auth.api_keys,
            config.meetingbaas_timeout,
            config.meetingbaas_api_version,
        )),
        public_base_url: config.public_base_url.clone(),
        callback_secret: config.auth.callback_secret.clone(),
    };
    let api = Arc::new(ApiHandler::new(tokens, events, control));
    run(relay_http::with_json_fallbacks(relay_http::api_router(
        api,
        &config.cors_allow_origins,
    )))
    .await
}
