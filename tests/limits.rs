//! What a client can cost `relay serve` is bounded, as API Gateway bounds it on AWS: the per-connection outbound
//! queue, idle and lifetime limits on sockets whose client does not read, frame sizes, HTTP
//! timeouts, shutdown. The real binary, real sockets; the checks are on mechanisms (what the
//! relay answers, which sockets it still holds), with generous bounds.

mod support;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

const WAIT: Duration = Duration::from_secs(30);

fn start(dir: &std::path::Path, extra: &[&str]) -> Relay {
    let mut opts = RelayOptions::new(dir);
    opts.extra_args = extra.iter().map(|s| s.to_string()).collect();
    Relay::start(opts)
}

/// A WebSocket client that reads only when told to; returns it, its local port and its
/// connection id.
async fn raw_client(relay: &Relay) -> (Ws, u16, String) {
    let before = connected_ids(relay).len();
    let tcp = tokio::net::TcpStream::connect(relay.base.trim_start_matches("http://"))
        .await
        .expect("tcp");
    let port = tcp.local_addr().expect("addr").port();
    let url = format!(
        "{}/ws?token={}",
        relay.base.replacen("http://", "ws://", 1),
        token(&["*"], 3600)
    );
    let (ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("handshake");
    let deadline = Instant::now() + WAIT;
    let id = loop {
        if let Some(id) = connected_ids(relay).get(before) {
            break id.clone();
        }
        assert!(Instant::now() < deadline, "no $connect logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (ws, port, id)
}

async fn post_to(client: &reqwest::Client, relay: &Relay, id: &str, body: String) -> u16 {
    client
        .post(relay.url(&format!("/@connections/{id}")))
        .header("authorization", management_auth())
        .body(body)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

/// Waits (generously) until the relay no longer holds the socket of `client_port`.
async fn released(relay: &Relay, client_port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !holds_connection(relay.pid(), port_of(relay), client_port) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Reads until the socket ends; the close code when a close frame came.
async fn read_to_end(ws: &mut Ws, within: Duration) -> Option<Option<u16>> {
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => break None,
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_closed_once_too_far_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(dir.path(), &["--ws-max-queue-bytes", "262144"]);
    let (mut ws, port, id) = raw_client(&relay).await;
    let client = http();
    let chunk = json!({"type": "pad", "pad": "x".repeat(100 * 1024)}).to_string();
    // The client reads nothing: the kernel's socket buffers fill (a few MB on loopback), then
    // the relay's queue; past 256 KiB queued the connection is closed and the post says 410.
    let mut statuses = Vec::new();
    for _ in 0..400 {
        let status = post_to(&client, &relay, &id, chunk.clone()).await;
        statuses.push(status);
        if status != 200 {
            break;
        }
    }
    assert_eq!(
        statuses.last(),
        Some(&410),
        "a post to a client too far behind is Gone ({} posts of 100 KB accepted)",
        statuses.len()
    );
    assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 200));
    // Its queue and socket are freed without the client reading a byte.
    let got = client
        .get(relay.url(&format!("/@connections/{id}")))
        .header("authorization", management_auth())
        .send()
        .await
        .expect("get");
    assert_eq!(got.status().as_u16(), 410);
    assert!(
        released(&relay, port, WAIT).await,
        "the relay still holds the socket of a client that stopped reading"
    );
    let end = read_to_end(&mut ws, WAIT).await;
    assert!(
        matches!(end, Some(None) | Some(Some(1008))),
        "the socket ends (close 1008 or dropped): {end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_lifetime_limits_close_sockets_whose_client_does_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Queue limits out of the way: only the idle and lifetime limits can close these.
    let relay = start(
        dir.path(),
        &[
            "--ws-idle-timeout",
            "3",
            "--ws-max-lifetime",
            "6",
            "--ws-max-queue-bytes",
            "268435456",
            "--ws-max-lag",
            "3600",
        ],
    );
    let client = http();
    let chunk = json!({"type": "pad", "pad": "x".repeat(100 * 1024)}).to_string();
    let (silent, silent_port, silent_id) = raw_client(&relay).await;
    let (mut busy, busy_port, busy_id) = raw_client(&relay).await;
    // Enough that the writers stall: neither client reads.
    for _ in 0..120 {
        assert_eq!(
            post_to(&client, &relay, &silent_id, chunk.clone()).await,
            200
        );
        assert_eq!(post_to(&client, &relay, &busy_id, chunk.clone()).await, 200);
    }
    // `busy` keeps sending (so it is never idle) but never reads.
    let pinger = tokio::spawn(async move {
        for _ in 0..60 {
            if busy
                .send(Message::text(json!({"action": "ping"}).to_string()))
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        busy
    });
    assert!(
        released(&relay, silent_port, WAIT).await,
        "idle timeout: the relay still holds a socket whose client does not read"
    );
    assert!(
        released(&relay, busy_port, WAIT).await,
        "lifetime limit: the relay still holds a socket whose client does not read"
    );
    drop(silent);
    pinger.abort();
}

/// A subscribed client of `bot` that has had its `connected` and snapshot messages.
async fn subscriber(relay: &Relay, bot: &str) -> WsClient {
    let mut c = WsClient::connect(relay, &token(&[bot], 3600))
        .await
        .expect("connect");
    c.send(json!({"action": "subscribe", "bot_id": bot}));
    let first = c.next(WAIT).await.expect("connected");
    assert_eq!(first["type"], "connected", "{first}");
    let snap = c.next(WAIT).await.expect("snapshot");
    c.resume_from(bot, snap["seq"].as_u64().unwrap_or(0));
    c
}

async fn post_event(relay: &Relay, bot: &str) {
    let body = json!({"event": "bot.status_change", "data": {"bot_id": bot, "status": {"code": "in_call_recording"}}});
    let (status, _, text) =
        post_webhook(&http(), relay, &json_key_headers(), body.to_string()).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_http_connections_are_closed_after_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = RelayOptions::new(dir.path());
    opts.extra_args = vec!["--http-header-timeout".into(), "2".into()];
    opts.max_open_files = Some(256);
    let relay = Relay::start(opts);
    let addr = relay.base.trim_start_matches("http://").to_owned();
    // More idle connections than the relay has file descriptors: the ones it cannot accept
    // yet wait in the listen backlog.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let mut closed = tokio::task::JoinSet::new();
    for mut s in idle {
        closed.spawn(async move {
            let mut buf = [0u8; 64];
            // EOF (or a reset): the relay closed it.
            matches!(
                tokio::time::timeout(Duration::from_secs(120), s.read(&mut buf)).await,
                Ok(Ok(0)) | Ok(Err(_))
            )
        });
    }
    let mut n = 0;
    while let Some(r) = closed.join_next().await {
        assert!(r.expect("task"), "an idle connection was never closed");
        n += 1;
    }
    assert_eq!(n, 300);
    // The relay still takes webhooks and fans them out.
    let bot = format!("fd-{}", std::process::id());
    let mut c = subscriber(&relay, &bot).await;
    post_event(&relay, &bot).await;
    let got = c.events(&bot, 1, WAIT).await;
    assert_eq!(got[0]["bot_id"], bot.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frames_over_128_kb_are_refused_whatever_their_size_in_both_directions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(dir.path(), &[]);
    // Client to relay: 1009 for a frame just over the limit and for one far over it.
    for size in [128 * 1024 + 1, 1024 * 1024, 4 * 1024 * 1024] {
        let (ws, _, _) = raw_client(&relay).await;
        // As a browser does: the frame goes out while the client reads.
        let (mut sink, mut stream) = ws.split();
        let sending = tokio::spawn(async move { sink.send(Message::text("x".repeat(size))).await });
        let end = tokio::time::timeout(WAIT, async {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => continue,
                    _ => break None,
                }
            }
        })
        .await;
        assert_eq!(end.ok(), Some(Some(1009)), "a {size}-byte frame");
        sending.abort();
    }
    // Relay to client: a post over the limit is refused as API Gateway refuses it, in JSON,
    // whatever its size; one at the limit is delivered.
    let (mut ws, _, id) = raw_client(&relay).await;
    let client = http();
    for size in [128 * 1024 + 1, 3 * 1024 * 1024] {
        let sent = client
            .post(relay.url(&format!("/@connections/{id}")))
            .header("authorization", management_auth())
            .body("x".repeat(size))
            .send()
            .await;
        // The relay answers 413 as soon as the limit is passed and closes the connection: a
        // client still writing megabytes may see the close before it reads the answer. That is
        // the refusal too (the frame is never delivered: checked below).
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) if size > 1024 * 1024 && e.is_request() => continue,
            Err(e) => panic!("a {size}-byte post: {e}"),
        };
        assert_eq!(resp.status().as_u16(), 413, "a {size}-byte post");
        assert_eq!(
            resp.headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok()),
            Some("PayloadTooLargeException")
        );
        let body: serde_json::Value = resp.json().await.expect("a JSON body");
        assert!(body["message"].is_string(), "{body}");
    }
    // A new client: the relay answers 413 without reading the rest of the body and closes that
    // connection, which a pooled client could otherwise pick for the next request.
    let at_limit = "y".repeat(128 * 1024);
    assert_eq!(post_to(&http(), &relay, &id, at_limit.clone()).await, 200);
    let got = tokio::time::timeout(WAIT, ws.next()).await.expect("frame");
    assert!(matches!(got, Some(Ok(Message::Text(t))) if t.as_str() == at_limit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_routes_answer_this_machine_only_and_in_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = RelayOptions::new(dir.path());
    opts.bare = true;
    let relay = Relay::start(opts);
    let port = port_of(&relay);
    let client = http();
    let ask = |host: String, origin: Option<String>| {
        let mut req = client
            .post(relay.url("/api/dev/token"))
            .header("host", host)
            .header("content-type", "application/json")
            .body(r#"{"bot_id":"dev-bot"}"#);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        async move {
            let resp = req.send().await.expect("send");
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
            (status, body)
        }
    };
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("LOCALHOST:{port}"),
    ] {
        let (status, body) = ask(host.clone(), None).await;
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body["token"].is_string());
        let (status, _) = ask(host.clone(), Some(format!("http://{host}"))).await;
        assert_eq!(status, 200, "{host} with its own origin");
    }
    for (host, origin) in [
        (format!("evil.example:{port}"), None),
        ("localhost".to_owned(), None),
        (format!("localhost:{}", port.wrapping_add(1)), None),
        (
            format!("localhost:{port}"),
            Some("http://evil.example".to_owned()),
        ),
        (
            format!("localhost:{port}"),
            Some(format!("http://127.0.0.1:{port}")),
        ),
    ] {
        let (status, body) = ask(host.clone(), origin.clone()).await;
        assert_eq!(status, 403, "{host} {origin:?}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let info = client
        .get(relay.url("/api/dev/info"))
        .header("host", "rebound.example")
        .send()
        .await
        .expect("send");
    assert_eq!(info.status().as_u16(), 403);
    // The extractor's own refusals are JSON too.
    for (ct, body) in [
        ("text/plain", "{}"),
        ("application/json", "{not json"),
        ("application/json", "{}"),
    ] {
        let resp = client
            .post(relay.url("/api/dev/test-event"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .expect("send");
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{ct} {body}: {status}");
        let json: serde_json::Value = resp.json().await.expect("a JSON error");
        assert!(json["error"].is_string(), "{json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_idle_and_stalled_websockets_exits_within_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut relay = start(
        dir.path(),
        &["--ws-max-queue-bytes", "268435456", "--ws-max-lag", "3600"],
    );
    let mut reader = WsClient::connect(&relay, &token(&["*"], 3600))
        .await
        .expect("connect");
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(raw_client(&relay).await);
    }
    // One client's writer stalled: it reads nothing and has megabytes queued.
    let client = http();
    let chunk = "x".repeat(100 * 1024);
    let stalled = &idle[0].2;
    for _ in 0..80 {
        assert_eq!(post_to(&client, &relay, stalled, chunk.clone()).await, 200);
    }
    let started = Instant::now();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(relay.pid().to_string())
        .status();
    let closed = reader.next(WAIT).await.expect("close");
    assert_eq!(
        (closed["type"].as_str(), closed["code"].as_u64()),
        (Some("__closed"), Some(1001))
    );
    let status = relay.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "relay did not exit cleanly within 20 s of SIGTERM: {status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(idle);
}

#[test]
fn relay_token_refuses_a_huge_ttl() {
    for ttl in [
        "99999999999999999d",
        "18446744073709551615s",
        "9223372036854775807s",
        "3651d",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["token", "--bot", "b", "--ttl", ttl])
            .env("RELAY_CLIENT_SECRET", CLIENT_SECRET)
            .output()
            .expect("run relay token");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "--ttl {ttl} minted {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(out.stdout.is_empty());
        assert!(stderr.contains("too large"), "--ttl {ttl}: {stderr}");
    }
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["token", "--bot", "b", "--ttl", "3650d"])
        .env("RELAY_CLIENT_SECRET", CLIENT_SECRET)
        .output()
        .expect("run relay token");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compressed_webhook_is_refused_with_415() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(dir.path(), &[]);
    let mut headers = json_key_headers();
    headers.push(("content-encoding", "gzip".to_owned()));
    let (status, body, text) = post_webhook(&http(), &relay, &headers, "{}").await;
    assert_eq!(status, 415, "{text}");
    assert_eq!(
        body,
        json!({"error": "content-encoding gzip is not supported; send the body uncompressed"})
    );
    // Before authentication, as the content type's check.
    let (status, _, _) = post_webhook(
        &http(),
        &relay,
        &[("content-encoding", "gzip".to_owned())],
        "{}",
    )
    .await;
    assert_eq!(status, 415);
}
