//! `relay serve --lambda-endpoint`: the host plays API Gateway (HTTP API and WebSocket API) and
//! the stream's event source mapping in front of the real function bootstraps, which it calls
//! through the Lambda Invoke API (an emulator serving the Runtime API to the bootstraps, e.g.
//! `cargo lambda watch --only-lambda-apis`). Which route goes to which function, the stream's
//! filter and batch size come from a deployment file that `scripts/lambda_loop.py` derives
//! from `template.yaml`, so a route the template does not declare is not served here either.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

pub mod http;
pub mod sigv4;
pub mod stream;

/// What `template.yaml` deploys, as this host needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct Deployment {
    /// The HTTP API's routes (`RouteKey`: a method and a path with `{name}` parameters).
    pub http_routes: Vec<HttpRoute>,
    pub websocket: WebSocketApi,
    pub stream: StreamMapping,
    /// The scheduled function (reconciliation), if any.
    #[serde(default)]
    pub schedule: Option<Schedule>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpRoute {
    pub method: String,
    pub path: String,
    pub function: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebSocketApi {
    pub function: String,
    /// The stage name: the management API's path prefix (`/{stage}/@connections/{id}`).
    pub stage: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamMapping {
    pub function: String,
    /// The event source mapping's filter patterns: a record invokes the function when it
    /// matches any of them (none: every record).
    #[serde(default)]
    pub filters: Vec<serde_json::Value>,
    pub batch_size: usize,
    /// `MaximumRetryAttempts`: a record is tried this many times more before its dead letter.
    pub maximum_retry_attempts: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Schedule {
    pub function: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("the deployment file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the deployment file {path} is not a deployment: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("the stream filter {pattern} uses something this host does not evaluate: {reason}")]
    Filter { pattern: String, reason: String },
}

impl Deployment {
    pub fn load(path: &Path) -> Result<Self, DeploymentError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeploymentError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let me: Self = serde_json::from_str(&text).map_err(|source| DeploymentError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        for pattern in &me.stream.filters {
            stream::check_pattern(pattern).map_err(|reason| DeploymentError::Filter {
                pattern: pattern.to_string(),
                reason,
            })?;
        }
        Ok(me)
    }
}

/// Why an invocation gave no result.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the Lambda Invoke API is unreachable: {0}")]
    Unreachable(String),
    #[error("no answer within the integration timeout")]
    Timeout,
    #[error("the Invoke API answered {status}: {body}")]
    Status { status: u16, body: String },
    /// The function returned an error (its `errorType`/`errorMessage` document).
    #[error("the function failed: {0}")]
    Function(String),
}

/// A client of the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`,
/// `RequestResponse`), plain HTTP as the emulator serves it.
#[derive(Clone)]
pub struct Invoker {
    http: reqwest::Client,
    endpoint: String,
    /// Invocations waiting at the Invoke API at once. The emulator queues at most 100 per
    /// function and stalls beyond that (cargo-lambda 1.9: a full queue blocks the very lock
    /// the runtimes need to take from it), so the rest wait here, as throttled callers would.
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// Below the emulator's queue of 100 per function, whatever mix of functions is invoked.
const MAX_IN_FLIGHT: usize = 64;

impl Invoker {
    pub fn new(endpoint: &str) -> Result<Self, reqwest::Error> {
        // API Gateway's integration timeout is 29 s at most; the functions' own timeouts
        // (template.yaml) are below it.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    /// Invokes `function` with `payload`; the function's result document.
    pub async fn invoke(
        &self,
        function: &str,
        payload: &impl serde::Serialize,
    ) -> Result<Bytes, InvokeError> {
        let body =
            serde_json::to_vec(payload).map_err(|e| InvokeError::Unreachable(e.to_string()))?;
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|e| InvokeError::Unreachable(e.to_string()))?;
        let resp = self
            .http
            .post(format!(
                "{}/2015-03-31/functions/{function}/invocations",
                self.endpoint
            ))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    InvokeError::Timeout
                } else {
                    InvokeError::Unreachable(e.to_string())
                }
            })?;
        let status = resp.status().as_u16();
        let function_error = resp.headers().contains_key("x-amz-function-error");
        let bytes = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                InvokeError::Timeout
            } else {
                InvokeError::Unreachable(e.to_string())
            }
        })?;
        if function_error || is_error_document(&bytes) {
            return Err(InvokeError::Function(
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
        if status != 200 {
            return Err(InvokeError::Status {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        Ok(bytes)
    }
}

/// The Runtime API's error document (`{"errorType":…,"errorMessage":…}`), which an emulator may
/// hand back with a 200 and no `X-Amz-Function-Error`.
fn is_error_document(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ErrorDoc {
        error_type: String,
        #[allow(dead_code)]
        error_message: Option<String>,
    }
    serde_json::from_slice::<ErrorDoc>(bytes).is_ok_and(|d| !d.error_type.is_empty())
}
