//! The relay's metrics, named in one place (docs/operations.md lists them for operators). The
//! handlers record them through the `metrics` facade; each host installs the recorder that
//! exports them: CloudWatch Embedded Metric Format lines in the Lambdas (relay-cloudwatch),
//! Prometheus text at `GET /metrics` in `relay serve`. With no recorder installed (unit tests,
//! `relay reconcile --once`) every call is a no-op.

use std::sync::atomic::{AtomicBool, Ordering};

use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

/// Webhook deliveries by `outcome` ([`WebhookOutcome`]).
pub const WEBHOOKS: &str = "relay_webhooks_total";
/// Seconds from a delivery's arrival at the handler to its answer, whatever the outcome.
pub const INTAKE_SECONDS: &str = "relay_intake_seconds";
/// Events written to the store (duplicates are not), by `source`: `webhook` or `reconcile`.
pub const EVENTS_STORED: &str = "relay_events_stored_total";
/// Fan-out posts to a connection by `outcome`: `sent`, `gone` (the connection had closed),
/// `failed` (the record is retried), `expired` (its token had expired: told so and closed).
pub const FANOUT_DELIVERIES: &str = "relay_fanout_deliveries_total";
/// Seconds one fan-out batch (one stream batch) took.
pub const FANOUT_BATCH_SECONDS: &str = "relay_fanout_batch_seconds";
/// Seconds from an event's `received_at` to the end of its posts to the connections watching
/// its bot: what a viewer waits. One value per event that reached at least one connection (not
/// one per post: the EMF recorder keeps at most 100 values between two flushes).
pub const DELIVERY_SECONDS: &str = "relay_delivery_seconds";
/// WebSocket connections accepted (`$connect` answered 200).
pub const CONNECTIONS_OPENED: &str = "relay_connections_opened_total";
/// WebSocket connections closed (`$disconnect`).
pub const CONNECTIONS_CLOSED: &str = "relay_connections_closed_total";
/// WebSocket connections open now; only where one process sees every connect and disconnect
/// (`relay serve`, see [`track_open_connections`]). On AWS, opened minus closed per period.
pub const CONNECTIONS_OPEN: &str = "relay_connections_open";
/// Subscribe messages by `outcome`: `subscribed`, `refused` (not connected, token expired, bot
/// not allowed) or `failed` (the store or a post failed; the client is told to try again).
pub const SUBSCRIBES: &str = "relay_subscribes_total";
/// Idle open sessions a reconciliation pass checked, by `outcome`: `reconciled` (an event was
/// stored), `unchanged`, `unknown` (MeetingBaaS does not know the bot), `error`.
pub const RECONCILE_SESSIONS: &str = "relay_reconcile_sessions_total";

/// The `outcome` label of [`WEBHOOKS`]: one per answer the webhook route gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// 200, stored now.
    Accepted,
    /// 200, stored before (`"duplicate": true`).
    Duplicate,
    /// 401.
    Unauthorized,
    /// 400: not JSON, not an object, no bot id, or a body that could not be read.
    BadRequest,
    /// 415: a content type or encoding the route does not take.
    UnsupportedMediaType,
    /// 413.
    TooLarge,
    /// 503: the store (or the function's set-up) is unavailable; the sender retries.
    Unavailable,
    /// 500: the store returned something it should not have.
    Error,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Unauthorized => "unauthorized",
            WebhookOutcome::BadRequest => "bad_request",
            WebhookOutcome::UnsupportedMediaType => "unsupported_media_type",
            WebhookOutcome::TooLarge => "too_large",
            WebhookOutcome::Unavailable => "unavailable",
            WebhookOutcome::Error => "error",
        }
    }

    /// The outcome an answer of the webhook route stands for, read from outside the function that
    /// gave it (`relay serve --lambda-endpoint`, in front of the webhook function): its status
    /// and, for a 2xx, the answer's `duplicate` flag. Each outcome has its own status.
    pub fn of_answer(status: u16, duplicate: bool) -> WebhookOutcome {
        match status {
            200..=299 if duplicate => WebhookOutcome::Duplicate,
            200..=299 => WebhookOutcome::Accepted,
            400 => WebhookOutcome::BadRequest,
            401 => WebhookOutcome::Unauthorized,
            413 => WebhookOutcome::TooLarge,
            415 => WebhookOutcome::UnsupportedMediaType,
            503 => WebhookOutcome::Unavailable,
            _ => WebhookOutcome::Error,
        }
    }
}

/// Counts one webhook answer. The handler counts its own; the HTTP surface and the webhook
/// function count the answers they give before the handler runs (a body over the gateway
/// limit, a function that could not read its secrets).
pub fn webhook(outcome: WebhookOutcome) {
    counter!(WEBHOOKS, "outcome" => outcome.as_str()).increment(1);
}

/// Whether this process keeps [`CONNECTIONS_OPEN`]. A Lambda instance sees only some of the
/// connects and disconnects, so a gauge of its own would be a meaningless partial sum.
static OPEN_CONNECTIONS: AtomicBool = AtomicBool::new(false);

/// Turns on the [`CONNECTIONS_OPEN`] gauge: for a host that runs every WebSocket route itself.
pub fn track_open_connections() {
    OPEN_CONNECTIONS.store(true, Ordering::Relaxed);
    gauge!(CONNECTIONS_OPEN).set(0.0);
}

/// A connection was accepted.
pub(crate) fn connection_opened() {
    counter!(CONNECTIONS_OPENED).increment(1);
    if OPEN_CONNECTIONS.load(Ordering::Relaxed) {
        gauge!(CONNECTIONS_OPEN).increment(1.0);
    }
}

/// A connection was closed.
pub(crate) fn connection_closed() {
    counter!(CONNECTIONS_CLOSED).increment(1);
    if OPEN_CONNECTIONS.load(Ordering::Relaxed) {
        gauge!(CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Units and help texts, for the recorder just installed (the EMF recorder writes the units
/// into each metric's definition, Prometheus the help text as `# HELP`).
pub fn describe() {
    describe_counter!(WEBHOOKS, Unit::Count, "Webhook deliveries by outcome");
    describe_histogram!(
        INTAKE_SECONDS,
        Unit::Seconds,
        "Webhook handling time, arrival to answer"
    );
    describe_counter!(
        EVENTS_STORED,
        Unit::Count,
        "Events written to the store, by source"
    );
    describe_counter!(
        FANOUT_DELIVERIES,
        Unit::Count,
        "Fan-out posts to connections, by outcome"
    );
    describe_histogram!(
        FANOUT_BATCH_SECONDS,
        Unit::Seconds,
        "Time to fan out one stream batch"
    );
    describe_histogram!(
        DELIVERY_SECONDS,
        Unit::Seconds,
        "Event received_at to its posts to the watching connections"
    );
    describe_counter!(
        CONNECTIONS_OPENED,
        Unit::Count,
        "WebSocket connections accepted"
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        Unit::Count,
        "WebSocket connections closed"
    );
    describe_gauge!(
        CONNECTIONS_OPEN,
        Unit::Count,
        "WebSocket connections open now"
    );
    describe_counter!(SUBSCRIBES, Unit::Count, "Subscribe messages by outcome");
    describe_counter!(
        RECONCILE_SESSIONS,
        Unit::Count,
        "Sessions a reconciliation pass checked, by outcome"
    );
}
