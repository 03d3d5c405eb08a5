//! The control routes against MeetingBaaS's own schemas: a fake MeetingBaaS in Node
//! (tests/meetingbaas-fake/server.mjs) validates every request the real `relay serve` sends with
//! the official SDK's zod schemas (`@meeting-baas/sdk`, pinned in package.json), made strict, and
//! answers with bodies that pass the SDK's response schemas. A request a schema refuses fails the
//! test. Node and the npm packages are required: missing, the tests fail (`npm ci`, which
//! scripts/test runs, installs the packages).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use http::Method;
use serde_json::{Value, json};
use support::meetingbaas_fake::NodeFake;
use support::*;

/// The bot id the fake MeetingBaaS creates (a UUID, as MeetingBaaS's schemas want).
const BOT: &str = "7c0e7a4b-2f3d-4e5a-9b6c-1d2e3f4a5b6c";
const OTHER_BOT: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
const CALLBACK_URL: &str = "https://relay.example.com/api/meeting-bot/webhook";

fn relay_v2(dir: &Path, fake: &NodeFake, extra: &[(&str, &str)]) -> Relay {
    let mut opts = RelayOptions::new(dir);
    opts.env = vec![
        ("MEETINGBAAS_API_URL".into(), fake.base.clone()),
        ("MEETINGBAAS_API_VERSION".into(), "v2".into()),
        ("PUBLIC_BASE_URL".into(), "https://relay.example.com".into()),
        ("MEETINGBAAS_TIMEOUT_MS".into(), "3000".into()),
    ];
    opts.env
        .extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Relay::start(opts)
}

fn control_token(bots: &[&str]) -> String {
    let keys = relay_core::domain::token::TokenKeys::new(CLIENT_SECRET).expect("keys");
    keys.mint(&relay_core::domain::token::Claims {
        sub: "ops".into(),
        exp: chrono::Utc::now().timestamp() + 600,
        bots: bots.iter().map(|b| b.to_string()).collect(),
        scope: relay_core::domain::token::Scope::Control,
    })
    .expect("mint")
}

