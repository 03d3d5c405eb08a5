//! The HTTP API in front of the functions: a request on a route of the deployment becomes an
//! HTTP API payload 2.0 event (as AWS documents it), the function's `ApiGatewayV2httpResponse`
//! becomes the answer. A route the deployment does not declare is not routed to any function.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body as LambdaBody;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use base64::Engine;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};

use relay_core::telemetry::metrics::{self as m, WebhookOutcome};

use super::{Deployment, Invoker};

/// Lambda's synchronous invocation payload limit (6 MB) less the event's own fields: a bigger
/// body is refused by API Gateway before any function runs.
const MAX_BODY_BYTES: usize = 6 * 1024 * 1024 - 64 * 1024;

/// The routes of the deployment's HTTP API, each invoking its function.
pub fn router(deployment: &Deployment, invoker: Invoker) -> Result<Router, String> {
    let mut by_path: BTreeMap<String, MethodRouter> = BTreeMap::new();
    for route in &deployment.http_routes {
        let filter = MethodFilter::try_from(
            http::Method::from_bytes(route.method.as_bytes()).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("route {} {}: {e}", route.method, route.path))?;
        let target = Arc::new(Target {
            function: route.function.clone(),
            route_key: format!("{} {}", route.method, route.path),
            invoker: invoker.clone(),
            counts_webhooks: route.method == "POST" && route.path == relay_http::WEBHOOK_PATH,
        });
        let handler = move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request| {
            let target = target.clone();
            async move { target.call(peer, req).await }
        };
        let entry = by_path.remove(&route.path).unwrap_or_default();
        by_path.insert(route.path.clone(), entry.merge(on(filter, handler)));
    }
    Ok(by_path
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(&path, methods)
        }))
}

struct Target {
    function: String,
    route_key: String,
    invoker: Invoker,
    /// The webhook route: its answers are counted here as [`m::WEBHOOKS`], as the handler
    /// counts them in-process, so `GET /metrics` and the operations view see the deliveries the
    /// function answered (its own EMF lines count the same answers on AWS).
    counts_webhooks: bool,
}

impl Target {
    async fn call(&self, peer: SocketAddr, req: Request) -> Response {
        let (answer, duplicate) = self.answer(peer, req).await;
        if self.counts_webhooks {
            m::webhook(WebhookOutcome::of_answer(
                answer.status().as_u16(),
                duplicate,
            ));
        }
        answer
    }

