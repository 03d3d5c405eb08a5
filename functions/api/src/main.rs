//! API Lambda: the REST routes as the relay's axum Router. Init reads only the environment; the
//! AWS configuration, the secrets (RELAY_SECRETS_ARN), the event store, the token keys and the
//! MeetingBaaS client come on the first request, and what depends on a secret is rebuilt when a
//! refresh (at most every 5 minutes) brings other values.

use relay_cloudwatch::flushing;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use lambda_http::{Error, Request, run, service_fn};
use relay_core::handlers::api::{ApiHandler, Control};
use relay_dynamodb::{DynamoStore, client_from, sdk_config};
use relay_meetingbaas::MeetingBaasClient;
use relay_secrets::FromSecrets;
use tower::ServiceExt;

/// The REST routes, whose token keys and MeetingBaaS client hold the secrets.
async fn router(app: &FromSecrets<Router>) -> Result<Arc<Router>, String> {
    app.get(
        || sdk_config(None),
        |config, aws| {
            let tokens = config.token_keys().map_err(|e| e.to_string())?;
            let events = Arc::new(DynamoStore::new(
                client_from(aws),
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
            Ok(relay_http::with_json_fallbacks(relay_http::api_router(
                api,
                &config.cors_allow_origins,
            )))
        },
    )
    .await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    relay_cloudwatch::install("api");
    let app = Arc::new(FromSecrets::new(config));
    run(flushing(service_fn(move |request: Request| {
        let app = app.clone();
        async move {
            match router(&app).await {
                Ok(router) => Ok::<_, Error>(Router::clone(&router).oneshot(request).await?),
                Err(error) => {
                    tracing::error!(%error, "api not ready");
                    Ok(relay_http::error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the relay is not ready",
                    ))
                }
            }
        }
    })))
    .await
}
