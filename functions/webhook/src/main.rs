//! Webhook Lambda: init reads only the environment and sets up logging; the AWS configuration,
//! the secrets (RELAY_SECRETS_ARN) and the DynamoDB client come on the first delivery, and the
//! authenticator is rebuilt when a refresh of the secrets (at most every 5 minutes) brings other
//! keys. Every request goes through the relay's HTTP surface to the core's webhook handler.

use relay_cloudwatch::flushing;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use lambda_http::{Error, Request, run, service_fn};
use relay_core::domain::auth::Authenticator;
use relay_core::handlers::webhook::WebhookHandler;
use relay_core::telemetry::metrics::{self, WebhookOutcome};
use relay_dynamodb::{DynamoStore, client_from, sdk_config};
use relay_secrets::FromSecrets;
use tower::ServiceExt;

/// The router over the webhook handler, whose authenticator holds the secrets.
async fn router(app: &FromSecrets<Router>) -> Result<Arc<Router>, String> {
    app.get(
        || sdk_config(None),
        |config, aws| {
            // No configured scheme is an error: the function never accepts anonymous posts.
            let auth = Authenticator::new(&config.auth).map_err(|e| e.to_string())?;
            let store = Arc::new(DynamoStore::new(
                client_from(aws),
                config.events_table.clone(),
                config.retention,
            ));
            let handler = Arc::new(WebhookHandler::new(auth, store, config.max_body_bytes));
            Ok(relay_http::with_json_fallbacks(relay_http::webhook_router(
                handler,
            )))
        },
    )
    .await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    relay_cloudwatch::install("webhook");
    let app = Arc::new(FromSecrets::new(config));
    run(flushing(service_fn(move |request: Request| {
        let app = app.clone();
        async move {
            match router(&app).await {
                Ok(router) => Ok::<_, Error>(Router::clone(&router).oneshot(request).await?),
                Err(error) => {
                    // 503: MeetingBaaS retries the delivery.
                    metrics::webhook(WebhookOutcome::Unavailable);
                    tracing::error!(%error, "webhook not ready");
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
