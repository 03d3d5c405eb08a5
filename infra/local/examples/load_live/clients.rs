//! The load's two sides: the WebSocket clients (each checks what it gets) and the webhook
//! posts, and the check of every client's deliveries against what was posted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use super::{Args, BoxError};

pub(crate) fn token(secret: &str, bot: &str) -> Result<String, BoxError> {
    let keys = relay_core::domain::token::TokenKeys::new(secret)?;
    Ok(keys.mint(&relay_core::domain::token::Claims {
        sub: "load-live".into(),
        exp: chrono::Utc::now().timestamp() + 3600,
        bots: vec![bot.to_owned()],
        scope: relay_core::domain::token::Scope::Read,
    })?)
}

/// One event as a client received it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Delivery {
    pub(crate) seq: u64,
    pub(crate) n: u64,
    pub(crate) at: Instant,
}

#[derive(Default, Debug)]
pub(crate) struct ClientReport {
    pub(crate) bot: usize,
    pub(crate) deliveries: Vec<Delivery>,
    /// Anything but the expected messages: errors, closes, undecodable frames.
    pub(crate) unexpected: Vec<String>,
}

/// Connects, subscribes to `bot_id`, waits for `connected` and the snapshot, then tells
/// `ready` and records every event message until `stop`.
pub(crate) async fn client(
    ws_url: String,
    bot: usize,
    bot_id: String,
    ready: Arc<AtomicUsize>,
    received: Arc<Vec<AtomicUsize>>,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> Result<ClientReport, String> {
    let mut report = ClientReport {
        bot,
        ..Default::default()
    };
    let permit = permits.acquire().await.map_err(|e| e.to_string())?;
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(60),
        tokio_tungstenite::connect_async(&ws_url),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| format!("connect: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    sink.send(Message::text(
        json!({"action": "subscribe", "bot_id": bot_id}).to_string(),
    ))
    .await
    .map_err(|e| format!("subscribe: {e}"))?;
    super::snapshot::until_snapshot(&mut stream, Duration::from_secs(120)).await?;
    drop(permit);
    ready.fetch_add(1, Ordering::SeqCst);
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = stop.changed() => break,
        };
        let at = Instant::now();
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => {
                report.unexpected.push(format!("{other:?}"));
                break;
            }
        };
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => {
                report.unexpected.push(text.to_string());
                continue;
            }
        };
        match (
            v["type"].as_str(),
            v["seq"].as_u64(),
            v["data"]["n"].as_u64(),
            v["bot_id"].as_str(),
        ) {
            (Some("status_update"), Some(seq), Some(n), Some(b))
                if !v["event_id"].is_null() && b == bot_id =>
            {
                report.deliveries.push(Delivery { seq, n, at });
                if let Some(c) = received.get(n as usize) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => report.unexpected.push(text.to_string()),
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    Ok(report)
}

pub(crate) struct Post {
    pub(crate) bot: usize,
    pub(crate) sent: Instant,
    pub(crate) acked: Option<Instant>,
    pub(crate) ok: bool,
    pub(crate) duplicate: bool,
}

pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    bot_id: &str,
    n: u64,
) -> (bool, bool) {
    let body = json!({
        "event": "bot.status_change",
        "data": {"bot_id": bot_id, "n": n, "status": {"code": "in_call_recording"}},
    })
    .to_string();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-meeting-baas-api-key", key)
        .body(body)
        .send()
        .await;
    match resp {
        Ok(r) if r.status() == 200 => match r.text().await {
            Ok(t) => (true, t.contains("\"duplicate\":true")),
            Err(_) => (false, false),
        },
        _ => (false, false),
    }
}

/// A few posts for a bot nobody watches, before measuring: opens the keep-alive connections
/// and runs the intake and fan-out paths once, so the first measured event pays no first-use
/// costs (connection set-up, lazily built clients) that a long-running relay would not pay.
pub(crate) async fn warm_up(client: &reqwest::Client, url: &str, key: &str, run: &str) {
    let bot = format!("warmup-{run}");
    for n in 0..5u64 {
        let _ = post(client, url, key, &bot, n).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

pub(crate) struct Clients {
    pub(crate) tasks: tokio::task::JoinSet<Result<ClientReport, String>>,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) connect_seconds: f64,
}

/// Starts `bots.len() × per_bot` clients and waits (bounded) until all are subscribed.
pub(crate) async fn start_clients(
    a: &Args,
    bots: &[String],
    per_bot: usize,
    received: Arc<Vec<AtomicUsize>>,
) -> Result<Clients, BoxError> {
    let ws_base = a.url.replacen("http://", "ws://", 1);
    let ready = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(a.connect_concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for (b, bot_id) in bots.iter().enumerate() {
        let url = format!("{ws_base}/ws?token={}", token(&a.secret, bot_id)?);
        for _ in 0..per_bot {
            tasks.spawn(client(
                url.clone(),
                b,
                bot_id.clone(),
                ready.clone(),
                received.clone(),
                permits.clone(),
                stop_rx.clone(),
            ));
        }
    }
    let total = bots.len() * per_bot;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_print = Instant::now();
    while ready.load(Ordering::SeqCst) < total {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {total} clients subscribed in 300 s",
                ready.load(Ordering::SeqCst)
            )
            .into());
        }
        // A client that failed to connect or subscribe ends its task early: stop at once.
        if let Some(r) = tasks.try_join_next() {
            return Err(format!("a client ended while subscribing: {r:?}").into());
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "load_live: {} of {total} clients subscribed",
                ready.load(Ordering::SeqCst)
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    eprintln!("load_live: {total} clients subscribed in {connect_seconds:.1} s");
    Ok(Clients {
        tasks,
        stop: stop_tx,
        connect_seconds,
    })
}

pub(crate) async fn collect(mut clients: Clients) -> Result<Vec<ClientReport>, BoxError> {
    let _ = clients.stop.send(true);
    let mut reports = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(r) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        clients.tasks.join_next(),
    )
    .await
    .map_err(|_| "clients did not stop within 60 s")?
    {
        reports.push(r?.map_err(|e| format!("client: {e}"))?);
    }
    Ok(reports)
}

