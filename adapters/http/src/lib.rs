//! The relay's HTTP surface as one axum [`Router`]: the webhook route and the REST routes. The
//! webhook and api Lambdas hand their router to `lambda_http::run`; `relay serve` mounts the
//! same routers beside its WebSocket endpoint. Every error the surface writes, the framework's
//! own 404/405/413 included, is a JSON object `{"error": "..."}`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use lambda_http::RequestExt;
use relay_core::handlers::api::{ApiError, ApiHandler, PageQuery};
use relay_core::handlers::webhook::{Reply, WebhookHandler};
use relay_core::telemetry::metrics::{self, WebhookOutcome};
use serde::Deserialize;
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub const WEBHOOK_PATH: &str = "/api/meeting-bot/webhook";

/// The OpenAPI 3.1 description of the webhook route and the REST routes, served at
/// `GET /openapi.json`. Kept in the repository beside this crate; `tests/openapi.rs` holds it to
/// the Router (every route and method, the error statuses of the code), and `scripts/check-openapi` holds a real
/// `relay serve`'s answers to it with schemathesis.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// API Gateway refuses bodies over 10 MB before any function sees them; the webhook handler
/// applies the smaller `MAX_BODY_BYTES` itself, with its own clear answer.
pub const GATEWAY_BODY_LIMIT: usize = 10 * 1024 * 1024;

/// The request id for log lines: the Lambda request id on AWS, API Gateway's request id when
/// only that is known, or the one the local host put in the request's extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(ctx) = parts.extensions.lambda_context_ref()
            && !ctx.request_id.is_empty()
        {
            return Ok(RequestId(ctx.request_id.clone()));
        }
        let from_gateway = match parts.extensions.request_context_ref() {
            Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
            Some(lambda_http::request::RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
            _ => None,
        };
        Ok(from_gateway
            .map(RequestId)
            .or_else(|| parts.extensions.get::<RequestId>().cloned())
            .unwrap_or_default())
    }
}

/// A JSON error answer.
pub fn error(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(json!({ "error": reason }))).into_response()
}

fn json_text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `POST /api/meeting-bot/webhook`.
pub fn webhook_router(handler: Arc<WebhookHandler>) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(webhook))
        .layer(DefaultBodyLimit::max(GATEWAY_BODY_LIMIT))
        .with_state(handler)
}

async fn webhook(
    State(handler): State<Arc<WebhookHandler>>,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        // Answers the handler never sees, counted as it counts its own.
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            metrics::webhook(WebhookOutcome::TooLarge);
            return error(StatusCode::PAYLOAD_TOO_LARGE, "payload too large");
        }
        Err(_) => {
            metrics::webhook(WebhookOutcome::BadRequest);
            return error(StatusCode::BAD_REQUEST, "the body could not be read");
        }
    };
    let Reply { status, body } = handler.handle(&headers, &body, &request_id).await;
    json_text(status, body)
}

/// The REST routes, with CORS for `cors_origins` (`*`: any origin).
pub fn api_router(api: Arc<ApiHandler>, cors_origins: &[String]) -> Router {
    // OPTIONS is a method of every route (answered by the CORS layer around it), so a host's
    // own 405 fallback never sees a preflight.
    Router::new()
        .route("/api/meeting-bot/start", post(start).options(no_content))
        .route(
            "/api/meeting-bot/configure-webhook",
            post(configure_webhook).options(no_content),
        )
        .route(
            "/api/meeting-bot/sessions",
            get(sessions).options(no_content),
        )
        .route(
            "/api/meeting-bot/{bot}/stop",
            post(stop).options(no_content),
        )
        .route(
            "/api/meeting-bot/{bot}/resend",
            post(resend).options(no_content),
        )
        .route(
            "/api/meeting-bot/{bot}/retry-callback",
            post(retry_callback).options(no_content),
        )
        .route(
            "/api/meeting-bot/{bot}/status",
            get(status).options(no_content),
        )
        .route(
            "/api/meeting-bot/{bot}/artifacts",
            get(artifacts).options(no_content),
        )
        .route(
            "/api/meeting-bot/{bot}/events",
            get(events).options(no_content),
        )
        .route(
            "/api/meeting-bot/{bot}/events/{id}",
            get(event).options(no_content),
        )
        .route("/openapi.json", get(openapi).options(no_content))
        .route("/asyncapi.json", get(asyncapi).options(no_content))
        .with_state(api)
        .layer(axum::middleware::from_fn(log_api))
        .layer(cors(cors_origins))
        .layer(axum::middleware::map_response(preflight_no_content))
}

/// JSON answers for what no route matches (404) and for a method a route does not have (405),
/// for the Lambdas; `relay serve` sets its own 404 (it also serves the demo page).
pub fn with_json_fallbacks(router: Router) -> Router {
    router
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .method_not_allowed_fallback(method_not_allowed)
}

