//! `relay serve`'s metrics: the Prometheus recorder behind the `metrics` facade, and
//! `GET /metrics` (Prometheus text exposition) for this machine only. The recorder has no HTTP
//! listener of its own: the text is rendered by a route of the relay's router, behind the
//! same-machine check, so there is one port and one set of timeouts.
//!
//! Beside the counters, `/metrics` carries `relay_webhooks_last_hour{outcome}`: the webhook
//! answers of the last hour by outcome (since the start, when the relay is younger), the
//! question an operator asks first (how many deliveries were refused, and why) answered
//! without a Prometheus server to compute `increase()`. The operations view shows it.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use relay_core::telemetry::metrics as m;
use serde_json::json;

/// Histogram buckets, in seconds, of every `_seconds` metric: a few ms (a webhook on SQLite) to
/// a minute (a fan-out retried after failures).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often histogram samples are folded into their buckets between scrapes (a scrape folds
/// them too), so that memory stays bounded when nothing scrapes; also how often the webhook
/// counters are sampled for the last hour's window.
const UPKEEP: Duration = Duration::from_secs(5);

/// The window of `relay_webhooks_last_hour`.
const WINDOW: Duration = Duration::from_secs(3600);
/// Its name, and the counter it is computed from.
const LAST_HOUR: &str = "relay_webhooks_last_hour";

/// Webhook answers by outcome.
type Counts = BTreeMap<String, f64>;

/// Samples of the webhook counters, enough to reach one hour back: the newest sample at
/// least an hour old is the baseline, older ones are dropped (at most ~720 small maps).
#[derive(Default)]
pub struct Window {
    samples: Mutex<VecDeque<(Instant, Counts)>>,
}

impl Window {
    fn record(&self, at: Instant, counts: Counts) {
        let Ok(mut samples) = self.samples.lock() else {
            return;
        };
        samples.push_back((at, counts));
        // Keep one sample at or beyond the window's start: the baseline.
        while samples.len() > 1
            && samples
                .get(1)
                .is_some_and(|(t, _)| at.saturating_duration_since(*t) >= WINDOW)
        {
            samples.pop_front();
        }
    }

    /// `current` less the counters of an hour ago (nothing, when no sample is that old: the
    /// relay started within the hour and its counters began at zero).
    fn last_hour(&self, now: Instant, current: &Counts) -> Counts {
        let baseline = self.samples.lock().ok().and_then(|samples| {
            samples
                .iter()
                .rev()
                .find(|(t, _)| now.saturating_duration_since(*t) >= WINDOW)
                .map(|(_, c)| c.clone())
        });
        current
            .iter()
            .map(|(outcome, n)| {
                let before = baseline
                    .as_ref()
                    .and_then(|b| b.get(outcome))
                    .copied()
                    .unwrap_or(0.0);
                (outcome.clone(), (n - before).max(0.0))
            })
            .collect()
    }
}

/// The `relay_webhooks_total{outcome="..."}` series of the exporter's own text.
fn webhook_counts(text: &str) -> Counts {
    let prefix = format!("{}{{outcome=\"", m::WEBHOOKS);
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (outcome, value) = rest.split_once("\"} ")?;
            Some((outcome.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The exporter's text with `relay_webhooks_last_hour` after it.
fn with_last_hour(mut text: String, window: &Window, now: Instant) -> String {
    let last_hour = window.last_hour(now, &webhook_counts(&text));
    text.push_str(&format!(
        "# HELP {LAST_HOUR} Webhook deliveries by outcome over the last hour (since the start when the relay is younger)\n# TYPE {LAST_HOUR} gauge\n"
    ));
    for (outcome, n) in last_hour {
        text.push_str(&format!("{LAST_HOUR}{{outcome=\"{outcome}\"}} {n}\n"));
    }
    text
}

/// What `GET /metrics` renders from.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    window: Arc<Window>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics recorder: {0}")]
    Build(#[from] metrics_exporter_prometheus::BuildError),
}

/// Installs the Prometheus recorder (with the open-connections gauge: this process runs every
/// WebSocket route) and its upkeep task, which also samples the webhook counters for the last
/// hour's window. Must run inside the Tokio runtime.
pub fn install() -> Result<Metrics, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .install_recorder()?;
    m::describe();
    m::track_open_connections();
    let metrics = Metrics {
        handle,
        window: Arc::default(),
    };
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tick.tick().await;
            upkeep.handle.run_upkeep();
            let counts = webhook_counts(&upkeep.handle.render());
            upkeep.window.record(Instant::now(), counts);
        }
    });
    Ok(metrics)
}

/// `GET /metrics`, answering only a peer on this machine that names this machine as `Host`.
pub fn routes(metrics: Metrics, listen: SocketAddr) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(metrics)
        .layer(axum::middleware::from_fn_with_state(
            listen,
            this_machine_only,
        ))
}

