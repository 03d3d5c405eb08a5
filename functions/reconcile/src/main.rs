//! Reconcile Lambda: on the EventBridge schedule, one reconciliation pass (sessions left open
//! because a delivery never came, checked against MeetingBaaS). Init reads only the
//! environment; the AWS configuration, the secrets (RELAY_SECRETS_ARN: the MeetingBaaS key),
//! the store and the MeetingBaaS client come on the first invocation, rebuilt when a refresh
//! brings another key. The pass's counts are the invocation's result; a failure to read the
//! open-session index fails the invocation (the errors alarm sees it).

use relay_cloudwatch::flushing;
use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_core::config::Config;
use relay_core::handlers::reconcile::{PassReport, Reconciler};
use relay_core::secrets::Rebuilt;
use relay_dynamodb::{DynamoStore, SdkConfig, client_from, sdk_config};
use relay_meetingbaas::MeetingBaasClient;
use relay_secrets::LambdaSecrets;
use serde_json::Value;

struct App {
    config: Config,
    secrets: LambdaSecrets,
    aws: tokio::sync::OnceCell<SdkConfig>,
    reconciler: Rebuilt<Reconciler>,
}

impl App {
    async fn reconciler(&self) -> Result<Arc<Reconciler>, String> {
        let aws = self.aws.get_or_init(|| sdk_config(None)).await;
        let secrets = self.secrets.current(aws).await.map_err(|e| e.to_string())?;
        self.reconciler
            .get(secrets, |secrets| {
                let config = secrets.map_or_else(|| self.config.clone(), |s| s.apply(&self.config));
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
                Ok::<_, String>(Reconciler::new(store, meetingbaas, config.reconcile))
            })
            .await
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = relay_core::telemetry::start()?;
    relay_cloudwatch::install("reconcile");
    let app = Arc::new(App {
        secrets: LambdaSecrets::with_refresh(config.secrets_arn.clone(), config.secrets_refresh),
        config,
        aws: tokio::sync::OnceCell::new(),
        reconciler: Rebuilt::default(),
    });
    run(flushing(service_fn(
        move |_scheduled: LambdaEvent<Value>| {
            let app = app.clone();
            async move {
                let reconciler = app.reconciler().await?;
                let report: PassReport = reconciler.run_pass(chrono::Utc::now()).await?;
                Ok::<PassReport, Error>(report)
            }
        },
    )))
    .await
}
