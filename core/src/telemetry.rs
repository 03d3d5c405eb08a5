//! Logging set up once per process: JSON lines on stdout (CloudWatch on Lambda), filtered by
//! `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests, embedding) is harmless: the first subscriber stays.
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// What every host does first: logging set up, then the settings parsed once.
pub fn start() -> Result<crate::config::Config, crate::config::ConfigError> {
    init();
    crate::config::Config::from_env()
}
