//! The one rule for SDK failures, for both adapters: the caller gets
//! [`StoreError::Unavailable`] naming the operation, the table and the error code (or HTTP
//! status) only, never the SDK's text, which may quote the signed request; the relay's answer
//! to its own caller is a fixed "unavailable, retry" on top of that. Retries back off the same
//! way everywhere ([`backoff`]).

use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use relay_core::ports::store::StoreError;

/// A failed call as a 503-worthy error.
pub(crate) fn unavailable<E>(table: &str, op: &str, err: &SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata,
{
    let why = match err {
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(f) if f.is_timeout() => "timed out".to_owned(),
        SdkError::DispatchFailure(f) if f.is_io() => "endpoint unreachable".to_owned(),
        SdkError::DispatchFailure(_) => "request could not be sent".to_owned(),
        SdkError::ConstructionFailure(_) => {
            "request could not be built (region or credentials?)".to_owned()
        }
        SdkError::ResponseError(_) => "response could not be read".to_owned(),
        SdkError::ServiceError(e) => match err.code() {
            Some(code) => code.to_owned(),
            // An answer without an error code (a 5xx from a proxy or an emulator).
            None => format!("HTTP {}", e.raw().status().as_u16()),
        },
        _ => "unknown SDK error".to_owned(),
    };
    StoreError::Unavailable(format!("dynamodb {op} on {table}: {why}"))
}

/// A service error already taken out of its `SdkError`.
pub(crate) fn unavailable_service(
    table: &str,
    op: &str,
    err: &impl ProvideErrorMetadata,
) -> StoreError {
    StoreError::Unavailable(format!(
        "dynamodb {op} on {table}: {}",
        err.code().unwrap_or("service error")
    ))
}

pub(crate) fn build_error(op: &str, e: &BuildError) -> StoreError {
    StoreError::Unavailable(format!("dynamodb {op}: request could not be built: {e}"))
}

/// Full-jitter exponential backoff: `base` doubling per attempt up to `cap`, a random wait
/// between half of that and all of it (so concurrent losers spread out).
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base.saturating_mul(1 << attempt.min(16)).min(cap);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(ms / 2..=ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        let (base, cap) = (Duration::from_millis(5), Duration::from_millis(100));
        for attempt in 0..40 {
            let d = backoff(attempt, base, cap);
            assert!(d <= cap, "{d:?}");
        }
        assert!(backoff(0, base, cap) >= Duration::from_millis(2));
    }
}
