//! Control routes against a small fake MeetingBaaS (a real HTTP server in the test that
//! records every request and can answer errors or hang), through the real `relay serve`, and
//! the CLI commands that call them.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::IntoResponse;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use support::*;

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone)]
enum Answer {
    Ok,
    Fail(u16, Value),
    Hang,
}

#[derive(Clone)]
struct Fake {
    requests: Arc<Mutex<Vec<Recorded>>>,
    answer: Arc<Mutex<Answer>>,
}

async fn fake_handler(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.requests.lock().expect("lock").push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers,
        body,
    });
    let answer = fake.answer.lock().expect("lock").clone();
    match answer {
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        Answer::Fail(status, body) => (
            StatusCode::from_u16(status).expect("status"),
            axum::Json(body),
        )
            .into_response(),
        Answer::Ok => match (method.as_str(), uri.path()) {
            ("POST", "/bots/") => {
                axum::Json(json!({"bot_id": "6b1d7f4e-0c55-4d0e-9a59-3f1d2f2b9a10"}))
                    .into_response()
            }
            ("DELETE", p) if p.starts_with("/bots/") => {
                axum::Json(json!({"ok": true})).into_response()
            }
            ("POST", "/accounts/webhook_url") => {
                axum::Json(json!({"webhook_url": "ok"})).into_response()
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

async fn start_fake() -> (Fake, String) {
    let fake = Fake {
        requests: Arc::default(),
        answer: Arc::new(Mutex::new(Answer::Ok)),
    };
    let app = axum::Router::new()
        .fallback(fake_handler)
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, format!("http://{addr}"))
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

async fn call(
    relay: &Relay,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = http().request(method, relay.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn relay_with(dir: &std::path::Path, fake_url: &str) -> Relay {
    let mut opts = RelayOptions::new(dir);
    opts.env = vec![
        ("MEETINGBAAS_API_URL".into(), fake_url.into()),
        ("PUBLIC_BASE_URL".into(), "https://relay.example.com".into()),
        ("MEETINGBAAS_TIMEOUT_MS".into(), "1500".into()),
    ];
    Relay::start(opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_stop_and_configure_reach_meetingbaas_as_documented() {
    let (fake, fake_url) = start_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_with(dir.path(), &fake_url);
    let control = control_token(&["*"]);

    let input = json!({
        "meeting_url": "https://meet.google.com/abc-defg-hij",
        "bot_name": "Notetaker",
        "recording_mode": "speaker_view",
        "speech_to_text": {"provider": "Gladia"},
        "automatic_leave": {"waiting_room_timeout": 600},
        "entry_message": "Hi, I take notes",
        "extra": {"ticket": "OPS-1"},
        "not_a_meetingbaas_field": true,
    });
    let (status, out) = call(
        &relay,
        Method::POST,
        "/api/meeting-bot/start",
        Some(&control),
        input,
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let bot = "6b1d7f4e-0c55-4d0e-9a59-3f1d2f2b9a10";
    assert_eq!(
        (out["bot_id"].as_str(), out["status"].as_str()),
        (Some(bot), Some("starting"))
    );
    let sent = fake
        .requests
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a request");
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/bots/")
    );
    assert_eq!(
        sent.headers
            .get("x-meeting-baas-api-key")
            .and_then(|v| v.to_str().ok()),
        Some(API_KEY),
        "the first configured key"
    );
    assert_eq!(
        sent.body["webhook_url"],
        "https://relay.example.com/api/meeting-bot/webhook"
    );
    assert_eq!(sent.body["bot_name"], "Notetaker");
    for field in [
        "meeting_url",
        "recording_mode",
        "speech_to_text",
        "automatic_leave",
        "entry_message",
        "extra",
    ] {
        assert!(!sent.body[field].is_null(), "{field} passed on");
    }
    assert!(
        sent.body.get("not_a_meetingbaas_field").is_none(),
        "only MeetingBaaS fields are passed on"
    );

    // The returned token reads that bot's session, which exists in `starting`.
    let read = out["token"].as_str().expect("token").to_owned();
    let resp = http()
        .get(relay.url(&format!("/api/meeting-bot/{bot}/status")))
        .bearer_auth(&read)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 200);
    let snap: Value = resp.json().await.expect("json");
    assert_eq!(
        (snap["status"].as_str(), snap["seq"].as_u64()),
        (Some("starting"), Some(0))
    );

    let (status, out) = call(
        &relay,
        Method::POST,
        &format!("/api/meeting-bot/{bot}/stop"),
        Some(&control),
        json!({}),
    )
    .await;
    assert_eq!((status, out["stopped"].as_bool()), (200, Some(true)));
    let sent = fake
        .requests
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a request");
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("DELETE", format!("/bots/{bot}").as_str())
    );

    let (status, out) = call(
        &relay,
        Method::POST,
        "/api/meeting-bot/configure-webhook",
        Some(&control),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let sent = fake
        .requests
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a request");
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/accounts/webhook_url")
    );
    assert_eq!(
        sent.body,
        json!({"webhook_url": "https://relay.example.com/api/meeting-bot/webhook"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_needs_the_control_scope_and_the_right_bots() {
    let (fake, fake_url) = start_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_with(dir.path(), &fake_url);
    let body = json!({"meeting_url": "https://zoom.us/j/1"});
    assert_eq!(
        call(
            &relay,
            Method::POST,
            "/api/meeting-bot/start",
            None,
            body.clone()
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(
            &relay,
            Method::POST,
            "/api/meeting-bot/start",
            Some(&token(&["*"], 60)),
            body.clone()
        )
        .await
        .0,
        403,
        "read scope"
    );
    assert_eq!(
        call(
            &relay,
            Method::POST,
            "/api/meeting-bot/b-1/stop",
            Some(&control_token(&["b-2"])),
            json!({})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &relay,
            Method::POST,
            "/api/meeting-bot/configure-webhook",
            Some(&control_token(&["b-1"])),
            json!({})
        )
        .await
        .0,
        403,
        "all bots only"
    );
    let (status, out) = call(
        &relay,
        Method::POST,
        "/api/meeting-bot/start",
        Some(&control_token(&["*"])),
        json!({"meeting_url": "ftp://x"}),
    )
    .await;
    assert_eq!(
        (
            status,
            out["error"].as_str().map(|e| e.contains("meeting_url"))
        ),
        (400, Some(true))
    );
    assert!(
        fake.requests.lock().expect("lock").is_empty(),
        "nothing refused reached MeetingBaaS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn meetingbaas_errors_are_502_and_a_hang_is_504() {
    let (fake, fake_url) = start_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_with(dir.path(), &fake_url);
    let control = control_token(&["*"]);
    let body = json!({"meeting_url": "https://zoom.us/j/1"});

    *fake.answer.lock().expect("lock") = Answer::Fail(
        422,
        json!({"message": format!("invalid meeting url (key {API_KEY})")}),
    );
    let (status, out) = call(
        &relay,
        Method::POST,
        "/api/meeting-bot/start",
        Some(&control),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, out["meetingbaas_status"].as_u64()),
        (502, Some(422)),
        "{out}"
    );
    let message = out["message"].as_str().expect("message");
    assert!(
        message.contains("invalid meeting url") && !message.contains(API_KEY),
        "{message}"
    );

    *fake.answer.lock().expect("lock") = Answer::Hang;
    let started = Instant::now();
    let (status, _) = call(
        &relay,
        Method::POST,
        "/api/meeting-bot/start",
        Some(&control),
        body,
    )
    .await;
    assert_eq!(status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by MEETINGBAAS_TIMEOUT_MS: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_starts_bots_and_sets_the_account_url() {
    let (fake, fake_url) = start_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_with(dir.path(), &fake_url);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(args)
            .args(["--api-url", &relay.base])
            .env("RELAY_CLIENT_SECRET", CLIENT_SECRET)
            .output()
            .expect("run relay")
    };
    let out = run(&[
        "bots",
        "start",
        "--meeting-url",
        "https://teams.microsoft.com/l/meetup-join/x",
        "--name",
        "Scribe",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(printed["status"], "starting");
    assert_eq!(
        fake.requests
            .lock()
            .expect("lock")
            .last()
            .map(|r| r.body["bot_name"].clone()),
        Some(json!("Scribe"))
    );

    let out = run(&[
        "webhook",
        "set-account-url",
        "https://hooks.example.com/api/meeting-bot/webhook",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = fake
        .requests
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("request");
    assert_eq!(
        (last.path.as_str(), &last.body["webhook_url"]),
        (
            "/accounts/webhook_url",
            &json!("https://hooks.example.com/api/meeting-bot/webhook")
        )
    );
}
