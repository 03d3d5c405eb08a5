//! `GET /metrics` of the real `relay serve` after known traffic: every counter moved by exactly
//! what the test sent (read before and after, so the test does not depend on what the relay
//! counted at start-up). The EMF side (the Lambdas) is tested in adapters/cloudwatch and
//! tests/emf_lambda.rs. With `RELAY_TEST_HOST=lambda` (scripts/test's Lambda stage) the webhook
//! outcomes are what relay serve counts from the webhook function's answers.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

/// One scrape: `name{labels}` (as the exposition writes it) to value.
#[derive(Debug, Clone)]
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }
}

fn parse(text: &str) -> Scrape {
    let mut series = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line:?}"));
        series.insert(name.to_owned(), value);
    }
    Scrape(series)
}

async fn scrape(relay: &Relay) -> Scrape {
    let resp = http()
        .get(relay.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .expect("content type")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&resp.text().await.expect("body"))
}

/// Polls until `series` has moved by `want` since `before` (a fan-out counts a batch when its
/// posts are done, which may be just after the browser got the message), then checks that it
/// stays there: exactly `want`, not at least.
async fn moved_by(relay: &Relay, before: &Scrape, series: &str, want: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = scrape(relay).await.get(series) - before.get(series);
        if got == want {
            break;
        }
        assert!(
            got < want && Instant::now() < deadline,
            "{series} moved by {got}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = scrape(relay).await.get(series) - before.get(series);
    assert_eq!(got, want, "{series} moved on past {want}");
}

fn delta(before: &Scrape, after: &Scrape, series: &str) -> f64 {
    after.get(series) - before.get(series)
}

fn unique_bot(label: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    format!("{label}-{n:08x}")
}

fn start(dir: &std::path::Path, extra: &[&str]) -> Relay {
    let mut opts = RelayOptions::new(dir);
    opts.extra_args = extra.iter().map(|s| s.to_string()).collect();
    opts.env = vec![("MAX_BODY_BYTES".into(), "4096".into())];
    Relay::start(opts)
}

async fn post(relay: &Relay, headers: &[(&str, String)], body: String) -> u16 {
    post_webhook(&http(), relay, headers, body).await.0
}

fn status_change(bot: &str, n: usize) -> String {
    json!({"event": "bot.status_change", "data": {"bot_id": bot, "n": n, "status": {"code": "in_call_recording"}}})
        .to_string()
}

#[tokio::test]
async fn webhook_outcomes_events_stored_and_intake_latency_move_by_the_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(dir.path(), &[]);
    let bot = unique_bot("m-intake");
    let before = scrape(&relay).await;

    let (accepted, duplicates, unauthorized, bad, too_large, unsupported) = (4, 3, 2, 2, 1, 1);
    for i in 0..accepted {
        assert_eq!(
            post(&relay, &json_key_headers(), status_change(&bot, i)).await,
            200
        );
    }
    for _ in 0..duplicates {
        assert_eq!(
            post(&relay, &json_key_headers(), status_change(&bot, 0)).await,
            200
        );
    }
    let wrong_key = vec![
        ("content-type", "application/json".to_owned()),
        ("x-meeting-baas-api-key", "not-the-key".to_owned()),
    ];
    for i in 0..unauthorized {
        assert_eq!(
            post(&relay, &wrong_key, status_change(&bot, 100 + i)).await,
            401
        );
    }
    for body in ["{not json", "[1, 2]"] {
        assert_eq!(
            post(&relay, &json_key_headers(), body.to_owned()).await,
            400
        );
    }
    let big =
        json!({"event": "bot.status_change", "data": {"bot_id": bot, "pad": "x".repeat(5000)}});
    assert_eq!(
        post(&relay, &json_key_headers(), big.to_string()).await,
        413
    );
    let text_plain = vec![
        ("content-type", "text/plain".to_owned()),
        ("x-meeting-baas-api-key", API_KEY.to_owned()),
    ];
    assert_eq!(
        post(&relay, &text_plain, status_change(&bot, 200)).await,
        415
    );

    let after = scrape(&relay).await;
    let count = |outcome: &str| {
        delta(
            &before,
            &after,
            &format!("relay_webhooks_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(count("accepted"), accepted as f64);
    assert_eq!(count("duplicate"), duplicates as f64);
    assert_eq!(count("unauthorized"), unauthorized as f64);
    assert_eq!(count("bad_request"), bad as f64);
    assert_eq!(count("too_large"), too_large as f64);
    assert_eq!(count("unsupported_media_type"), unsupported as f64);
    assert_eq!(count("unavailable"), 0.0);
    // The relay is seconds old: its last hour is everything since it started.
    let last_hour = |outcome: &str| {
        after.get(&format!(
            "relay_webhooks_last_hour{{outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(last_hour("accepted"), accepted as f64);
    assert_eq!(last_hour("unauthorized"), unauthorized as f64);
    assert_eq!(last_hour("bad_request"), bad as f64);
    assert_eq!(last_hour("too_large"), too_large as f64);
    assert_eq!(last_hour("unsupported_media_type"), unsupported as f64);
    let stored = delta(
        &before,
        &after,
        "relay_events_stored_total{source=\"webhook\"}",
    );
    if lambda_host() {
        // The webhook function ran the handler: relay serve counted the answers it passed on
        // (above), the stores and timings are the function's EMF lines (tests/emf_lambda.rs).
        assert_eq!(stored, 0.0, "relay serve stored nothing itself");
        assert_eq!(delta(&before, &after, "relay_intake_seconds_count"), 0.0);
        return;
    }
    assert_eq!(stored, accepted as f64, "duplicates are not stored again");
    let all = accepted + duplicates + unauthorized + bad + too_large + unsupported;
    assert_eq!(
        delta(&before, &after, "relay_intake_seconds_count"),
        all as f64,
        "every answer the handler gave is timed"
    );
    assert!(delta(&before, &after, "relay_intake_seconds_sum") > 0.0);
    assert_eq!(
        delta(&before, &after, "relay_intake_seconds_bucket{le=\"+Inf\"}"),
        all as f64
    );
}

async fn subscribed(relay: &Relay, bot: &str) -> WsClient {
    let mut c = WsClient::connect(relay, &token(&[bot], 3600))
        .await
        .expect("connect");
    c.send(json!({"action": "subscribe", "bot_id": bot}));
    let first = c.next(WAIT).await.expect("connected message");
    assert_eq!(first, json!({"type": "connected", "bot_id": bot}));
    let snap = c.next(WAIT).await.expect("snapshot");
    c.resume_from(bot, snap["seq"].as_u64().expect("snapshot seq"));
    c
}

#[tokio::test]
async fn connections_subscribes_and_fanout_sends_move_by_the_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(dir.path(), &[]);
    let (bot, other) = (unique_bot("m-live"), unique_bot("m-other"));
    let before = scrape(&relay).await;

    let mut viewers = vec![
        subscribed(&relay, &bot).await,
        subscribed(&relay, &bot).await,
    ];
    // A subscribe the token does not allow: refused, still one connection.
    let mut refused = WsClient::connect(&relay, &token(&[&bot], 3600))
        .await
        .expect("connect");
    refused.send(json!({"action": "subscribe", "bot_id": other}));
    let error: Value = refused.next(WAIT).await.expect("error message");
    assert_eq!(error["code"], "forbidden", "{error}");

    let after = scrape(&relay).await;
    assert_eq!(
        delta(&before, &after, "relay_connections_opened_total"),
        3.0
    );
    assert_eq!(delta(&before, &after, "relay_connections_open"), 3.0);
    assert_eq!(
        delta(
            &before,
            &after,
            "relay_subscribes_total{outcome=\"subscribed\"}"
        ),
        2.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            "relay_subscribes_total{outcome=\"refused\"}"
        ),
        1.0
    );

    let events = 3;
    for i in 0..events {
        assert_eq!(
            post(&relay, &json_key_headers(), status_change(&bot, i)).await,
            200
        );
    }
    for v in &mut viewers {
        assert_eq!(v.events(&bot, events, WAIT).await.len(), events);
    }
    moved_by(
        &relay,
        &before,
        "relay_fanout_deliveries_total{outcome=\"sent\"}",
        (events * viewers.len()) as f64,
    )
    .await;
    let after = scrape(&relay).await;
    assert_eq!(
        delta(&before, &after, "relay_delivery_seconds_count"),
        events as f64,
        "one webhook-to-post latency per event"
    );
    let batches = delta(&before, &after, "relay_fanout_batch_seconds_count");
    assert!(
        (1.0..=events as f64).contains(&batches),
        "{batches} batches for {events} events"
    );
    for outcome in ["gone", "failed"] {
        assert_eq!(
            delta(
                &before,
                &after,
                &format!("relay_fanout_deliveries_total{{outcome=\"{outcome}\"}}")
            ),
            0.0
        );
    }

    refused.close().await;
    viewers.pop().expect("a viewer").close().await;
    moved_by(&relay, &before, "relay_connections_closed_total", 2.0).await;
    assert_eq!(
        delta(&before, &scrape(&relay).await, "relay_connections_open"),
        1.0
    );
}

#[tokio::test]
async fn a_post_that_keeps_failing_is_counted_at_each_attempt() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every post about this bot fails (after the client's own retries): the mapping tries the
    // record twice, then it goes to the dead letters.
    let poison = unique_bot("m-poison");
    let relay = start(
        dir.path(),
        &["--poison-bot", &poison, "--stream-max-attempts", "2"],
    );
    let before = scrape(&relay).await;
    let _viewer = subscribed(&relay, &poison).await;
    assert_eq!(
        post(&relay, &json_key_headers(), status_change(&poison, 0)).await,
        200
    );
    moved_by(
        &relay,
        &before,
        "relay_fanout_deliveries_total{outcome=\"failed\"}",
        2.0,
    )
    .await;
    let after = scrape(&relay).await;
    assert_eq!(
        delta(
            &before,
            &after,
            "relay_fanout_deliveries_total{outcome=\"sent\"}"
        ),
        0.0
    );
    assert_eq!(
        delta(&before, &after, "relay_delivery_seconds_count"),
        0.0,
        "no latency for an event no one got"
    );
}

#[tokio::test]
async fn metrics_are_for_this_machine_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(dir.path(), &[]);
    // A loopback peer naming another host (DNS rebinding): refused with a JSON error. A peer on
    // another machine cannot be made here (loopback only): the middleware's unit test forges one.
    let resp = http()
        .get(relay.url("/metrics"))
        .header("host", "metrics.example:80")
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert!(body["error"].is_string(), "{body}");
    let text = http()
        .get(relay.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    for name in [
        "relay_connections_open",
        "# HELP relay_connections_open",
        "# TYPE relay_connections_open gauge",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

/// Bot ids MeetingBaaS's schemas accept (UUIDs).
const STUCK: &str = "7d6e5f4a-3b2c-4d1e-8f0a-9b8c7d6e5f4a";
const UNKNOWN: &str = "8e7f6a5b-4c3d-4e2f-9a1b-0c9d8e7f6a5b";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconciled_session_is_counted_once() {
    use support::meetingbaas_fake::NodeFake;
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = RelayOptions::new(dir.path());
    opts.env = vec![
        ("MEETINGBAAS_API_URL".into(), fake.base.clone()),
        ("MEETINGBAAS_API_VERSION".into(), "v2".into()),
        ("MEETINGBAAS_TIMEOUT_MS".into(), "3000".into()),
        ("RECONCILE_AFTER_SECONDS".into(), "1".into()),
        ("RECONCILE_INTERVAL_SECONDS".into(), "1".into()),
    ];
    let relay = Relay::start(opts);
    let before = scrape(&relay).await;
    let signal = |bot: &str| {
        json!({"event": "bot.status_change", "data": {"bot_id": bot, "event_id": format!("{bot}-rec"),
               "status": {"code": "in_call_recording", "created_at": "2026-12-01T09:05:00Z"}}})
        .to_string()
    };
    assert_eq!(post(&relay, &json_key_headers(), signal(STUCK)).await, 200);
    assert_eq!(
        post(&relay, &json_key_headers(), signal(UNKNOWN)).await,
        200
    );
    fake.set_bot(
        json!({"bot_id": STUCK, "status": "completed", "updated_at": "2026-12-01T09:40:00Z"}),
    )
    .await;

    moved_by(
        &relay,
        &before,
        "relay_reconcile_sessions_total{outcome=\"reconciled\"}",
        1.0,
    )
    .await;
    // Later passes ask about the unknown bot again, never about the completed one.
    let deadline = Instant::now() + WAIT;
    let unknown = "relay_reconcile_sessions_total{outcome=\"unknown\"}";
    while delta(&before, &scrape(&relay).await, unknown) < 2.0 {
        assert!(Instant::now() < deadline, "no second pass");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = scrape(&relay).await;
    assert_eq!(
        delta(
            &before,
            &after,
            "relay_reconcile_sessions_total{outcome=\"reconciled\"}"
        ),
        1.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            "relay_events_stored_total{source=\"reconcile\"}"
        ),
        1.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            "relay_events_stored_total{source=\"webhook\"}"
        ),
        2.0
    );
}
