//! The local `@connections` API's credential (docs/security.md): the real `relay serve`, real
//! WebSocket clients, real HTTP. A connection id is an address, not a credential: it is in the
//! logs, and a caller that has it but not the process's management key is refused (403) and
//! reaches no browser, while the relay's own fan-out keeps reaching it.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_millis(700);

fn unique_bot(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    format!("{label}-{nanos:08x}")
}

fn start(dir: &std::path::Path, configure: impl FnOnce(&mut RelayOptions)) -> Relay {
    let mut opts = RelayOptions::new(dir);
    configure(&mut opts);
    Relay::start(opts)
}

/// A client subscribed to `bot`, past its `connected` and snapshot messages, and its connection
/// id as the relay's log names it (what a reader of the logs has).
async fn subscribed(relay: &Relay, bot: &str) -> (WsClient, String) {
    subscribed_with(relay, bot, &token(&[bot], 3600)).await
}

async fn subscribed_with(relay: &Relay, bot: &str, token: &str) -> (WsClient, String) {
    let before = connected_ids(relay).len();
    let mut c = WsClient::connect(relay, token).await.expect("connect");
    c.send(json!({"action": "subscribe", "bot_id": bot}));
    assert_eq!(
        c.next(WAIT).await.expect("connected"),
        json!({"type": "connected", "bot_id": bot})
    );
    let snap = c.next(WAIT).await.expect("snapshot");
    assert_eq!(snap["type"], "status_update", "{snap}");
    c.resume_from(bot, snap["seq"].as_u64().expect("seq"));
    let id = connected_ids(relay)
        .get(before)
        .cloned()
        .expect("the $connect is logged with its connection id");
    (c, id)
}

async fn post_status(relay: &Relay, bot: &str, code: &str) {
    let body =
        json!({"event": "bot.status_change", "data": {"bot_id": bot, "status": {"code": code}}});
    let (status, _, text) =
        post_webhook(&http(), relay, &json_key_headers(), body.to_string()).await;
    assert_eq!(status, 200, "{text}");
}

/// `Authorization` headers that are not this relay's key: none, another key, the key under
/// another scheme or bare, one digit short, a SigV4 signature (what the real API takes, which
/// proves nothing to this host), and the right header sent twice with a wrong one.
fn forgeries() -> Vec<(&'static str, Vec<String>)> {
    let other = "0".repeat(64);
    vec![
        ("no header", vec![]),
        ("another key", vec![format!("RelayManagementKey {other}")]),
        ("another scheme", vec![format!("Bearer {MANAGEMENT_KEY}")]),
        ("the bare key", vec![MANAGEMENT_KEY.to_owned()]),
        (
            "a prefix of the key",
            vec![format!("RelayManagementKey {}", &MANAGEMENT_KEY[..63])],
        ),
        (
            "the key in upper case",
            vec![format!(
                "RelayManagementKey {}",
                MANAGEMENT_KEY.to_ascii_uppercase()
            )],
        ),
        (
            "a SigV4 signature",
            vec![
                "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/execute-api/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=00"
                    .to_owned(),
            ],
        ),
        (
            "two Authorization headers",
            vec![format!("RelayManagementKey {other}"), management_auth()],
        ),
    ]
}

fn with_auth(mut req: reqwest::RequestBuilder, values: &[String]) -> reqwest::RequestBuilder {
    for v in values {
        req = req.header("authorization", v);
    }
    req
}