async fn render(State(metrics): State<Metrics>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        with_last_hour(metrics.handle.render(), &metrics.window, Instant::now()),
    )
        .into_response()
}

/// Why a metrics request is refused, if it is: a peer that is not on this machine (the relay
/// may listen on every interface for its webhook and WebSocket routes), or a `Host` that does
/// not name this machine (a page of another site reaching it through DNS rebinding).
pub fn refusal(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    listen: SocketAddr,
) -> Option<&'static str> {
    if !peer.is_some_and(|p| p.ip().is_loopback()) {
        return Some("metrics answer requests from this machine only");
    }
    crate::web::foreign_request(headers, listen)
        .map(|_| "metrics answer requests to localhost only")
}

async fn this_machine_only(
    State(listen): State<SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(p)| *p);
    match refusal(peer, req.headers(), listen) {
        Some(why) => (StatusCode::FORBIDDEN, axum::Json(json!({"error": why}))).into_response(),
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    fn listen() -> SocketAddr {
        "0.0.0.0:8000".parse().unwrap()
    }

    fn request(peer: Option<&str>, host: &str) -> axum::extract::Request {
        let mut req = http::Request::builder()
            .uri("/metrics")
            .header(http::header::HOST, host)
            .body(axum::body::Body::empty())
            .unwrap();
        if let Some(p) = peer {
            req.extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(p.parse().unwrap()));
        }
        req
    }

    /// Through the real middleware with a forged peer address: the machine's tests can only
    /// connect over loopback, so a remote peer is put in the request's `ConnectInfo`.
    #[tokio::test]
    async fn metrics_answer_this_machine_only() {
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let metrics = Metrics {
            handle,
            window: Arc::default(),
        };
        let mut app = routes(metrics, listen());
        for (peer, host, want) in [
            (Some("127.0.0.1:50000"), "127.0.0.1:8000", StatusCode::OK),
            (Some("[::1]:50000"), "localhost:8000", StatusCode::OK),
            (
                Some("192.0.2.7:50000"),
                "127.0.0.1:8000",
                StatusCode::FORBIDDEN,
            ),
            (
                Some("10.0.0.5:50000"),
                "relay.example:8000",
                StatusCode::FORBIDDEN,
            ),
            (
                Some("127.0.0.1:50000"),
                "evil.example:8000",
                StatusCode::FORBIDDEN,
            ),
            (None, "127.0.0.1:8000", StatusCode::FORBIDDEN),
        ] {
            let resp = app.call(request(peer, host)).await.unwrap();
            assert_eq!(resp.status(), want, "{peer:?} {host}");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            if want == StatusCode::FORBIDDEN {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert!(v["error"].as_str().unwrap().contains("only"), "{v}");
            }
        }
    }

    fn counts(pairs: &[(&str, f64)]) -> Counts {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn the_window_subtracts_the_counters_of_an_hour_ago() {
        let window = Window::default();
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        // Younger than an hour: everything since the start.
        window.record(at(0), counts(&[("unauthorized", 2.0)]));
        let now = counts(&[("unauthorized", 5.0), ("accepted", 7.0)]);
        assert_eq!(
            window.last_hour(at(1800), &now),
            counts(&[("unauthorized", 5.0), ("accepted", 7.0)])
        );
        // Samples every 5 s for two hours: the baseline is the one an hour back.
        for i in 1..=1440u32 {
            let t = u64::from(i) * 5;
            window.record(
                at(t),
                counts(&[("unauthorized", f64::from(i)), ("accepted", 1.0)]),
            );
        }
        let now = counts(&[
            ("unauthorized", 1440.0),
            ("accepted", 1.0),
            ("too_large", 3.0),
        ]);
        assert_eq!(
            window.last_hour(at(7200), &now),
            counts(&[
                ("unauthorized", 720.0),
                ("accepted", 0.0),
                ("too_large", 3.0)
            ]),
            "an outcome first seen within the hour counts from zero"
        );
        let kept = window.samples.lock().unwrap().len();
        assert!(
            kept <= 722,
            "an hour of samples and the baseline, not two hours: {kept}"
        );
    }

    #[test]
    fn the_last_hour_is_read_from_the_exporters_text() {
        let text = "# TYPE relay_webhooks_total counter\n\
            relay_webhooks_total{outcome=\"accepted\"} 4\n\
            relay_webhooks_total{outcome=\"unauthorized\"} 2\n\
            relay_intake_seconds_count 6\n";
        assert_eq!(
            webhook_counts(text),
            counts(&[("accepted", 4.0), ("unauthorized", 2.0)])
        );
        let out = with_last_hour(text.to_owned(), &Window::default(), Instant::now());
        assert!(out.starts_with(text), "{out}");
        assert!(
            out.contains("# TYPE relay_webhooks_last_hour gauge\n"),
            "{out}"
        );
        assert!(
            out.contains("relay_webhooks_last_hour{outcome=\"unauthorized\"} 2\n"),
            "{out}"
        );
    }
}