/// Every client got every event of its bot exactly once, seqs consecutive from `first_seq` in
/// arrival order, and all clients of a bot agree on which event has which seq. `maybe`: events
/// whose post failed (a timeout, a 503): the store may have kept them all the same (a write
/// that timed out on the client can still land), so they may arrive, but at most once.
pub(crate) fn check(
    reports: &[ClientReport],
    posted_per_bot: &HashMap<usize, Vec<u64>>,
    maybe_per_bot: &HashMap<usize, Vec<u64>>,
    first_seq: u64,
) -> (u64, Vec<String>) {
    let mut problems = Vec::new();
    let note = |problems: &mut Vec<String>, p: String| {
        if problems.len() < 20 {
            problems.push(p);
        }
    };
    let mut complete = 0u64;
    let mut mapping: HashMap<usize, BTreeMap<u64, u64>> = HashMap::new();
    for r in reports {
        let m = mapping.entry(r.bot).or_default();
        for d in &r.deliveries {
            m.entry(d.seq).or_insert(d.n);
        }
    }
    for (i, r) in reports.iter().enumerate() {
        let expected = posted_per_bot.get(&r.bot).cloned().unwrap_or_default();
        let maybe = maybe_per_bot.get(&r.bot).cloned().unwrap_or_default();
        let seqs: Vec<u64> = r.deliveries.iter().map(|d| d.seq).collect();
        let want: Vec<u64> = (first_seq..first_seq + seqs.len() as u64).collect();
        let mut ns: Vec<u64> = r.deliveries.iter().map(|d| d.n).collect();
        ns.sort_unstable();
        let mut ok = true;
        if seqs != want {
            ok = false;
            note(
                &mut problems,
                format!(
                    "client {i} (bot {}): seqs {seqs:?}: not consecutive from {first_seq} in arrival order",
                    r.bot
                ),
            );
        }
        if ns.windows(2).any(|w| w[0] == w[1]) {
            ok = false;
            note(
                &mut problems,
                format!("client {i} (bot {}): an event twice: {ns:?}", r.bot),
            );
        }
        let missing: Vec<u64> = expected
            .iter()
            .filter(|n| ns.binary_search(n).is_err())
            .copied()
            .collect();
        if !missing.is_empty() {
            ok = false;
            note(
                &mut problems,
                format!(
                    "client {i} (bot {}): missing acknowledged events {missing:?} (got {ns:?})",
                    r.bot
                ),
            );
        }
        let foreign: Vec<u64> = ns
            .iter()
            .filter(|n| !expected.contains(n) && !maybe.contains(n))
            .copied()
            .collect();
        if !foreign.is_empty() {
            ok = false;
            note(
                &mut problems,
                format!(
                    "client {i} (bot {}): events never posted for its bot {foreign:?}",
                    r.bot
                ),
            );
        }
        if !r.unexpected.is_empty() {
            ok = false;
            note(
                &mut problems,
                format!(
                    "client {i}: unexpected messages {:?}",
                    &r.unexpected[..r.unexpected.len().min(3)]
                ),
            );
        }
        let m = &mapping[&r.bot];
        for d in &r.deliveries {
            if m.get(&d.seq) != Some(&d.n) {
                ok = false;
                note(
                    &mut problems,
                    format!(
                        "bot {}: seq {} is event {:?} for one client, {} for client {i}",
                        r.bot,
                        d.seq,
                        m.get(&d.seq),
                        d.n
                    ),
                );
            }
        }
        if r.deliveries.len() != m.len() {
            ok = false;
            note(
                &mut problems,
                format!(
                    "client {i} (bot {}): {} events, other clients of its bot saw {}",
                    r.bot,
                    r.deliveries.len(),
                    m.len()
                ),
            );
        }
        if ok {
            complete += 1;
        }
    }
    (complete, problems)
}
