//! `relay serve`: one process that plays API Gateway in front of the very handlers the Lambda
//! functions run, on the embedded SQLite store by default or on any DynamoDB-API endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{Method, StatusCode, Uri};
use relay_apigateway::ApiGatewayPusher;
use relay_apigateway::management_key::{ManagementKey, ManagementKeyError};
use relay_core::config::Config;
use relay_core::domain::auth::Authenticator;
use relay_core::handlers::api::{ApiHandler, Control};
use relay_core::handlers::fanout::FanoutHandler;
use relay_core::handlers::reconcile::Reconciler;
use relay_core::handlers::subscription::SubscriptionHandler;
use relay_core::handlers::webhook::WebhookHandler;
use relay_core::ports::connections::ConnectionStore;
use relay_core::ports::store::EventStore;
use relay_dynamodb::{
    DynamoConnections, DynamoStore, ensure_connections_table, ensure_events_table,
};
use relay_http::RequestId;
use relay_sqlite::{SqliteConnections, SqliteStore};
use serde_json::json;

use crate::gateway::{self, Faults, Gateway, Limits};
use crate::stream::{DEAD_LETTERS, FileDeadLetters, MappingConfig, run_mapping};
use crate::{CliResult, DataDir, secrets, web};

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
    /// Close a WebSocket after this many seconds without a client frame (API Gateway: 600).
    #[arg(long, default_value_t = 600)]
    ws_idle_timeout: u64,
    /// Close every WebSocket after this many seconds (API Gateway: 7200).
    #[arg(long, default_value_t = 7200)]
    ws_max_lifetime: u64,
    /// Close a WebSocket whose client is this many bytes behind (queued, not yet written).
    #[arg(long, default_value_t = 1024 * 1024)]
    ws_max_queue_bytes: usize,
    /// Close a WebSocket whose client is this many seconds behind (its oldest unwritten
    /// message); also the bound of one write to a socket.
    #[arg(long, default_value_t = 30)]
    ws_max_lag: u64,
    /// Close an HTTP connection that has not sent a whole request head after this many
    /// seconds; also the idle keep-alive timeout (the same timer waits for the next request).
    #[arg(long, default_value_t = 30)]
    http_header_timeout: u64,
    /// Answer 408 to a request (body included) not done after this many seconds.
    #[arg(long, default_value_t = 60)]
    http_request_timeout: u64,
    /// On SIGTERM/Ctrl-C: WebSockets are closed with 1001 and requests in flight get this many
    /// seconds to finish; then the process exits whatever its clients do.
    #[arg(long, default_value_t = 8)]
    shutdown_timeout: u64,
    /// Posts in flight at once per fan-out batch.
    #[arg(long, env = "FANOUT_CONCURRENCY", default_value_t = relay_core::handlers::fanout::DEFAULT_CONCURRENCY)]
    fanout_concurrency: usize,
    /// Attempts per stream record before it goes to the dead letters [default: 5; with
    /// --lambda-endpoint, 1 + the mapping's MaximumRetryAttempts].
    #[arg(long)]
    stream_max_attempts: Option<u32>,
    /// The Lambda Invoke API of the function bootstraps (e.g. http://127.0.0.1:9000): the HTTP
    /// routes, WebSocket routes, stream batches and scheduled passes invoke the functions
    /// there instead of running the handlers in this process. Needs --dynamodb-endpoint and
    /// --lambda-deployment.
    #[arg(long, requires_all = ["lambda_deployment", "dynamodb_endpoint"])]
    lambda_endpoint: Option<String>,
    /// The deployment file (scripts/lambda_loop.py writes it from template.yaml): which route
    /// invokes which function, the stream mapping's filter and batch size.
    #[arg(long, requires = "lambda_endpoint")]
    lambda_deployment: Option<PathBuf>,
    /// Testing: the first N posts to @connections fail with 500.
    #[arg(long, default_value_t = 0, hide = true)]
    inject_push_failures: u64,
    /// Testing: every post of a message about this bot fails with 500.
    #[arg(long, hide = true)]
    poison_bot: Option<String>,
}

/// The embedded event store's file in the data directory.
pub const EVENTS_FILE: &str = "events.sqlite3";

/// `--lambda-endpoint`: the functions and what the template deploys.
struct LambdaMode {
    invoker: crate::lambda::Invoker,
    deployment: crate::lambda::Deployment,
}