/// The 405 answer, for hosts that set their own fallbacks.
pub async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::mirror_request()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([http::header::AUTHORIZATION, http::header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

/// `GET /openapi.json`: no token needed.
async fn openapi() -> Response {
    static_json(OPENAPI_JSON)
}

/// `GET /asyncapi.json`: the WebSocket messages (AsyncAPI 3), no token needed.
async fn asyncapi() -> Response {
    static_json(relay_core::domain::message::ASYNCAPI_JSON)
}

/// A JSON document embedded in the binary, served without a copy.
pub fn static_json(body: &'static str) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn no_content() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// A preflight answered by the CORS layer says 204 No Content, as it always has here; an origin
/// that is not allowed learns nothing of the CORS policy (tower-http lists the allowed methods
/// and headers on every preflight, whatever the origin).
async fn preflight_no_content(method: Method, mut resp: Response) -> Response {
    if method == Method::OPTIONS && resp.status() == StatusCode::OK {
        *resp.status_mut() = StatusCode::NO_CONTENT;
    }
    let headers = resp.headers_mut();
    if !headers.contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        for name in [
            http::header::ACCESS_CONTROL_ALLOW_METHODS,
            http::header::ACCESS_CONTROL_ALLOW_HEADERS,
            http::header::ACCESS_CONTROL_MAX_AGE,
        ] {
            headers.remove(name);
        }
    }
    resp
}

/// One log line per REST request.
async fn log_api(RequestId(request_id): RequestId, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    tracing::info!(
        request_id,
        path,
        status = resp.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "api"
    );
    resp
}

/// A REST answer: the operation's JSON, or its error as JSON with its status.
struct Answer(Result<String, ApiError>);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self.0 {
            Ok(text) => json_text(StatusCode::OK, text),
            Err(e) => {
                if matches!(e, ApiError::Store(_) | ApiError::Upstream(_)) {
                    tracing::warn!(error = %e, "api upstream error");
                }
                (e.status(), axum::Json(e.body())).into_response()
            }
        }
    }
}

fn bearer(
    api: &ApiHandler,
    headers: &HeaderMap,
) -> Result<relay_core::domain::token::Claims, ApiError> {
    api.authorize(
        headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

fn path_error(e: &PathRejection) -> ApiError {
    ApiError::BadRequest(format!("invalid path: {}", e.body_text()))
}

async fn start(State(api): State<Arc<ApiHandler>>, headers: HeaderMap, body: Bytes) -> Answer {
    Answer(match bearer(&api, &headers) {
        Ok(claims) => api.start(&claims, &body).await,
        Err(e) => Err(e),
    })
}

async fn configure_webhook(
    State(api): State<Arc<ApiHandler>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    Answer(match bearer(&api, &headers) {
        Ok(claims) => api.configure_webhook(&claims, &body).await,
        Err(e) => Err(e),
    })
}

/// The routes on one bot (`{bot_id}`) that take nothing but the token: each calls the
/// handler's method of the same name.
macro_rules! bot_routes {
    ($($name:ident),* $(,)?) => {$(
        async fn $name(
            State(api): State<Arc<ApiHandler>>,
            path: Result<Path<String>, PathRejection>,
            headers: HeaderMap,
        ) -> Answer {
            Answer(
                async {
                    let claims = bearer(&api, &headers)?;
                    let Path(bot) = path.map_err(|e| path_error(&e))?;
                    api.$name(&claims, &bot).await
                }
                .await,
            )
        }
    )*};
}

bot_routes!(stop, resend, retry_callback, artifacts, status);

/// A route's query, values percent-decoded, or the 400 when it does not parse.
fn query_of<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|_| ApiError::BadRequest("the query string could not be parsed".into()))
}

/// The events route's query, values percent-decoded; parsed into numbers by the core.
#[derive(Debug, Default, Deserialize)]
struct EventsQuery {
    since: Option<String>,
    limit: Option<String>,
}

async fn events(
    State(api): State<Arc<ApiHandler>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Answer {
    Answer(
        async {
            let claims = bearer(&api, &headers)?;
            let Path(bot) = path.map_err(|e| path_error(&e))?;
            let q = query_of(query)?;
            let page = PageQuery::parse(q.since.as_deref(), q.limit.as_deref())?;
            api.events(&claims, &bot, page).await
        }
        .await,
    )
}

/// The sessions route's query, values percent-decoded.
#[derive(Debug, Default, Deserialize)]
struct SessionsQuery {
    limit: Option<String>,
}

async fn sessions(
    State(api): State<Arc<ApiHandler>>,
    query: Result<Query<SessionsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Answer {
    Answer(
        async {
            let claims = bearer(&api, &headers)?;
            let q = query_of(query)?;
            api.sessions(&claims, q.limit.as_deref()).await
        }
        .await,
    )
}

async fn event(
    State(api): State<Arc<ApiHandler>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    Answer(
        async {
            let claims = bearer(&api, &headers)?;
            let Path((bot, id)) = path.map_err(|e| path_error(&e))?;
            api.event(&claims, &bot, &id).await
        }
        .await,
    )
}
