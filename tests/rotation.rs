//! A MeetingBaaS key rotation while deliveries flow, against the real webhook function under a
//! Lambda Runtime API (always this host: the rotation is the functions' Secrets Manager read):
//! the old key, then both, then only the new one, with no redeploy and no restart, and never a
//! 5xx. The functions read their secret again every second here
//! (`RELAY_TESTING_SECRETS_REFRESH_SECONDS`; on AWS every 5 minutes).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const NEW_KEY: &str = "rotated-in-key-5c2e91d04b";

async fn put_secret(tables: &FunctionTables, api_keys: &str) {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&tables.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let value = json!({
        "MEETINGBAAS_API_KEY": api_keys,
        "MEETINGBAAS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MEETINGBAAS_CALLBACK_SECRET": CALLBACK_SECRET,
        "RELAY_CLIENT_SECRET": CLIENT_SECRET,
    });
    aws_sdk_secretsmanager::Client::new(&sdk)
        .put_secret_value()
        .secret_id(&tables.secret_arn)
        .secret_string(value.to_string())
        .send()
        .await
        .expect("put the new secret value");
}

fn body(bot: &str, n: usize) -> String {
    json!({"event": "bot.status_change", "data": {"bot_id": bot, "status": {
        "code": "in_call_recording",
        "created_at": format!("2026-12-02T10:{:02}:{:02}.000Z", n / 60 % 60, n % 60),
    }}})
    .to_string()
}

async fn status_with(relay: &Relay, key: &str, bot: &str, n: usize) -> u16 {
    post_webhook(
        &http(),
        relay,
        &[
            ("content-type", "application/json".to_owned()),
            ("x-meeting-baas-api-key", key.to_owned()),
        ],
        body(bot, n),
    )
    .await
    .0
}

/// Waits until `key` gets `want` on several deliveries in a row (every function instance has
/// read the secret again by then).
async fn until(relay: &Relay, key: &str, want: u16, n: &AtomicUsize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut in_a_row = 0;
    while in_a_row < 6 {
        assert!(Instant::now() < deadline, "{key} never got {want}");
        let got = status_with(
            relay,
            key,
            "rotation-probe",
            n.fetch_add(1, Ordering::SeqCst),
        )
        .await;
        assert!(got < 500, "a {got} during the rotation");
        in_a_row = if got == want { in_a_row + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rotates_old_then_both_then_new_while_deliveries_flow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = RelayOptions::new(dir.path());
    opts.env
        .push(("RELAY_TESTING_SECRETS_REFRESH_SECONDS".into(), "1".into()));
    let relay = Arc::new(Relay::start_lambda(opts));
    let tables = relay.dynamodb.clone().expect("the functions' tables");
    let n = Arc::new(AtomicUsize::new(0));

    // Deliveries flow the whole time, with whichever key the sender holds: never a 5xx.
    let stop = Arc::new(AtomicBool::new(false));
    let flow = {
        let (relay, n, stop) = (relay.clone(), n.clone(), stop.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for key in [API_KEY, NEW_KEY] {
                    let i = n.fetch_add(1, Ordering::SeqCst);
                    statuses.push((key, status_with(&relay, key, "rotation-flow", i).await));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            statuses
        })
    };

    // The old key only.
    until(&relay, API_KEY, 200, &n).await;
    until(&relay, NEW_KEY, 401, &n).await;
    // Both: the new key is accepted and the old one still is.
    put_secret(&tables, &format!("{API_KEY},{NEW_KEY}")).await;
    until(&relay, NEW_KEY, 200, &n).await;
    until(&relay, API_KEY, 200, &n).await;
    // The new key only: the old one is refused from then on.
    put_secret(&tables, NEW_KEY).await;
    until(&relay, API_KEY, 401, &n).await;
    until(&relay, NEW_KEY, 200, &n).await;

    stop.store(true, Ordering::SeqCst);
    let statuses = flow.await.expect("flow");
    assert!(statuses.len() >= 6, "deliveries flowed: {statuses:?}");
    assert!(
        statuses.iter().all(|(_, s)| *s == 200 || *s == 401),
        "only 200s and 401s while the key rotated: {statuses:?}"
    );
    assert!(
        statuses.iter().any(|(k, s)| *k == NEW_KEY && *s == 200),
        "the flow saw the new key accepted"
    );
    // No secret material in any line the functions or the relay wrote.
    for line in relay.output() {
        for secret in [API_KEY, NEW_KEY, CLIENT_SECRET] {
            assert!(!line.contains(secret), "secret in: {line}");
        }
    }
}