async fn call(relay: &Relay, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http().request(Method::POST, relay.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn assert_no_secret(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v2_start_stop_resend_and_retry_callback_send_what_the_sdk_schemas_accept() {
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_v2(dir.path(), &fake, &[]);
    let control = control_token(&["*"]);

    // v1 field names map to their v2 equivalents; v2 names pass; others are dropped.
    let input = json!({
        "meeting_url": "https://meet.google.com/abc-defg-hij",
        "bot_name": "Notetaker",
        "recording_mode": "audio_only",
        "bot_image": "https://cdn.example.com/bot.png",
        "entry_message": "Hi, I take notes",
        "extra": {"ticket": "OPS-1"},
        "automatic_leave": {"waiting_room_timeout": 600, "noone_joined_timeout": 300},
        "speech_to_text": {"provider": "Gladia", "api_key": "gladia-key-of-the-user"},
        "streaming": {"output": "wss://stream.example.com/out", "audio_frequency": "16khz"},
        "deduplication_key": "dk-1",
        "allow_multiple_bots": false,
        "webhook_url": "https://elsewhere.example.com/hook",
        "not_a_meetingbaas_field": true,
    });
    let (status, out) = call(&relay, "/api/meeting-bot/start", Some(&control), input).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        (out["bot_id"].as_str(), out["status"].as_str()),
        (Some(BOT), Some("starting"))
    );
    assert!(out["token"].is_string());
    let sent = fake.only_request_since(0).await;
    assert_eq!(
        (&sent["method"], &sent["path"]),
        (&json!("POST"), &json!("/v2/bots"))
    );
    assert_eq!(sent["callback_secret"], "matches", "{sent:#}");
    assert_eq!(
        sent["body"],
        json!({
            "bot_name": "Notetaker",
            "meeting_url": "https://meet.google.com/abc-defg-hij",
            "callback_enabled": true,
            "callback_config": {"url": CALLBACK_URL, "method": "POST", "secret": "<redacted>"},
            "recording_mode": "audio_only",
            "bot_image": "https://cdn.example.com/bot.png",
            "entry_message": "Hi, I take notes",
            "extra": {"ticket": "OPS-1"},
            "timeout_config": {"waiting_room_timeout": 600, "no_one_joined_timeout": 300},
            "transcription_enabled": true,
            "transcription_config": {"provider": "gladia", "api_key": "gladia-key-of-the-user"},
            "streaming_enabled": true,
            "streaming_config": {"output_url": "wss://stream.example.com/out", "audio_frequency": 16000},
            "allow_multiple_bots": false,
        }),
        "no webhook_url, no deduplication_key, no unknown field"
    );

    let (status, out) = call(
        &relay,
        &format!("/api/meeting-bot/{BOT}/stop"),
        Some(&control),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, out["stopped"].as_bool()),
        (200, Some(true)),
        "{out}"
    );
    let sent = fake.only_request_since(1).await;
    assert_eq!(
        (
            sent["method"].as_str(),
            sent["path"].as_str(),
            &sent["body"]
        ),
        (
            Some("POST"),
            Some(format!("/v2/bots/{BOT}/leave").as_str()),
            &Value::Null
        )
    );

    let (status, out) = call(
        &relay,
        &format!("/api/meeting-bot/{BOT}/resend"),
        Some(&control_token(&[BOT])),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, out["resend_requested"].as_bool()),
        (200, Some(true)),
        "{out}"
    );
    let sent = fake.only_request_since(2).await;
    assert_eq!(
        (
            sent["method"].as_str(),
            sent["path"].as_str(),
            &sent["body"]
        ),
        (
            Some("POST"),
            Some(format!("/v2/bots/{BOT}/resend-webhook").as_str()),
            &Value::Null
        )
    );

    let (status, out) = call(
        &relay,
        &format!("/api/meeting-bot/{BOT}/retry-callback"),
        Some(&control_token(&[BOT])),
        json!({}),
    )
    .await;
    assert_eq!(
        (
            status,
            out["retry_requested"].as_bool(),
            out["callback_url"].as_str()
        ),
        (200, Some(true), Some(CALLBACK_URL)),
        "{out}"
    );
    assert_no_secret(&out.to_string());
    let sent = fake.only_request_since(3).await;
    assert_eq!(
        (sent["method"].as_str(), sent["path"].as_str()),
        (
            Some("POST"),
            Some(format!("/v2/bots/{BOT}/retry-callback").as_str())
        )
    );
    assert_eq!(
        sent["body"],
        json!({"url": CALLBACK_URL, "method": "POST", "secret": "<redacted>"})
    );
    assert_eq!(sent["callback_secret"], "matches");

    // A v1 field with no v2 meaning is refused before MeetingBaaS is called.
    for (input, word) in [
        (
            json!({"meeting_url": "https://zoom.us/j/1", "start_time": 1_900_000_000}),
            "start_time",
        ),
        (
            json!({"meeting_url": "https://zoom.us/j/1", "speech_to_text": {"provider": "Runpod"}}),
            "Runpod",
        ),
    ] {
        let (status, out) = call(&relay, "/api/meeting-bot/start", Some(&control), input).await;
        assert_eq!(status, 400, "{out}");
        assert!(
            out["error"].as_str().unwrap_or_default().contains(word),
            "{out}"
        );
    }
    assert_eq!(
        fake.requests().await.len(),
        4,
        "nothing refused reached MeetingBaaS"
    );
    for line in relay.output() {
        assert_no_secret(&line);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v2_without_a_callback_secret_is_a_503_naming_it_and_meetingbaas_is_not_called() {
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_v2(dir.path(), &fake, &[("MEETINGBAAS_CALLBACK_SECRET", "")]);
    let control = control_token(&["*"]);
    for path in [
        "/api/meeting-bot/start".to_owned(),
        format!("/api/meeting-bot/{BOT}/retry-callback"),
    ] {
        let (status, out) = call(
            &relay,
            &path,
            Some(&control),
            json!({"meeting_url": "https://meet.google.com/abc-defg-hij"}),
        )
        .await;
        assert_eq!(status, 503, "{path}: {out}");
        assert!(
            out["error"]
                .as_str()
                .unwrap_or_default()
                .contains("MEETINGBAAS_CALLBACK_SECRET"),
            "{path}: {out}"
        );
    }
    assert!(
        fake.requests().await.is_empty(),
        "MeetingBaaS was not called"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v2_configure_webhook_is_a_501_with_the_dashboard_steps() {
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_v2(dir.path(), &fake, &[]);
    let path = "/api/meeting-bot/configure-webhook";
    assert_eq!(call(&relay, path, None, json!({})).await.0, 401);
    assert_eq!(
        call(&relay, path, Some(&control_token(&[BOT])), json!({}))
            .await
            .0,
        403,
        "all bots only"
    );
    let (status, out) = call(&relay, path, Some(&control_token(&["*"])), json!({})).await;
    assert_eq!(status, 501, "{out}");
    let error = out["error"].as_str().expect("error");
    for words in ["dashboard", CALLBACK_URL, "MEETINGBAAS_WEBHOOK_SECRET"] {
        assert!(error.contains(words), "{words} in {error}");
    }
    assert!(fake.requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v2_bot_routes_need_a_control_token_for_that_bot() {
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_v2(dir.path(), &fake, &[]);
    for verb in ["stop", "resend", "retry-callback"] {
        let path = format!("/api/meeting-bot/{BOT}/{verb}");
        let (status, out) = call(&relay, &path, None, json!({})).await;
        assert_eq!((status, out["error"].is_string()), (401, true), "{path}");
        let (status, out) = call(&relay, &path, Some(&token(&[BOT], 60)), json!({})).await;
        assert_eq!(
            (status, out["error"].is_string()),
            (403, true),
            "{path}: read scope"
        );
        let (status, out) =
            call(&relay, &path, Some(&control_token(&[OTHER_BOT])), json!({})).await;
        assert_eq!(
            (status, out["error"].is_string()),
            (403, true),
            "{path}: another bot"
        );
        let (status, out) = call(
            &relay,
            &format!("/api/meeting-bot/not%20a%20bot/{verb}"),
            Some(&control_token(&["*"])),
            json!({}),
        )
        .await;
        assert_eq!(
            (status, out["error"].is_string()),
            (400, true),
            "{verb}: bad id"
        );
        // A preflight, like the other routes.
        let resp = http()
            .request(Method::OPTIONS, relay.url(&path))
            .send()
            .await
            .expect("options");
        assert_eq!(resp.status().as_u16(), 204, "{path}");
        // GET is not a method of these routes: a JSON 405.
        let resp = http().get(relay.url(&path)).send().await.expect("get");
        assert_eq!(resp.status().as_u16(), 405, "{path}");
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    assert!(
        fake.requests().await.is_empty(),
        "nothing refused reached MeetingBaaS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v2_meetingbaas_errors_never_echo_our_key_or_the_callback_secret() {
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_v2(dir.path(), &fake, &[]);
    let control = control_token(&["*"]);
    // The fake repeats the raw request, headers and body, in its error message.
    fake.answer(json!({"mode": "echo_error", "status": 422}))
        .await;
    for path in [
        "/api/meeting-bot/start".to_owned(),
        format!("/api/meeting-bot/{BOT}/retry-callback"),
    ] {
        let (status, out) = call(
            &relay,
            &path,
            Some(&control),
            json!({"meeting_url": "https://meet.google.com/abc-defg-hij"}),
        )
        .await;
        assert_eq!(
            (status, out["meetingbaas_status"].as_u64()),
            (502, Some(422)),
            "{path}: {out}"
        );
        let message = out["message"].as_str().expect("message");
        assert!(message.contains("invalid request"), "{message}");
        assert_no_secret(&out.to_string());
    }
    for r in fake.requests().await {
        assert_eq!(r["valid"], true, "{r:#}");
    }
    for line in relay.output() {
        assert_no_secret(&line);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_start_stop_and_account_webhook_pass_the_sdk_v1_schemas_and_v2_verbs_are_501() {
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = RelayOptions::new(dir.path());
    opts.env = vec![
        ("MEETINGBAAS_API_URL".into(), fake.base.clone()),
        ("PUBLIC_BASE_URL".into(), "https://relay.example.com".into()),
    ];
    let relay = Relay::start(opts);
    let control = control_token(&["*"]);

    let input = json!({
        "meeting_url": "https://meet.google.com/abc-defg-hij",
        "bot_name": "Notetaker",
        "recording_mode": "speaker_view",
        "speech_to_text": {"provider": "Gladia"},
        "automatic_leave": {"waiting_room_timeout": 600, "noone_joined_timeout": 300},
        "bot_image": "https://cdn.example.com/bot.png",
        "entry_message": "Hi",
        "extra": {"ticket": "OPS-1"},
        "deduplication_key": "dk-1",
        "start_time": 1_900_000_000,
        "streaming": {"output": "wss://stream.example.com/out", "audio_frequency": "16khz"},
        "not_a_meetingbaas_field": true,
    });
    let (status, out) = call(&relay, "/api/meeting-bot/start", Some(&control), input).await;
    assert_eq!((status, out["bot_id"].as_str()), (200, Some(BOT)), "{out}");
    let sent = fake.only_request_since(0).await;
    assert_eq!(
        (sent["method"].as_str(), sent["path"].as_str()),
        (Some("POST"), Some("/bots/"))
    );
    assert_eq!(sent["body"]["webhook_url"], CALLBACK_URL);
    assert!(sent["body"].get("callback_config").is_none());

    let (status, _) = call(
        &relay,
        &format!("/api/meeting-bot/{BOT}/stop"),
        Some(&control),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let sent = fake.only_request_since(1).await;
    assert_eq!(
        (sent["method"].as_str(), sent["path"].as_str()),
        (Some("DELETE"), Some(format!("/bots/{BOT}").as_str()))
    );

    let (status, out) = call(
        &relay,
        "/api/meeting-bot/configure-webhook",
        Some(&control),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let sent = fake.only_request_since(2).await;
    assert_eq!(sent["body"], json!({"webhook_url": CALLBACK_URL}));

    for verb in ["resend", "retry-callback"] {
        let (status, out) = call(
            &relay,
            &format!("/api/meeting-bot/{BOT}/{verb}"),
            Some(&control),
            json!({}),
        )
        .await;
        assert_eq!(status, 501, "{verb}: {out}");
        let error = out["error"].as_str().expect("error");
        assert!(
            error.contains("v2") && error.contains("MEETINGBAAS_API_VERSION"),
            "{error}"
        );
        // The token is checked first, as on every route.
        assert_eq!(
            call(
                &relay,
                &format!("/api/meeting-bot/{BOT}/{verb}"),
                None,
                json!({})
            )
            .await
            .0,
            401
        );
    }
    assert_eq!(fake.requests().await.len(), 3, "the 501s called nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_stops_resends_and_retries_callbacks_through_the_relay() {
    let fake = NodeFake::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_v2(dir.path(), &fake, &[]);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(args)
            .args(["--api-url", &relay.base])
            .env("RELAY_CLIENT_SECRET", CLIENT_SECRET)
            .output()
            .expect("run relay")
    };
    for (i, (verb, path)) in [
        ("stop", format!("/v2/bots/{BOT}/leave")),
        ("resend", format!("/v2/bots/{BOT}/resend-webhook")),
        ("retry-callback", format!("/v2/bots/{BOT}/retry-callback")),
    ]
    .into_iter()
    .enumerate()
    {
        let out = run(&["bots", verb, BOT]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "relay bots {verb}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Value = serde_json::from_str(stdout.trim()).expect("json");
        assert_eq!(printed["bot_id"], BOT, "{printed}");
        let sent = fake.only_request_since(i).await;
        assert_eq!(sent["path"].as_str(), Some(path.as_str()));
    }
    // A bad id is refused by the CLI itself; an error status makes it fail.
    assert!(!run(&["bots", "stop", "not a bot"]).status.success());
    let out = run(&["bots", "stop", OTHER_BOT]);
    assert!(out.status.success(), "the fake knows any UUID");
    let leave_other = fake.only_request_since(3).await;
    assert_eq!(
        leave_other["path"].as_str(),
        Some(format!("/v2/bots/{OTHER_BOT}/leave").as_str())
    );
}

#[test]
fn an_unknown_api_version_is_a_configuration_error_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("MEETINGBAAS_API_VERSION", "v3")
        .env("MEETINGBAAS_API_KEY", API_KEY)
        .env("RELAY_CLIENT_SECRET", CLIENT_SECRET)
        .stdin(Stdio::null())
        .output()
        .expect("run relay serve");
    assert!(!out.status.success(), "relay serve started with v3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MEETINGBAAS_API_VERSION must be v1 or v2"),
        "{stderr}"
    );
}
