//! Reconcile Lambda: on the EventBridge schedule, one reconciliation pass (sessions left open
//! because a delivery never came, checked against MeetingBaaS), with the store and the
//! MeetingBaaS client built once. The pass's counts are the invocation's result; a failure to
//! read the open-session index fails the invocation (the errors alarm sees it).

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_core::handlers::reconcile::{PassReport, Reconciler};
use relay_dynamodb::{DynamoStore, client_for};
use relay_meetingbaas::MeetingBaasClient;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    let store = Arc::new(DynamoStore::new(
        client_for(None).await,
        config.events_table.clone(),
        config.retention,
    ));
    let meetingbaas = Arc::new(MeetingBaasClient::new(
        &config.meetingbaas_api_url,
        &config.auth.api_keys,
        config.meetingbaas_timeout,
        config.meetingbaas_api_version,
    ));
    let reconciler = Arc::new(Reconciler::new(store, meetingbaas, config.reconcile));
    run(service_fn(move |_scheduled: LambdaEvent<Value>| {
        let reconciler = reconciler.clone();
        async move {
            let report: PassReport = reconciler.run_pass(chrono::Utc::now()).await?;
            Ok::<PassReport, Error>(report)
        }
    }))
    .await
}
