//! The local host's API Gateway: turns what arrived over HTTP into the very event API Gateway
//! (HTTP API, payload v2.0) hands a Lambda, converted by lambda_http exactly as on AWS, and
//! turns the handler's response back into HTTP.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::response::IntoResponse;
use http::{HeaderMap, Method, Uri};
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayV2httpRequest, ApiGatewayV2httpRequestContext,
    ApiGatewayV2httpRequestContextHttpDescription,
};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, Response};

/// Builds the HTTP API v2.0 event for one request. `route_key` is the matched route, as API
/// Gateway fills it in (`"POST /api/meeting-bot/webhook"`).
pub fn http_event(
    route_key: &str,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
    peer: Option<SocketAddr>,
    path_parameters: &[(&str, String)],
) -> Request {
    let now = chrono::Utc::now();
    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = method;
    http.path = Some(uri.path().to_owned());
    http.protocol = Some("HTTP/1.1".to_owned());
    http.source_ip = peer.map(|p| p.ip().to_string());
    http.user_agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let mut ctx = ApiGatewayV2httpRequestContext::default();
    ctx.route_key = Some(route_key.to_owned());
    ctx.account_id = Some("local".to_owned());
    ctx.stage = Some("$default".to_owned());
    ctx.request_id = Some(request_id());
    ctx.apiid = Some("local".to_owned());
    ctx.time_epoch = now.timestamp_millis();
    ctx.http = http;

    let mut event = ApiGatewayV2httpRequest::default();
    event.version = Some("2.0".to_owned());
    event.route_key = Some(route_key.to_owned());
    event.raw_path = Some(uri.path().to_owned());
    event.raw_query_string = Some(uri.query().unwrap_or("").to_owned());
    event.headers = headers;
    event.path_parameters = path_parameters
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    event.request_context = ctx;
    // API Gateway passes text bodies as text and anything else base64-encoded.
    if body.is_empty() {
        event.body = None;
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(text) => event.body = Some(text),
            Err(_) => {
                use base64::Engine;
                event.body = Some(base64::engine::general_purpose::STANDARD.encode(&body));
                event.is_base64_encoded = true;
            }
        }
    }
    LambdaRequest::ApiGatewayV2(event).into()
}

fn request_id() -> String {
    let n: u128 = rand::random();
    format!("{:032x}", n)
}

/// The handler's `Response<Body>` as an axum response.
pub fn into_response(resp: Response<Body>) -> axum::response::Response {
    let (parts, body) = resp.into_parts();
    let bytes: Vec<u8> = match body {
        Body::Empty => Vec::new(),
        Body::Text(s) => s.into_bytes(),
        Body::Binary(b) => b,
        _ => Vec::new(),
    };
    (parts.status, parts.headers, bytes).into_response()
}
