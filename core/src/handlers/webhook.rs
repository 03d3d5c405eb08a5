//! `POST /api/meeting-bot/webhook`: verify, parse, normalise, store once, answer. The same
//! function serves the webhook Lambda and `relay serve`; the HTTP adapter hands it the headers
//! and the raw body and writes back the reply.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, StatusCode};
use serde_json::json;

use crate::domain::auth::{AuthError, Authenticator};
use crate::domain::bot_id::BotId;
use crate::domain::event::{EventId, NewEvent};
use crate::domain::idempotency;
use crate::domain::payload::{Payload, PayloadError};
use crate::ports::store::{Appended, EventStore, StoreError};
use crate::telemetry::metrics::{self as m, WebhookOutcome};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// A `Content-Encoding` other than identity (the value as sent, lowercased).
    #[error("content-encoding {0} is not supported; send the body uncompressed")]
    UnsupportedEncoding(String),
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
            WebhookError::UnsupportedMediaType | WebhookError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            WebhookError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebhookError::BadPayload(_) => StatusCode::BAD_REQUEST,
            WebhookError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            WebhookError::Store(StoreError::Corrupt(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `outcome` label this error is counted under.
    pub fn outcome(&self) -> WebhookOutcome {
        match self {
            WebhookError::UnsupportedMediaType | WebhookError::UnsupportedEncoding(_) => {
                WebhookOutcome::UnsupportedMediaType
            }
            WebhookError::TooLarge => WebhookOutcome::TooLarge,
            WebhookError::Unauthorized(_) => WebhookOutcome::Unauthorized,
            WebhookError::BadPayload(_) => WebhookOutcome::BadRequest,
            WebhookError::Store(StoreError::Unavailable(_)) => WebhookOutcome::Unavailable,
            WebhookError::Store(StoreError::Corrupt(_)) => WebhookOutcome::Error,
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

    /// Handles one delivery; `request_id` is only for the log line.
    pub async fn handle(&self, headers: &HeaderMap, body: &[u8], request_id: &str) -> Reply {
        let started = Instant::now();
        let result = self.accept(headers, body).await;
        let elapsed = started.elapsed();
        metrics::histogram!(m::INTAKE_SECONDS).record(elapsed.as_secs_f64());
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        match result {
            Ok(Accepted { appended, bot_id }) => {
                if appended.is_duplicate() {
                    m::webhook(WebhookOutcome::Duplicate);
                } else {
                    m::webhook(WebhookOutcome::Accepted);
                    metrics::counter!(m::EVENTS_STORED, "source" => "webhook").increment(1);
                }
                tracing::info!(
                    request_id,
                    status = 200,
                    bot_id = bot_id.as_str(),
                    event = appended.kind().as_str(),
                    event_id = appended.event_id().as_str(),
                    seq = appended.seq(),
                    duplicate = appended.is_duplicate(),
                    latency_ms,
                    "webhook"
                );
                Reply::json(
                    StatusCode::OK,
                    &json!({
                        "status": "accepted",
                        "event_id": appended.event_id(),
                        "bot_id": bot_id,
                        "event": appended.kind(),
                        "duplicate": appended.is_duplicate(),
                    }),
                )
            }
            Err(err) => {
                m::webhook(err.outcome());
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
                Reply::json(status, &json!({"error": err.public_message()}))
            }
        }
    }

    async fn accept(&self, headers: &HeaderMap, body: &[u8]) -> Result<Accepted, WebhookError> {
        let event = self.intake.prepare(headers, body, chrono::Utc::now())?;
        let bot_id = event.bot_id.clone();
        let appended = self.store.append(event).await?;
        Ok(Accepted { appended, bot_id })
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
        // Content checks come before authentication, as the content type's does: a signature
        // is over the bytes as sent, and this route never decompresses them.
        if let Some(encoding) = unsupported_encoding(headers) {
            return Err(WebhookError::UnsupportedEncoding(encoding));
        }
        if body.len() > self.max_body_bytes {
            return Err(WebhookError::TooLarge);
        }
        // Authenticate before parsing: an unauthenticated sender learns nothing about the body.
        self.auth
            .verify(headers, body, now.timestamp())
            .map_err(WebhookError::Unauthorized)?;
        let payload = Payload::parse(body)?;
        // `parse` checked that the body is UTF-8.
        let text = std::str::from_utf8(body).map_err(|_| PayloadError::NotUtf8)?;
        let key = idempotency::key(headers, text);
        Ok(NewEvent {
            event_id: EventId::derive(&payload.bot_id, &key),
            bot_id: payload.bot_id,
            idempotency_key: key,
            kind: payload.kind,
            source_event: payload.source_event,
            family: payload.family,
            status_code: payload.status_code,
            occurred_at: payload.occurred_at,
            error: payload.error_info.map(Box::new),
            attempt: payload.attempt,
            max: payload.max,
            outcome: None,
            received_at: now,
            // Kept exactly as sent.
            body: text.to_owned(),
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

/// The `Content-Encoding` when it is anything but identity (absent, empty or `identity`).
fn unsupported_encoding(headers: &HeaderMap) -> Option<String> {
    let mut found = None;
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        let text = value.to_str().unwrap_or("(not text)");
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("identity") && found.is_none() {
                // Bounded and printable: it goes back in the error message.
                let shown: String = coding
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(40)
                    .collect();
                found = Some(shown.to_ascii_lowercase());
            }
        }
    }
    found
}

/// A delivery the store took (or had already): what the sender is told about it.
struct Accepted {
    appended: Appended,
    bot_id: BotId,
}

/// A handler's answer: status and JSON body, for the HTTP adapter to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
}

impl Reply {
    pub fn json(status: StatusCode, value: &serde_json::Value) -> Self {
        Self {
            status,
            body: value.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// What `relay serve --lambda-endpoint` counts from the webhook function's answers is what
    /// the handler counts itself.
    #[test]
    fn each_answer_reads_back_as_the_outcome_it_was_counted_under() {
        for e in [
            WebhookError::UnsupportedMediaType,
            WebhookError::UnsupportedEncoding("gzip".into()),
            WebhookError::TooLarge,
            WebhookError::Unauthorized(AuthError::Missing),
            WebhookError::BadPayload(PayloadError::NotObject),
            WebhookError::Store(StoreError::Unavailable("down".into())),
            WebhookError::Store(StoreError::Corrupt("bad".into())),
        ] {
            assert_eq!(
                WebhookOutcome::of_answer(e.status().as_u16(), false),
                e.outcome(),
                "{e}"
            );
        }
        assert_eq!(
            WebhookOutcome::of_answer(200, false),
            WebhookOutcome::Accepted
        );
        assert_eq!(
            WebhookOutcome::of_answer(200, true),
            WebhookOutcome::Duplicate
        );
    }

    #[test]
    fn only_identity_content_encoding_is_accepted() {
        let mut h = HeaderMap::new();
        assert_eq!(unsupported_encoding(&h), None);
        for (enc, refused) in [
            ("identity", None),
            ("", None),
            ("gzip", Some("gzip")),
            ("GZIP", Some("gzip")),
            ("identity, br", Some("br")),
            ("deflate", Some("deflate")),
        ] {
            h.insert(
                http::header::CONTENT_ENCODING,
                HeaderValue::from_str(enc).unwrap(),
            );
            assert_eq!(unsupported_encoding(&h).as_deref(), refused, "{enc:?}");
        }
        assert_eq!(
            WebhookError::UnsupportedEncoding("gzip".into()).to_string(),
            "content-encoding gzip is not supported; send the body uncompressed"
        );
    }

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
