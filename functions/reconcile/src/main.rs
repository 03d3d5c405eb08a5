//! Reconcile Lambda: on the EventBridge schedule, one reconciliation pass (sessions left open
//! because a delivery never came, checked against MeetingBaaS). Init reads only the
//! environment; the AWS configuration, the secrets (RELAY_SECRETS_ARN: the MeetingBaaS key),
//! the store and the MeetingBaaS client come on the first invocation, rebuilt when a refresh
//! brings another key. The pass's counts are the invocation's result; a failure to read the
//! open-session index fails the invocation (the errors alarm sees it).

use relay_cloudwatch::flushing;
use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_core::handlers::reconcile::{PassReport, Reconciler};
use relay_dynamodb::{DynamoStore, client_from, sdk_config};
use relay_meetingbaas::MeetingBaasClient;
use relay_secrets::FromSecrets;
use serde_json::Value;

/// The pass, whose MeetingBaaS client holds the key from the secrets.
async fn reconciler(app: &FromSecrets<Reconciler>) -> Result<Arc<Reconciler>, String> {
    app.get(
        || sdk_config(None),
        |config, aws| {
            let store = Arc::new(DynamoStore::new(
                client_from(aws),
                config.events_table.clone(),
                config.retention,
            ));
            let meetingbaas = Arc::new(MeetingBaasClient::new(
                &config.meetingbaas_api_url,
                &config.auth.api_keys,
                config.meetingbaas_timeout,
                config.meetingbaas_api_version,
            ));
            Ok(Reconciler::new(store, meetingbaas, config.reconcile))
        },
    )
    .await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    relay_cloudwatch::install("reconcile");
    let app = Arc::new(FromSecrets::new(config));
    run(flushing(service_fn(
        move |_scheduled: LambdaEvent<Value>| {
            let app = app.clone();
            async move {
                let reconciler = reconciler(&app).await?;
                let report: PassReport = reconciler.run_pass(chrono::Utc::now()).await?;
                Ok::<PassReport, Error>(report)
            }
        },
    )))
    .await
}
