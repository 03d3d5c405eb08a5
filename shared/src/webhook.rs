//! `POST /api/meeting-bot/webhook`: verify, parse, normalise, store once, answer. The same
//! function serves the webhook Lambda and `relay serve`; both hand it a `lambda_http::Request`.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;

use crate::auth::{AuthError, Authenticator};
use crate::event::{EventId, NewEvent};
use crate::idempotency;
use crate::payload::{Parsed, Payload, PayloadError};
use crate::store::{Appended, EventStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("payload too large")]
    TooLarge,
    #[error("unauthorized")]
    Unauthorized(AuthError),
    #[error(transparent)]
    BadPayload(#[from] PayloadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WebhookError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebhookError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebhookError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebhookError::BadPayload(_) => StatusCode::BAD_REQUEST,
            WebhookError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            WebhookError::Store(StoreError::Corrupt(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the sender is told: clear, and never a secret or a store internal.
    pub fn public_message(&self) -> String {
        match self {
            WebhookError::Store(StoreError::Unavailable(_)) => {
                "event store unavailable, retry later".to_owned()
            }
            WebhookError::Store(StoreError::Corrupt(_)) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

/// Everything the webhook route does before the store; pure CPU, benchmarked on its own.
pub struct Intake {
    auth: Authenticator,
    max_body_bytes: usize,
}

pub struct WebhookHandler {
    intake: Intake,
    store: Arc<dyn EventStore>,
}

impl WebhookHandler {
    pub fn new(auth: Authenticator, store: Arc<dyn EventStore>, max_body_bytes: usize) -> Self {
        Self {
            intake: Intake::new(auth, max_body_bytes),
            store,
        }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        let started = Instant::now();
        let request_id = request_id(&req);
        let (parts, body) = req.into_parts();
        let bytes: &[u8] = match &body {
            Body::Empty => &[],
            Body::Text(s) => s.as_bytes(),
            Body::Binary(b) => b,
            _ => &[],
        };
        let result = self.accept(&parts.headers, bytes).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(appended) => {
                let bot_id = appended.1.as_str();
                tracing::info!(
                    request_id,
                    status = 200,
                    bot_id,
                    event = appended.0.kind().as_str(),
                    event_id = appended.0.event_id().as_str(),
                    seq = appended.0.seq(),
                    duplicate = appended.0.is_duplicate(),
                    latency_ms,
                    "webhook"
                );
                json_response(
                    StatusCode::OK,
                    &json!({
                        "status": "accepted",
                        "event_id": appended.0.event_id(),
                        "bot_id": bot_id,
                        "event": appended.0.kind(),
                        "duplicate": appended.0.is_duplicate(),
                    }),
                )
            }
            Err(err) => {
                let status = err.status();
                let detail = match &err {
                    WebhookError::Unauthorized(why) => why.to_string(),
                    WebhookError::Store(e) => e.to_string(),
                    other => other.to_string(),
                };
                tracing::warn!(
                    request_id,
                    status = status.as_u16(),
                    error = detail,
                    latency_ms,
                    "webhook refused"
                );
                json_response(status, &json!({"error": err.public_message()}))
            }
        }
    }

    async fn accept(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(Appended, crate::BotId), WebhookError> {
        let event = self.intake.prepare(headers, body, chrono::Utc::now())?;
        let bot_id = event.bot_id.clone();
        Ok((self.store.append(event).await?, bot_id))
    }
}

impl Intake {
    pub fn new(auth: Authenticator, max_body_bytes: usize) -> Self {
        Self {
            auth,
            max_body_bytes,
        }
    }

    /// Content type, size, authentication, parsing, normalisation, idempotency key.
    pub fn prepare(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<NewEvent, WebhookError> {
        if !content_type_is_json(headers) {
            return Err(WebhookError::UnsupportedMediaType);
        }
        if body.len() > self.max_body_bytes {
            return Err(WebhookError::TooLarge);
        }
        // Authenticate before parsing: an unauthenticated sender learns nothing about the body.
        self.auth
            .verify(headers, body, now.timestamp())
            .map_err(WebhookError::Unauthorized)?;
        let header_key = idempotency::header_key(headers);
        let Parsed {
            payload,
            body: parsed,
        } = Payload::parse_body(body, header_key.is_none())?;
        let key = header_key.unwrap_or_else(|| idempotency::body_key(&parsed));
        Ok(NewEvent {
            event_id: EventId::derive(&payload.bot_id, &key),
            bot_id: payload.bot_id,
            idempotency_key: key,
            kind: payload.kind,
            source_event: payload.source_event,
            family: payload.family,
            status_code: payload.status_code,
            occurred_at: payload.occurred_at,
            error: payload.error,
            received_at: now,
            // Kept exactly as sent.
            body: parsed.text().to_owned(),
        })
    }
}

/// A missing content type is accepted (some senders omit it); a present one must be JSON.
fn content_type_is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The Lambda request id on AWS; API Gateway's request id when the local host made the event.
pub fn request_id(req: &Request) -> String {
    if let Some(ctx) = req.lambda_context_ref()
        && !ctx.request_id.is_empty()
    {
        return ctx.request_id.clone();
    }
    match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => {
            ctx.request_id.clone().unwrap_or_default()
        }
        Some(lambda_http::request::RequestContext::ApiGatewayV1(ctx)) => {
            ctx.request_id.clone().unwrap_or_default()
        }
        _ => String::new(),
    }
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Body::Text(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(content_type_is_json(&h));
        for (ct, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/cloudevents+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("text/json+xml", false),
        ] {
            h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(content_type_is_json(&h), ok, "{ct}");
        }
    }
}