pub async fn run(args: ServeArgs) -> CliResult {
    relay_core::telemetry::init();
    let metrics = crate::metrics::install()?;
    let mut config = Config::from_env()?;
    if let Some(t) = args.events_table {
        config.events_table = t;
    }
    if let Some(t) = args.connections_table {
        config.connections_table = t;
    }
    let lambda = match (&args.lambda_endpoint, &args.lambda_deployment) {
        (Some(endpoint), Some(file)) => Some(LambdaMode {
            invoker: crate::lambda::Invoker::new(endpoint)?,
            deployment: crate::lambda::Deployment::load(file)?,
        }),
        _ => None,
    };
    let dev_key = fill_development_secrets(&mut config, &args.data)?;
    let development = dev_key.is_some();
    let auth = Authenticator::new(&config.auth)?;

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let (events, connections, source_name): (
        Arc<dyn EventStore>,
        Arc<dyn ConnectionStore>,
        String,
    );
    let stream: StreamChoice;
    match &args.dynamodb_endpoint {
        Some(endpoint) => {
            let sdk = relay_dynamodb::sdk_config(Some(endpoint)).await;
            let client = aws_sdk_dynamodb::Client::new(&sdk);
            ensure_events_table(&client, &config.events_table).await?;
            ensure_connections_table(&client, &config.connections_table).await?;
            events = Arc::new(DynamoStore::new(
                client.clone(),
                config.events_table.clone(),
                config.retention,
            ));
            connections = Arc::new(DynamoConnections::new(
                client,
                config.connections_table.clone(),
            ));
            stream = StreamChoice::Dynamo(Box::new(sdk), config.events_table.clone());
            source_name = format!("dynamodb:{}", config.events_table);
        }
        None => {
            // Sockets do not outlive the process, so neither do the local connection records.
            let path = args.data.data_dir.join(EVENTS_FILE);
            let store = Arc::new(SqliteStore::open(&path, config.retention)?);
            let conns_path = args.data.data_dir.join("connections.sqlite3");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", conns_path.display()));
            }
            let conns = Arc::new(SqliteConnections::open(&conns_path)?);
            spawn_purge(store.clone(), conns.clone());
            events = store.clone();
            connections = conns;
            stream = StreamChoice::Sqlite(store);
            source_name = format!("sqlite:{}", path.display());
        }
    }

    let tokens = config.token_keys()?;
    // The fan-out and the WebSocket routes push through this host's own @connections API with
    // the real management API client, exactly as they do on AWS; where AWS checks the client's
    // SigV4 signature, this host checks the process's management key, which only its own
    // client has (docs/security.md).
    let management_key = management_key()?;
    let pusher = Arc::new(
        ApiGatewayPusher::for_local_endpoint(&format!("http://{addr}"), management_key.clone())
            .await,
    );
    let subscriptions = Arc::new(SubscriptionHandler::new(
        tokens.clone(),
        connections.clone(),
        events.clone(),
        pusher.clone(),
    ));
    let (routes, signers) = match &lambda {
        None => (gateway::RouteTarget::InProcess(subscriptions), None),
        Some(l) => (
            gateway::RouteTarget::Invoke {
                invoker: l.invoker.clone(),
                function: l.deployment.websocket.function.clone(),
            },
            Some(function_signer()?),
        ),
    };
    let faults = Faults::new(args.inject_push_failures, args.poison_bot.clone());
    let limits = Limits {
        idle: Duration::from_secs(args.ws_idle_timeout),
        lifetime: Duration::from_secs(args.ws_max_lifetime),
        max_queue_bytes: args.ws_max_queue_bytes.max(1),
        max_lag: Duration::from_secs(args.ws_max_lag.max(1)),
    };
    let gw = Gateway::new(routes, signers, limits, faults, management_key);
    let gw_for_shutdown = gw.clone();
    let fanout = Arc::new(FanoutHandler::new(
        connections.clone(),
        pusher,
        args.fanout_concurrency,
    ));
    let dead = Arc::new(FileDeadLetters::new(args.data.data_dir.join(DEAD_LETTERS)));
    let mut mapping = MappingConfig {
        max_attempts: args.stream_max_attempts.unwrap_or(5).max(1),
        ..Default::default()
    };
    match &lambda {
        None => spawn_stream(stream, fanout, dead, mapping).await?,
        Some(l) => {
            mapping.batch_size = l.deployment.stream.batch_size.max(1);
            mapping.max_attempts = args
                .stream_max_attempts
                .unwrap_or(l.deployment.stream.maximum_retry_attempts.saturating_add(1))
                .max(1);
            spawn_lambda_stream(stream, l, dead, mapping).await?;
        }
    }

    let webhook = Arc::new(WebhookHandler::new(
        auth,
        events.clone(),
        config.max_body_bytes,
    ));
    let dev = Arc::new(web::DevState {
        dev: dev_key.map(|api_key| web::DevMode {
            api_key,
            tokens: tokens.clone(),
        }),
        webhook: webhook.clone(),
    });
    if config.public_base_url.is_none() {
        config.public_base_url = Some(format!("http://{addr}"));
    }
    let meetingbaas = crate::reconcile::meetingbaas(&config);
    // Only with a MeetingBaaS key the operator set: development mode's generated key is for
    // webhooks, MeetingBaaS would refuse it.
    if let Some(l) = &lambda {
        if let Some(schedule) = &l.deployment.schedule {
            crate::reconcile::spawn_invoke_loop(
                l.invoker.clone(),
                schedule.function.clone(),
                config.reconcile_interval,
            );
        }
    } else if !development && !config.auth.api_keys.is_empty() {
        let reconciler = Arc::new(Reconciler::new(
            events.clone(),
            meetingbaas.clone(),
            config.reconcile,
        ));
        crate::reconcile::spawn_loop(reconciler, config.reconcile_interval);
    } else {
        tracing::info!("reconciliation off: no MEETINGBAAS_API_KEY set");
    }
    let control = Control {
        meetingbaas,
        public_base_url: config.public_base_url.clone(),
        callback_secret: config.auth.callback_secret.clone(),
    };
    let api = Arc::new(ApiHandler::new(tokens, events, control));
    let dev_routes = Router::new()
        .route("/api/dev/info", get(web::info))
        .route("/api/dev/token", post(web::token))
        .route("/api/dev/test-event", post(web::test_event))
        .with_state(dev)
        .layer(axum::middleware::from_fn_with_state(
            addr,
            web::same_machine_only,
        ));
    // Plain routes rather than a nested router: a nested route rewrites every request's URI to
    // strip its prefix, an allocation and a parse on each of a fan-out's posts.
    let management = post(gateway::post_to_connection)
        .get(gateway::get_connection)
        .delete(gateway::delete_connection)
        .with_state(gw.clone());
    let functions = match &lambda {
        // The HTTP API of the template: its routes invoke the functions; the development
        // routes, which run handlers in this process, are not there.
        Some(l) => crate::lambda::http::router(&l.deployment, l.invoker.clone())?
            // The functions' client posts under the stage's URL.
            .route(
                &format!("/{}/@connections/{{id}}", l.deployment.websocket.stage),
                management.clone(),
            )
            .route(
                &format!("/{}/%40connections/{{id}}", l.deployment.websocket.stage),
                management.clone(),
            ),
        None => relay_http::webhook_router(webhook)
            .merge(relay_http::api_router(api, &config.cors_allow_origins))
            .merge(dev_routes),
    };
    let app = functions
        .route("/ws", get(gateway::ws_upgrade).with_state(gw))
        .merge(crate::metrics::routes(metrics, addr))
        // The SDK sends `/%40connections/{id}`; curl users type `/@connections/{id}`.
        .route("/@connections/{id}", management.clone())
        .route("/%40connections/{id}", management)
        .fallback(not_found)
        .method_not_allowed_fallback(relay_http::method_not_allowed)
        // API Gateway gives every request an id; so does this host, for the log lines.
        .layer(axum::middleware::map_request(with_request_id));

    tracing::info!(addr = %addr, store = source_name, "listening");
    let http_limits = crate::http_server::HttpLimits {
        header: Duration::from_secs(args.http_header_timeout.max(1)),
        request: Duration::from_secs(args.http_request_timeout.max(1)),
        drain: Duration::from_secs(args.shutdown_timeout),
    };
    let sockets = gw_for_shutdown.clone();
    let shutdown = async move {
        shutdown_signal().await;
        let open = sockets.close_all("server shutting down");
        tracing::info!(
            websockets = open,
            "shutting down: closing WebSockets with 1001"
        );
    };
    let drain = http_limits.drain;
    crate::http_server::serve(listener, app, http_limits, shutdown).await;
    // Each socket gets a bounded grace for its close frame (gateway::CLOSE_GRACE, twice).
    let deadline = tokio::time::Instant::now() + drain.min(Duration::from_secs(5));
    while gw_for_shutdown.open_sockets() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The credential the functions sign their management API requests with: the one they are
