//! Logging set up once per process: JSON lines on stdout (CloudWatch on Lambda), filtered by
//! `RUST_LOG` (default `info`); and the relay's metrics ([`metrics`]), recorded here through the
//! `metrics` facade and exported by whichever recorder the host installs.

pub mod metrics;

use tracing_subscriber::EnvFilter;

pub fn init() {
    init_to(std::io::stdout);
}

/// The same logs on stderr, for a command whose stdout is its result (`relay reconcile`).
pub fn init_stderr() {
    init_to(std::io::stderr);
}

fn init_to<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests, embedding) is harmless: the first subscriber stays.
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init();
}

/// What every host does first: logging set up, then the settings parsed once.
pub fn start() -> Result<crate::config::Config, crate::config::ConfigError> {
    init();
    crate::config::Config::from_env()
}
