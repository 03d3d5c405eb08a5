//! `relay serve`: one process that plays API Gateway in front of the very handlers the Lambda
//! functions run, on the embedded SQLite store by default or on any DynamoDB-API endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::json;
use shared::auth::Authenticator;
use shared::config::Config;
use shared::store::EventStore;
use shared::store::dynamodb::{self, DynamoStore};
use shared::store::sqlite::SqliteStore;
use shared::webhook::WebhookHandler;

use crate::client::CliResult;
use crate::{DataDir, apigw, secrets};

/// API Gateway HTTP APIs refuse bodies over 10 MB before any Lambda sees them.
const GATEWAY_BODY_LIMIT: usize = 10 * 1024 * 1024;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8000", env = "RELAY_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataDir,
    /// Use a DynamoDB-API endpoint (e.g. http://127.0.0.1:5000) instead of the embedded store.
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    #[arg(long)]
    events_table: Option<String>,
    #[arg(long)]
    connections_table: Option<String>,
}

struct AppState {
    webhook: WebhookHandler,
}

pub async fn run(args: ServeArgs) -> CliResult {
    shared::telemetry::init();
    let mut config = Config::from_env()?;
    if let Some(t) = args.events_table {
        config.events_table = t;
    }
    if let Some(t) = args.connections_table {
        config.connections_table = t;
    }
    fill_development_secrets(&mut config, &args.data)?;
    let auth = Authenticator::new(&config.auth)?;

    let (store, store_name): (Arc<dyn EventStore>, String) = match &args.dynamodb_endpoint {
        Some(endpoint) => {
            let client = dynamodb::client_for(Some(endpoint)).await;
            dynamodb::ensure_events_table(&client, &config.events_table).await?;
            let store = DynamoStore::new(client, config.events_table.clone(), config.retention);
            (Arc::new(store), format!("dynamodb:{}", config.events_table))
        }
        None => {
            let path = args.data.data_dir.join("events.sqlite3");
            let store = Arc::new(SqliteStore::open(&path, config.retention)?);
            spawn_purge(store.clone());
            (store, format!("sqlite:{}", path.display()))
        }
    };

    let state = Arc::new(AppState {
        webhook: WebhookHandler::new(auth, store, config.max_body_bytes),
    });
    let app = Router::new()
        .route("/api/meeting-bot/webhook", post(webhook))
        .fallback(not_found)
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, store = store_name, "listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    tracing::info!("stopped");
    Ok(())
}

/// With no webhook authentication or client secret configured, use (and print) the data dir's
/// development ones, so `relay serve` starts with no settings at all.
fn fill_development_secrets(config: &mut Config, data: &DataDir) -> CliResult {
    let auth = &config.auth;
    let no_auth =
        auth.api_keys.is_none() && auth.webhook_secret.is_none() && auth.callback_secret.is_none();
    if !no_auth && config.client_secret.is_some() {
        return Ok(());
    }
    let (dev, _) = secrets::load_or_create(&data.data_dir)?;
    let file = secrets::path(&data.data_dir);
    if no_auth {
        config.auth.api_keys = Some(dev.api_key.clone());
        eprintln!(
            "relay: no MEETINGBAAS_API_KEY / _WEBHOOK_SECRET / _CALLBACK_SECRET set: development mode.\n\
             relay:   webhook key (header x-meeting-baas-api-key): {}\n\
             relay:   kept in {}; `relay send-test-event` uses it.",
            dev.api_key,
            file.display()
        );
    }
    if config.client_secret.is_none() {
        config.client_secret = Some(dev.client_secret);
        eprintln!(
            "relay: no RELAY_CLIENT_SECRET set: using the development client secret in {} (`relay token --bot ID` mints tokens with it).",
            file.display()
        );
    }
    Ok(())
}

fn spawn_purge(store: Arc<SqliteStore>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match store.purge_expired(chrono::Utc::now().timestamp()).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "expired events purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purge of expired events failed"),
            }
        }
    });
}

async fn webhook(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, GATEWAY_BODY_LIMIT).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(json!({"error": "payload too large"})),
        )
            .into_response();
    };
    let req = apigw::http_event(
        "POST /api/meeting-bot/webhook",
        method,
        &uri,
        headers,
        bytes,
        Some(peer),
        &[],
    );
    apigw::into_response(state.webhook.handle(req).await)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": "not found"})),
    )
        .into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}