/// given (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_REGION), as this process has it.
fn function_signer()
-> Result<crate::lambda::sigv4::SigV4Verifier, Box<dyn std::error::Error + Send + Sync>> {
    let var = |name: &str| {
        std::env::var(name).map_err(|_| {
            format!("--lambda-endpoint needs {name}: the credential the functions sign with")
        })
    };
    Ok(crate::lambda::sigv4::SigV4Verifier::new(
        var("AWS_ACCESS_KEY_ID")?,
        var("AWS_SECRET_ACCESS_KEY")?.into(),
        std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
    ))
}

/// The testing hook: the end-to-end tests of the management API itself give the key (64 hex
/// digits) so that they can call it as the relay's own client does. Read by `relay serve`
/// only, never by a Lambda function (whose client signs with SigV4).
pub const TESTING_MANAGEMENT_KEY: &str = "RELAY_TESTING_MANAGEMENT_KEY";

/// This process's management key: a new random one, unless the tests give one. Never printed.
fn management_key() -> Result<ManagementKey, ManagementKeyError> {
    match std::env::var(TESTING_MANAGEMENT_KEY) {
        Ok(hex) => {
            tracing::warn!(
                "{TESTING_MANAGEMENT_KEY} is set: the @connections API takes that key (tests only)"
            );
            ManagementKey::from_hex(&hex)
        }
        Err(_) => ManagementKey::generate(),
    }
}

