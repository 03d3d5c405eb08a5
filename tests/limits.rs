//! What a client can cost `relay serve` is bounded (CONTRACT §7): the per-connection outbound
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
