//! The Lambdas' metrics recorder: what core records through the `metrics` facade becomes
//! CloudWatch Embedded Metric Format (EMF) lines on stdout, which CloudWatch Logs turns into
//! metrics with no API call and no agent. Namespace [`NAMESPACE`], one dimension
//! [`FUNCTION_DIMENSION`] (the function's name) beside each metric's own labels.
//!
//! The recorder is `metrics_cloudwatch_embedded`; its `lambda` feature (a wrapper over
//! `lambda_runtime` only) is off, because the webhook and api functions run through
//! `lambda_http`: [`flushing`] wraps either kind of handler service and writes what the
//! invocation recorded before the runtime sends the invocation's result (after that, a Lambda
//! instance may be frozen, and lines written then would wait for its next invocation).
//!
//! Each main calls [`install`] once and hands [`flushing`] its service.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::Inspect;
use metrics_cloudwatch_embedded::Collector;

/// The CloudWatch namespace of every relay metric (the dashboard in template.yaml reads it).
pub const NAMESPACE: &str = "MeetingRelay";
/// The dimension that names the function a metric came from.
pub const FUNCTION_DIMENSION: &str = "function";

#[derive(Debug, thiserror::Error)]
pub enum EmfError {
    /// A recorder is installed already (a second `install` in one process).
    #[error("a metrics recorder is installed already: {0}")]
    Installed(String),
}

struct Installed {
    collector: &'static Collector,
    sink: Mutex<Box<dyn Write + Send>>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the EMF recorder, writing to stdout, with the function dimension set to
/// `AWS_LAMBDA_FUNCTION_NAME` (the deployed name, which the dashboard refers to), or to
/// `fallback` outside Lambda. A failure is logged, never fatal: the function serves without
/// metrics rather than not at all.
pub fn install(fallback: &str) {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| fallback.to_owned());
    if let Err(error) = install_to(&function, Box::new(std::io::stdout())) {
        tracing::warn!(%error, "metrics are off");
    }
}

/// Installs the EMF recorder writing to `sink` (stdout on Lambda; a buffer in tests).
pub fn install_to(function: &str, sink: Box<dyn Write + Send>) -> Result<(), EmfError> {
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension(FUNCTION_DIMENSION, function.to_owned())
        .init()
        .map_err(|e| EmfError::Installed(e.to_string()))?;
    INSTALLED
        .set(Installed {
            collector,
            sink: Mutex::new(sink),
        })
        .map_err(|_| EmfError::Installed("relay-cloudwatch".into()))?;
    relay_core::telemetry::metrics::describe();
    Ok(())
}

/// Writes what was recorded since the last flush: one EMF document (one line) per label set,
/// counters as their increase, histograms as their values. The lines are built first and
/// written in one go, so no log line of another task lands inside one.
pub fn flush() {
    let Some(installed) = INSTALLED.get() else {
        return;
    };
    let mut lines = Vec::new();
    if let Err(error) = installed.collector.flush(&mut lines) {
        tracing::warn!(%error, "metrics flush failed");
        return;
    }
    if lines.is_empty() {
        return;
    }
    let mut sink = installed
        .sink
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Err(error) = sink.write_all(&lines).and_then(|()| sink.flush()) {
        tracing::warn!(%error, "metrics write failed");
    }
}

/// `inner`, flushing the metrics when each call's future completes.
pub fn flushing<S>(inner: S) -> Flushing<S> {
    Flushing { inner }
}

/// A handler service whose every call ends with a [`flush`].
#[derive(Clone)]
pub struct Flushing<S> {
    inner: S,
}

type Output<S, R> =
    Result<<S as tower_service::Service<R>>::Response, <S as tower_service::Service<R>>::Error>;

impl<S, R> tower_service::Service<R> for Flushing<S>
where
    S: tower_service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Inspect<S::Future, fn(&Output<S, R>)>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.inner.call(req).inspect(|_| flush())
    }
}