/// With no webhook authentication or client secret configured, use (and print) the data dir's
/// development ones, so `relay serve` starts with no settings at all.
/// Returns the development API key when it is the one in use (development mode).
fn fill_development_secrets(
    config: &mut Config,
    data: &DataDir,
) -> Result<Option<String>, Box<dyn std::error::Error + Send + Sync>> {
    let no_auth = config.auth.is_empty();
    if !no_auth && config.client_secret.is_some() {
        return Ok(None);
    }
    let (dev, _) = secrets::load_or_create(&data.data_dir)?;
    let file = secrets::path(&data.data_dir);
    if no_auth {
        config.auth.api_keys = vec![dev.api_key.clone().into()];
        eprintln!(
            "relay: no MEETINGBAAS_API_KEY / _WEBHOOK_SECRET / _CALLBACK_SECRET set: development mode.\n\
             relay:   webhook key (header x-meeting-baas-api-key): {}\n\
             relay:   kept in {}; `relay send-test-event` uses it.",
            dev.api_key,
            file.display()
        );
    }
    if config.client_secret.is_none() {
        config.client_secret = Some(dev.client_secret.into());
        eprintln!(
            "relay: no RELAY_CLIENT_SECRET set: using the development client secret in {} (`relay token --bot ID` mints tokens with it).",
            file.display()
        );
    }
    Ok(no_auth.then_some(dev.api_key))
}

fn spawn_purge(store: Arc<SqliteStore>, connections: Arc<SqliteConnections>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = chrono::Utc::now().timestamp();
            match store.purge_expired(now).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "expired events purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purge of expired events failed"),
            }
            if let Err(e) = connections.purge_expired(now).await {
                tracing::warn!(error = %e, "purge of expired connections failed");
            }
        }
    });
}

enum StreamChoice {
    Sqlite(Arc<SqliteStore>),
    Dynamo(Box<aws_config::SdkConfig>, String),
}

/// Plays the Lambda event source mapping: the stream's records, in batches, to the fan-out.
async fn spawn_stream(
    choice: StreamChoice,
    fanout: Arc<FanoutHandler>,
    dead: Arc<FileDeadLetters>,
    mapping: MappingConfig,
) -> CliResult {
    match choice {
        StreamChoice::Sqlite(store) => {
            let source =
                crate::stream::sqlite::SqliteFeed::latest(store, Duration::from_secs(1)).await?;
            tokio::spawn(async move { run_mapping(source, fanout.as_ref(), &dead, mapping).await });
        }
        StreamChoice::Dynamo(sdk, table) => {
            let source = crate::stream::dynamodb::DynamoStreams::latest(
                &sdk,
                &table,
                Duration::from_millis(100),
            )
            .await?;
            tokio::spawn(async move { run_mapping(source, fanout.as_ref(), &dead, mapping).await });
        }
    }
    Ok(())
}

/// Plays the fan-out's event source mapping: the records its filter lets through, in batches
/// of its size, to the fan-out function.
async fn spawn_lambda_stream(
    choice: StreamChoice,
    lambda: &LambdaMode,
    dead: Arc<FileDeadLetters>,
    mapping: MappingConfig,
) -> CliResult {
    let StreamChoice::Dynamo(sdk, table) = choice else {
        return Err(
            "--lambda-endpoint needs --dynamodb-endpoint: the functions use DynamoDB".into(),
        );
    };
    let source =
        crate::stream::dynamodb::DynamoStreams::latest(&sdk, &table, Duration::from_millis(100))
            .await?
            .for_lambda(lambda.deployment.stream.filters.clone());
    let fanout = crate::lambda::stream::InvokeFanout {
        invoker: lambda.invoker.clone(),
        function: lambda.deployment.stream.function.clone(),
    };
    tokio::spawn(async move { run_mapping(source, &fanout, &dead, mapping).await });
    Ok(())
}

async fn with_request_id(mut req: axum::extract::Request) -> axum::extract::Request {
    let id: u128 = rand::random();
    req.extensions_mut().insert(RequestId(format!("{id:032x}")));
    req
}

/// The demo page and client module, else a JSON 404.
async fn not_found(method: Method, uri: Uri) -> Response {
    if method == Method::GET
        && let Some(resp) = web::static_file(uri.path())
    {
        return resp;
    }
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
