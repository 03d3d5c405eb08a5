//! The OpenAPI document (adapters/http/openapi.json) against the code: every route and method the
//! Routers declare is in the document and the document has no other; every status the handlers'
//! errors map to is documented on the routes that can answer it, and no route documents a status
//! the code cannot produce; every error response is the JSON `{"error": ...}` body.

use std::collections::BTreeSet;

use http::StatusCode;
use relay_core::handlers::api::ApiError;
use relay_core::handlers::webhook::WebhookError;
use relay_core::ports::meetingbaas::{ApiVersion, MeetingBaasError};
use relay_core::ports::store::StoreError;
use serde_json::Value;

const SOURCE: &str = include_str!("../src/lib.rs");

fn document() -> Value {
    serde_json::from_str(relay_http::OPENAPI_JSON).expect("openapi.json is JSON")
}

/// `/a/{bot}/b` and `/a/{bot_id}/b` are the same route.
fn normalise(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// `(METHOD, path)` of every `.route(...)` in the Routers' source, and the webhook route.
fn routes_in_code() -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (i, _) in SOURCE.match_indices(".route(") {
        let rest = &SOURCE[i + ".route(".len()..];
        let (path, after) = if let Some(r) = rest.trim_start().strip_prefix('"') {
            let end = r.find('"').expect("a closed string literal");
            (r[..end].to_owned(), &r[end + 1..])
        } else if let Some(r) = rest.trim_start().strip_prefix("WEBHOOK_PATH") {
            (relay_http::WEBHOOK_PATH.to_owned(), r)
        } else {
            panic!("a route whose path this test cannot read: {:.80}", rest);
        };
        // The method router: up to the call's closing parenthesis.
        let mut depth = 1;
        let mut end = 0;
        for (j, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let methods = &after[..end];
        for (name, method) in [
            ("get(", "GET"),
            ("post(", "POST"),
            ("put(", "PUT"),
            ("patch(", "PATCH"),
            ("delete(", "DELETE"),
            ("options(", "OPTIONS"),
        ] {
            let mut from = 0;
            while let Some(k) = methods[from..].find(name) {
                let at = from + k;
                let before = methods[..at].chars().last();
                // `get(` or `.options(`, not `target(`.
                if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
                    found.insert((method.to_owned(), normalise(&path)));
                }
                from = at + name.len();
            }
        }
    }
    found
}

fn routes_in_document(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if method != "parameters" {
                found.insert((method.to_uppercase(), normalise(path)));
            }
        }
    }
    found
}

#[test]
fn every_route_of_the_code_is_documented_and_no_other() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let code = routes_in_code();
    assert!(code.len() >= 20, "routes read from the source: {code:?}");
    assert!(code.contains(&("POST".into(), "/api/meeting-bot/webhook".into())));
    assert!(code.contains(&("GET".into(), "/asyncapi.json".into())));
    assert_eq!(code, routes_in_document(&doc));
}

/// The status of every error an operation can return, on the routes that can return it.
fn api_statuses() -> BTreeSet<u16> {
    [
        ApiError::Unauthorized,
        ApiError::Forbidden,
        ApiError::BadRequest("x".into()),
        ApiError::NotFound("x"),
        ApiError::Store(StoreError::Unavailable("x".into())),
        ApiError::Store(StoreError::Corrupt("x".into())),
        ApiError::Upstream(MeetingBaasError::Upstream {
            status: 404,
            message: "x".into(),
        }),
        ApiError::Upstream(MeetingBaasError::Timeout(std::time::Duration::from_secs(1))),
        ApiError::Upstream(MeetingBaasError::Unreachable),
        ApiError::Upstream(MeetingBaasError::NoKey),
        ApiError::Upstream(MeetingBaasError::NoBotId),
        ApiError::Upstream(MeetingBaasError::Unsupported {
            call: "x",
            version: ApiVersion::V1,
        }),
        ApiError::NotConfigured("x"),
        ApiError::NotImplemented("x".into()),
    ]
    .iter()
    .map(|e| e.status().as_u16())
    .collect()
}

