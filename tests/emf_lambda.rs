//! The metrics the deployed functions write, read off the real bootstraps' stdout under a
//! Lambda Runtime API (always this host: EMF is what the Lambdas emit): after known traffic,
//! the CloudWatch Embedded Metric Format lines of the webhook, connections and fan-out
//! functions add up to exactly that traffic, each under its namespace and function dimension.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use relay_core::telemetry::metrics as m;
use serde_json::{Value, json};
use support::*;

/// (metric, its non-function label value) -> sum over every EMF line so far.
fn totals(lines: &[String]) -> HashMap<(String, String), f64> {
    let mut totals = HashMap::new();
    for line in lines {
        let Ok(doc) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(directives) = doc["_aws"]["CloudWatchMetrics"].as_array() else {
            continue;
        };
        for directive in directives {
            assert_eq!(
                directive["Namespace"],
                relay_cloudwatch::NAMESPACE,
                "{line}"
            );
            let dimensions: Vec<&str> = directive["Dimensions"][0]
                .as_array()
                .expect("a dimension set")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(
                doc[relay_cloudwatch::FUNCTION_DIMENSION]
                    .as_str()
                    .is_some_and(|f| !f.is_empty()),
                "every line names its function: {line}"
            );
            let label = dimensions
                .iter()
                .find(|d| **d != relay_cloudwatch::FUNCTION_DIMENSION)
                .and_then(|d| doc[*d].as_str())
                .unwrap_or_default()
                .to_owned();
            for metric in directive["Metrics"].as_array().expect("Metrics") {
                let name = metric["Name"].as_str().expect("Name").to_owned();
                let n = match &doc[&name] {
                    Value::Array(values) => values.len() as f64,
                    v => v.as_f64().expect("a number"),
                };
                *totals.entry((name, label.clone())).or_default() += n;
            }
        }
    }
    totals
}

fn get(t: &HashMap<(String, String), f64>, metric: &str, label: &str) -> f64 {
    t.get(&(metric.to_owned(), label.to_owned()))
        .copied()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_functions_emf_lines_add_up_to_the_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start_lambda(RelayOptions::new(dir.path()));
    let bot = format!("emf-{:x}", std::process::id());

    let mut viewer = WsClient::connect(&relay, &token(&[&bot], 600))
        .await
        .expect("connect");
    viewer.send(json!({"action": "subscribe", "bot_id": bot}));
    let connected = viewer.next(Duration::from_secs(30)).await;
    assert_eq!(
        connected,
        Some(json!({"type": "connected", "bot_id": bot})),
        "subscribed"
    );

    let status = |n: usize| {
        json!({"event": "bot.status_change", "data": {"bot_id": bot, "n": n, "status": {"code": "in_call_recording"}}})
            .to_string()
    };
    let client = http();
    for n in 0..3 {
        let (s, _, text) = post_webhook(&client, &relay, &json_key_headers(), status(n)).await;
        assert_eq!(s, 200, "{text}");
    }
    let (s, body, _) = post_webhook(&client, &relay, &json_key_headers(), status(0)).await;
    assert_eq!((s, body["duplicate"].as_bool()), (200, Some(true)));
    let wrong_key = [
        ("content-type", "application/json".to_owned()),
        ("x-meeting-baas-api-key", "not-the-key".to_owned()),
    ];
    for n in 10..12 {
        assert_eq!(
            post_webhook(&client, &relay, &wrong_key, status(n)).await.0,
            401
        );
    }
    assert_eq!(
        post_webhook(&client, &relay, &json_key_headers(), "{not json")
            .await
            .0,
        400
    );
    // The three events reach the viewer (the fan-out function posted them).
    let events = viewer.events(&bot, 3, Duration::from_secs(30)).await;
    assert_eq!(events.len(), 3, "{events:?}");

    let want = [
        (m::WEBHOOKS, "accepted", 3.0),
        (m::WEBHOOKS, "duplicate", 1.0),
        (m::WEBHOOKS, "unauthorized", 2.0),
        (m::WEBHOOKS, "bad_request", 1.0),
        (m::EVENTS_STORED, "webhook", 3.0),
        (m::INTAKE_SECONDS, "", 7.0),
        (m::FANOUT_DELIVERIES, "sent", 3.0),
        (m::CONNECTIONS_OPENED, "", 1.0),
        (m::SUBSCRIBES, "subscribed", 1.0),
    ];
    // Each function writes its lines as its invocation ends; the fan-out's may trail the posts.
    let deadline = Instant::now() + Duration::from_secs(30);
    let t = loop {
        let t = totals(&relay.output());
        let done = want
            .iter()
            .all(|(metric, label, n)| get(&t, metric, label) >= *n);
        if done || Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (metric, label, n) in want {
        assert_eq!(get(&t, metric, label), n, "{metric} {label}: {t:?}");
    }
    assert_eq!(get(&t, m::WEBHOOKS, "unavailable"), 0.0, "{t:?}");
    assert_eq!(
        get(&t, m::CONNECTIONS_OPEN, ""),
        0.0,
        "no open-connections gauge from a Lambda: {t:?}"
    );
}