async fn assert_forbidden(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status().as_u16(), 403, "{what}");
    assert_eq!(
        resp.headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok()),
        Some("ForbiddenException"),
        "{what}"
    );
    let body: Value = resp.json().await.expect("a JSON body");
    assert_eq!(body["message"], "Forbidden", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_refuses_a_caller_without_the_key_and_the_browser_gets_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(dir.path(), |_| {});
    let bot = unique_bot("forge");
    let (mut c, id) = subscribed(&relay, &bot).await;
    let client = http();
    let forged = json!({"type": "status_update", "bot_id": bot, "seq": 99, "status": "forged"});
    for (what, values) in forgeries() {
        for path in [
            format!("/@connections/{id}"),
            format!("/%40connections/{id}"),
        ] {
            let post = with_auth(client.post(relay.url(&path)), &values)
                .body(forged.to_string())
                .send()
                .await
                .expect("post");
            assert_forbidden(post, &format!("POST, {what}")).await;
            let get = with_auth(client.get(relay.url(&path)), &values)
                .send()
                .await
                .expect("get");
            assert_forbidden(get, &format!("GET, {what}")).await;
            let delete = with_auth(client.delete(relay.url(&path)), &values)
                .send()
                .await
                .expect("delete");
            assert_forbidden(delete, &format!("DELETE, {what}")).await;
        }
        // An unknown id is refused the same way: a refused caller learns nothing of which ids
        // are open.
        let unknown = with_auth(
            client.get(relay.url("/@connections/bm9zdWNoY29ubg=")),
            &values,
        )
        .send()
        .await
        .expect("get");
        assert_forbidden(unknown, &format!("GET of an unknown id, {what}")).await;
    }
    // Nothing reached the browser, and its socket is still open: no forged message, no close.
    assert_eq!(c.drain(QUIET).await, Vec::<Value>::new());
    assert!(c.raw_frames().iter().all(|f| !f.contains("forged")));

    // The relay's own client (the fan-out) still reaches it, and so does a caller with the key.
    post_status(&relay, &bot, "in_call_recording").await;
    let live = c.next(WAIT).await.expect("the fan-out's message");
    assert_eq!(
        (live["type"].as_str(), live["bot_id"].as_str()),
        (Some("status_update"), Some(bot.as_str())),
        "{live}"
    );
    let keyed = client
        .post(relay.url(&format!("/@connections/{id}")))
        .header("authorization", management_auth())
        .body(r#"{"type":"keyed"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(keyed.status().as_u16(), 200);
    assert_eq!(c.next(WAIT).await, Some(json!({"type": "keyed"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_makes_its_own_random_key_that_its_fan_out_sends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(dir.path(), |o| o.own_management_key = true);
    let bot = unique_bot("own-key");
    let (mut c, id) = subscribed(&relay, &bot).await;
    // The fan-out reaches the browser through the management API: the relay's client has its
    // key.
    post_status(&relay, &bot, "in_call_recording").await;
    let live = c.next(WAIT).await.expect("the fan-out's message");
    assert_eq!(live["type"], "status_update", "{live}");
    // The key the tests give other relays is not this one's: no fixed key opens a relay.
    let post = http()
        .post(relay.url(&format!("/@connections/{id}")))
        .header("authorization", management_auth())
        .body(r#"{"type":"forged"}"#)
        .send()
        .await
        .expect("post");
    assert_forbidden(post, "the tests' key on a relay with its own").await;
    assert_eq!(c.drain(QUIET).await, Vec::<Value>::new());
    assert!(
        relay
            .output()
            .iter()
            .all(|l| !l.contains("RELAY_TESTING_MANAGEMENT_KEY")),
        "a relay that was given no key says nothing of the testing hook"
    );
}

/// Even at `RUST_LOG=trace` (the AWS SDK's own request logs included) the key the relay's
/// client sends on every post is written nowhere, and neither is the client's token (it came in
/// the `GET /ws` query).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_key_is_in_no_log_line_even_at_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(dir.path(), |o| {
        o.env.push(("RUST_LOG".into(), "trace".into()));
    });
    let bot = unique_bot("trace");
    let client_token = token(&[&bot], 3600);
    let (mut c, _) = subscribed_with(&relay, &bot, &client_token).await;
    post_status(&relay, &bot, "in_call_recording").await;
    let live = c.next(WAIT).await.expect("the fan-out's message");
    assert_eq!(live["type"], "status_update", "{live}");
    c.send(json!({"action": "ping"}));
    assert!(c.next(WAIT).await.is_some(), "the reply to a ping");
    let lines = relay.output();
    assert!(
        lines.iter().any(|l| l.contains("aws_smithy")),
        "the SDK's own trace lines are in the output (so the check below covers them)"
    );
    let upper = MANAGEMENT_KEY.to_ascii_uppercase();
    for line in &lines {
        assert!(
            !line.contains(MANAGEMENT_KEY) && !line.contains(&upper),
            "the management key in a log line: {line}"
        );
        assert!(
            !line.contains(&client_token),
            "the client's token in a log line: {line}"
        );
    }
}

/// The key is `relay serve`'s alone: no Lambda function's environment or stack names it, and
/// the Lambda mains build the SigV4-signing client.
#[test]
fn no_lambda_has_a_management_key() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let template = std::fs::read_to_string(root.join("template.yaml")).expect("template.yaml");
    assert!(!template.contains("MANAGEMENT_KEY"));
    for function in ["connections", "fanout", "webhook", "api"] {
        let main = root.join("functions").join(function).join("src/main.rs");
        let text = std::fs::read_to_string(&main).expect("main.rs");
        assert!(
            !text.contains("MANAGEMENT_KEY") && !text.contains("for_local_endpoint"),
            "{}",
            main.display()
        );
    }
}