fn statuses_of(op: &Value) -> BTreeSet<u16> {
    op["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(|k| k.parse().expect("a numeric status"))
        .collect()
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("a local $ref");
            resolve(doc, doc.pointer(pointer).expect("a $ref that resolves"))
        }
        None => v,
    }
}

#[test]
fn the_statuses_are_the_codes() {
    let doc = document();
    let api = api_statuses();
    let webhook: BTreeSet<u16> = [
        WebhookError::UnsupportedMediaType,
        WebhookError::UnsupportedEncoding("gzip".into()),
        WebhookError::TooLarge,
        WebhookError::BadPayload(relay_core::domain::payload::PayloadError::NotObject),
        WebhookError::Store(StoreError::Unavailable("x".into())),
        WebhookError::Store(StoreError::Corrupt("x".into())),
    ]
    .iter()
    .map(|e| e.status().as_u16())
    .chain([StatusCode::OK.as_u16(), StatusCode::UNAUTHORIZED.as_u16()])
    .collect();
    let mut documented_api = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let statuses = statuses_of(op);
            let at = format!("{} {path}", method.to_uppercase());
            if method == "options" {
                assert_eq!(statuses, BTreeSet::from([204]), "{at}");
                continue;
            }
            if path == relay_http::WEBHOOK_PATH {
                assert_eq!(statuses, webhook, "{at}");
                continue;
            }
            if path.ends_with(".json") {
                assert_eq!(statuses, BTreeSet::from([200]), "{at}");
                continue;
            }
            // Every token-checked route: a bad token, a token that does not allow it, a bad path.
            for s in [400, 401, 403] {
                assert!(statuses.contains(&s), "{at} does not document {s}");
            }
            for s in &statuses {
                assert!(
                    *s == 200 || api.contains(s),
                    "{at} documents {s}, which no error of the code answers"
                );
            }
            documented_api.extend(statuses.iter().copied().filter(|s| *s != 200));
        }
    }
    assert_eq!(
        documented_api, api,
        "every status the REST errors map to is documented on some route"
    );
}

/// `{"error": "<reason>"}`, perhaps with more fields (a MeetingBaaS refusal's), or a choice of
/// such bodies.
fn is_error_body(doc: &Value, schema: &Value) -> bool {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        return !branches.is_empty() && branches.iter().all(|b| is_error_body(doc, b));
    }
    let error = &schema["properties"]["error"];
    schema["type"] == "object"
        && schema["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|f| f == "error"))
        && (error["type"] == "string" || error["const"].is_string())
}

#[test]
fn every_error_response_is_the_json_error_body() {
    let doc = document();
    let error_schema = doc["components"]["schemas"]["Error"].clone();
    assert_eq!(error_schema["required"], serde_json::json!(["error"]));
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            for (status, resp) in op["responses"].as_object().unwrap() {
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                let resp = resolve(&doc, resp);
                let schema = resolve(&doc, &resp["content"]["application/json"]["schema"]);
                assert!(
                    is_error_body(&doc, schema),
                    "{} {path} {status}: not the JSON error body",
                    method.to_uppercase()
                );
            }
        }
    }
}

#[test]
fn the_webhook_route_has_its_three_authentication_schemes() {
    let doc = document();
    let op = &doc["paths"][relay_http::WEBHOOK_PATH]["post"];
    let headers: BTreeSet<String> = op["security"]
        .as_array()
        .expect("security")
        .iter()
        .flat_map(|req| req.as_object().unwrap().keys())
        .map(|name| {
            doc["components"]["securitySchemes"][name]["name"]
                .as_str()
                .expect("an apiKey scheme")
                .to_owned()
        })
        .collect();
    let want: BTreeSet<String> = [
        "x-meeting-baas-api-key",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-mb-secret",
    ]
    .map(String::from)
    .into();
    assert_eq!(headers, want);
}