    /// The answer, and whether it is a 2xx that says `"duplicate": true`.
    async fn answer(&self, peer: SocketAddr, req: Request) -> (Response, bool) {
        let gateway = |status: StatusCode, message: &str| (gateway_error(status, message), false);
        let (parts, body) = req.into_parts();
        // API Gateway takes up to 10 MB and then fails to invoke with more than the payload
        // limit: the whole body is read first, so a sender still writing it gets the 413 and
        // not a reset connection.
        let body = match axum::body::to_bytes(body, relay_http::GATEWAY_BODY_LIMIT).await {
            Ok(body) if body.len() <= MAX_BODY_BYTES => body,
            _ => return gateway(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
        };
        let path_parameters = path_parameters(&self.route_key, parts.uri.path());
        let event = event(
            &self.route_key,
            &parts,
            &body,
            &path_parameters,
            peer,
            &request_id(),
        );
        match self.invoker.invoke(&self.function, &event).await {
            Ok(result) => match serde_json::from_slice::<ApiGatewayV2httpResponse>(&result) {
                Ok(mut resp) => match take_body(&mut resp) {
                    Some(body) => {
                        let duplicate = self.counts_webhooks && says_duplicate(&resp, &body);
                        (response(resp, body), duplicate)
                    }
                    None => gateway(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
                },
                Err(e) => {
                    tracing::error!(function = self.function, error = %e, "the function's answer is not an HTTP API response");
                    gateway(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                }
            },
            // An HTTP API answers an integration timeout with 503, other failures with 500.
            Err(super::InvokeError::Timeout) => {
                tracing::error!(function = self.function, "invocation timed out");
                gateway(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
            }
            Err(e) => {
                tracing::error!(function = self.function, error = %e, "invocation failed");
                gateway(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }
}

fn request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// API Gateway's own error answer (not the function's).
fn gateway_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

/// `{name}` segments of the route's path, read from the request's path (still encoded, as API
/// Gateway hands them over).
fn path_parameters(route_key: &str, path: &str) -> HashMap<String, String> {
    let pattern = route_key.split_once(' ').map_or("", |(_, p)| p);
    pattern
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(p, v)| {
            let name = p.strip_prefix('{')?.strip_suffix('}')?;
            Some((name.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The payload 2.0 event: headers lower-cased with repeated ones joined by commas, cookies
/// apart, the query string raw and as decoded parameters, a body that is not UTF-8 text (or is
/// content-encoded) in base64.
fn event(
    route_key: &str,
    parts: &http::request::Parts,
    body: &[u8],
    path_parameters: &HashMap<String, String>,
    peer: SocketAddr,
    request_id: &str,
) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::COOKIE {
            cookies.extend(value.split(';').map(|c| c.trim().to_owned()));
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let raw_query = parts.uri.query().unwrap_or("");
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in url_pairs(raw_query) {
        query
            .entry(k)
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let now = chrono::Utc::now();
    let text = (!parts.headers.contains_key(http::header::CONTENT_ENCODING))
        .then(|| std::str::from_utf8(body).ok())
        .flatten();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": headers.get("host").cloned().unwrap_or_else(|| "127.0.0.1".to_owned()),
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": text.is_none() && !body.is_empty(),
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !path_parameters.is_empty() {
        event["pathParameters"] = json!(path_parameters);
    }
    if !body.is_empty() {
        event["body"] = match text {
            Some(t) => json!(t),
            None => json!(base64::engine::general_purpose::STANDARD.encode(body)),
        };
    }
    event
}

/// `application/x-www-form-urlencoded` pairs, percent- and `+`-decoded (an undecodable query
/// string has no parameters; the function still gets it raw).
fn url_pairs(raw: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw).unwrap_or_default()
}

/// The function's body with any base64 undone (`None`: base64 that does not decode, which API
/// Gateway answers with a 500).
fn take_body(resp: &mut ApiGatewayV2httpResponse) -> Option<Vec<u8>> {
    match resp.body.take() {
        Some(LambdaBody::Text(t)) if resp.is_base64_encoded => {
            base64::engine::general_purpose::STANDARD
                .decode(t.as_bytes())
                .ok()
        }
        Some(LambdaBody::Text(t)) => Some(t.into_bytes()),
        Some(LambdaBody::Binary(b)) => Some(b),
        _ => Some(Vec::new()),
    }
}

/// A 2xx whose JSON body says `"duplicate": true` (the webhook's answer to a redelivery).
fn says_duplicate(resp: &ApiGatewayV2httpResponse, body: &[u8]) -> bool {
    (200..300).contains(&resp.status_code)
        && serde_json::from_slice::<Value>(body)
            .is_ok_and(|v| v.get("duplicate") == Some(&Value::Bool(true)))
}

/// The function's answer (its body taken out by [`take_body`]) as API Gateway gives it to the
/// client.
fn response(resp: ApiGatewayV2httpResponse, body: Vec<u8>) -> Response {
    let status = u16::try_from(resp.status_code)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    let headers = out.headers_mut();
    for (name, value) in &resp.headers {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &resp.multi_value_headers {
        if !resp.headers.contains_key(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    for cookie in &resp.cookies {
        if let Ok(v) = HeaderValue::from_str(cookie) {
            headers.append(HeaderName::from_static("set-cookie"), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_come_from_the_route_key() {
        let p = path_parameters(
            "GET /api/meeting-bot/{bot_id}/events/{event_id}",
            "/api/meeting-bot/b%201/events/e2",
        );
        assert_eq!(p.get("bot_id").map(String::as_str), Some("b%201"));
        assert_eq!(p.get("event_id").map(String::as_str), Some("e2"));
    }

    #[test]
    fn the_event_has_the_documented_shape() {
        let req = http::Request::builder()
            .method("POST")
            .uri("/api/meeting-bot/webhook?a=1&a=2&b=%31")
            .header("X-Thing", "one")
            .header("x-thing", "two")
            .header("cookie", "c=1; d=2")
            .body(())
            .map(|r| r.into_parts().0);
        let Ok(parts) = req else { panic!("request") };
        let peer: SocketAddr = ([127, 0, 0, 1], 5000).into();
        let ev = event(
            "POST /api/meeting-bot/webhook",
            &parts,
            b"{}",
            &HashMap::new(),
            peer,
            "r1",
        );
        assert_eq!(ev["version"], "2.0");
        assert_eq!(ev["headers"]["x-thing"], "one,two");
        assert_eq!(ev["cookies"], json!(["c=1", "d=2"]));
        assert_eq!(ev["queryStringParameters"]["a"], "1,2");
        assert_eq!(ev["queryStringParameters"]["b"], "1");
        assert_eq!(ev["rawQueryString"], "a=1&a=2&b=%31");
        assert_eq!(ev["requestContext"]["http"]["method"], "POST");
        assert_eq!(ev["body"], "{}");
        assert_eq!(ev["isBase64Encoded"], false);
        let gz = event(
            "POST /api/meeting-bot/webhook",
            &parts,
            &[0x1f, 0x8b, 0xff],
            &HashMap::new(),
            peer,
            "r2",
        );
        assert_eq!(gz["isBase64Encoded"], true);
        assert_eq!(gz["body"], "H4v/");
    }
}
