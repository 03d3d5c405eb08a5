//! Reconciliation on this host: `relay serve` runs the same pass as the scheduled Lambda, on
//! the same interval (`RECONCILE_INTERVAL_SECONDS`); `relay reconcile [--once]` runs it
//! against whichever store is configured (the embedded one of `--data-dir`, or DynamoDB).

use std::sync::Arc;
use std::time::Duration;

use relay_core::config::Config;
use relay_core::handlers::reconcile::Reconciler;
use relay_core::ports::meetingbaas::MeetingBaas;
use relay_core::ports::store::EventStore;
use relay_dynamodb::{DynamoStore, ensure_events_table};
use relay_meetingbaas::MeetingBaasClient;
use relay_sqlite::SqliteStore;

use crate::{CliResult, DataDir};

#[derive(clap::Args)]
pub struct ReconcileArgs {
    /// One pass, then exit (its counts printed as JSON); without it, a pass every
    /// RECONCILE_INTERVAL_SECONDS until stopped.
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    data: DataDir,
    /// Use a DynamoDB-API endpoint instead of the embedded store.
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    #[arg(long)]
    events_table: Option<String>,
}

/// The MeetingBaaS client both the control routes and the pass use.
pub fn meetingbaas(config: &Config) -> Arc<dyn MeetingBaas> {
    Arc::new(MeetingBaasClient::new(
        &config.meetingbaas_api_url,
        &config.auth.api_keys,
        config.meetingbaas_timeout,
        config.meetingbaas_api_version,
    ))
}

/// A pass every `interval`, the first one `interval` after start (a restart does not ask
/// MeetingBaaS about everything at once). A pass that fails is logged; the next one runs.
pub fn spawn_loop(reconciler: Arc<Reconciler>, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = reconciler.run_pass(chrono::Utc::now()).await {
                tracing::warn!(error = %e, "reconcile pass failed");
            }
        }
    });
}

/// Plays the schedule (`--lambda-endpoint`): the scheduled function is invoked every
/// `interval` with the scheduler's event, as EventBridge Scheduler does.
pub fn spawn_invoke_loop(invoker: crate::lambda::Invoker, function: String, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A schedule without an `Input` hands the function an empty object.
            match invoker.invoke(&function, &serde_json::json!({})).await {
                Ok(report) => tracing::info!(
                    function,
                    report = %String::from_utf8_lossy(&report),
                    "scheduled invocation done"
                ),
                Err(e) => tracing::warn!(function, error = %e, "scheduled invocation failed"),
            }
        }
    });
}

pub async fn run(args: ReconcileArgs) -> CliResult {
    relay_core::telemetry::init_stderr();
    let mut config = Config::from_env()?;
    if let Some(t) = args.events_table {
        config.events_table = t;
    }
    if config.auth.api_keys.is_empty() {
        return Err("MEETINGBAAS_API_KEY is not set: reconciliation asks MeetingBaaS".into());
    }
    let store: Arc<dyn EventStore> = match &args.dynamodb_endpoint {
        Some(endpoint) => {
            let client = relay_dynamodb::client_for(Some(endpoint)).await;
            ensure_events_table(&client, &config.events_table).await?;
            Arc::new(DynamoStore::new(
                client,
                config.events_table.clone(),
                config.retention,
            ))
        }
        None => Arc::new(SqliteStore::open(
            &args.data.data_dir.join(crate::serve::EVENTS_FILE),
            config.retention,
        )?),
    };
    let reconciler = Reconciler::new(store, meetingbaas(&config), config.reconcile);
    loop {
        let report = reconciler.run_pass(chrono::Utc::now()).await?;
        println!("{}", serde_json::to_string(&report)?);
        if args.once {
            return Ok(());
        }
        tokio::time::sleep(config.reconcile_interval).await;
    }
}
