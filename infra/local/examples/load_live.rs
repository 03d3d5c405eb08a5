//! Load generator for the live path of a running relay: real WebSocket clients on `/ws`, real
//! webhooks on the webhook route, each event carrying a marker (`data.n`) so that every
//! client's receive time is matched to the time its webhook was posted. One process posts and
//! receives, so both times come from one monotonic clock. Bounded in count and time, aimed at
//! loopback only. Used by `scripts/bench-live`.
//!
//! ```text
//! load_live latency --url URL --key KEY --secret CLIENT_SECRET [--bots 100]
//!     [--clients-per-bot 10] [--rate 200] [--seconds 10] [--events N] [--moto-counts URL]
//!     [--serial-per-bot 1]
//! load_live burst --url URL --key KEY --secret CLIENT_SECRET [--subscribers 10000] [--repeat 3]
//! ```
//!
//! `latency`: `bots × clients-per-bot` clients subscribe (one bot each), then events are posted
//! at `rate` per second, round robin over the bots, for `seconds` (or `events` in all). Reports
//! webhook → WebSocket latency over every delivery and checks that every client got every
//! event of its bot exactly once, in seq order, with the same seq → event mapping as the other
//! clients of that bot. `--moto-counts`: read a moto server's operation counts (see
//! `scripts/moto_server.py`) before the first post and after the last delivery.
//! `--serial-per-bot 1`: a bot's next post waits for its previous one (no two writers of one
//! bot racing for its session).
//!
//! `burst`: `subscribers` clients subscribe to one bot; one event is posted, `repeat` times,
//! and the time until the last client has it is reported.
//!
//! The last line on stdout is one JSON object with the figures; the exit status is non-zero if
//! a delivery was missing, duplicated or out of order, or a post failed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
struct Args {
    mode: String,
    url: String,
    key: String,
    secret: String,
    bots: usize,
    clients_per_bot: usize,
    rate: f64,
    seconds: f64,
    events: Option<usize>,
    subscribers: usize,
    repeat: usize,
    connect_concurrency: usize,
    /// Seconds to wait for the deliveries after the last post.
    drain: u64,
    moto_counts: Option<String>,
    /// Never two posts of one bot in flight at once (no writers racing for a bot's session).
    serial_per_bot: bool,
    /// The relay's pid: its CPU time over the measurement is reported.
    server_pid: Option<u32>,
}

fn loopback(url: &str) -> bool {
    url.starts_with("http://127.")
        || url.starts_with("http://localhost")
        || url.starts_with("http://[::1]")
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or("usage: load_live latency|burst --url URL --key KEY --secret SECRET …")?;
    if mode != "latency" && mode != "burst" {
        return Err(format!("unknown mode {mode}: latency or burst"));
    }
    let mut a = Args {
        mode,
        url: String::new(),
        key: String::new(),
        secret: String::new(),
        bots: 100,
        clients_per_bot: 10,
        rate: 200.0,
        seconds: 10.0,
        events: None,
        subscribers: 10_000,
        repeat: 3,
        connect_concurrency: 128,
        drain: 30,
        moto_counts: None,
        serial_per_bot: false,
        server_pid: None,
    };
    while let Some(flag) = it.next() {
        let val = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |_| format!("bad {flag}");
        match flag.as_str() {
            "--url" => a.url = val.trim_end_matches('/').to_owned(),
            "--key" => a.key = val,
            "--secret" => a.secret = val,
            "--bots" => a.bots = val.parse().map_err(bad)?,
            "--clients-per-bot" => a.clients_per_bot = val.parse().map_err(bad)?,
            "--rate" => a.rate = val.parse().map_err(|_| format!("bad {flag}"))?,
            "--seconds" => a.seconds = val.parse().map_err(|_| format!("bad {flag}"))?,
            "--events" => a.events = Some(val.parse().map_err(bad)?),
            "--subscribers" => a.subscribers = val.parse().map_err(bad)?,
            "--repeat" => a.repeat = val.parse().map_err(bad)?,
            "--connect-concurrency" => a.connect_concurrency = val.parse().map_err(bad)?,
            "--drain" => a.drain = val.parse().map_err(|_| format!("bad {flag}"))?,
            "--moto-counts" => a.moto_counts = Some(val),
            "--server-pid" => a.server_pid = Some(val.parse().map_err(bad)?),
            "--serial-per-bot" => a.serial_per_bot = matches!(val.as_str(), "1" | "true" | "yes"),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !loopback(&a.url) {
        return Err("--url must be a loopback http:// address".into());
    }
    if let Some(m) = &a.moto_counts
        && !loopback(m)
    {
        return Err("--moto-counts must be a loopback http:// address".into());
    }
    if a.key.is_empty() || a.secret.is_empty() {
        return Err("--key and --secret are required".into());
    }
    // Bounds: every loop below is finite, and nothing here is meant for more than this.
    if a.bots == 0 || a.clients_per_bot == 0 || a.bots * a.clients_per_bot > 20_000 {
        return Err("bots × clients-per-bot must be 1..=20000".into());
    }
    if a.subscribers == 0 || a.subscribers > 20_000 || a.repeat == 0 || a.repeat > 100 {
        return Err("subscribers must be 1..=20000 and repeat 1..=100".into());
    }
    let rate_ok = a.rate > 0.0 && a.rate <= 5_000.0;
    let seconds_ok = a.seconds > 0.0 && a.seconds <= 600.0;
    if !rate_ok || !seconds_ok || a.drain > 600 {
        return Err("rate must be in (0, 5000], seconds in (0, 600], drain ≤ 600".into());
    }
    if a.events.is_some_and(|n| n == 0 || n > 1_000_000) {
        return Err("events must be 1..=1000000".into());
    }
    a.connect_concurrency = a.connect_concurrency.clamp(1, 1024);
    Ok(a)
}

fn token(secret: &str, bot: &str) -> Result<String, BoxError> {
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
struct Delivery {
    seq: u64,
    n: u64,
    at: Instant,
}

#[derive(Default, Debug)]
struct ClientReport {
    bot: usize,
    deliveries: Vec<Delivery>,
    /// Anything but the expected messages: errors, closes, undecodable frames.
    unexpected: Vec<String>,
}

/// Connects, subscribes to `bot_id`, waits for `connected` and the snapshot, then tells
/// `ready` and records every event message until `stop`.
async fn client(
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
    let mut seen_connected = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, stream.next())
            .await
            .map_err(|_| "no snapshot in 120 s".to_owned())?;
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => return Err(format!("closed while subscribing: {other:?}")),
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match v["type"].as_str() {
            Some("connected") => seen_connected = true,
            Some("status_update") if seen_connected && v["event_id"].is_null() => break,
            _ => return Err(format!("unexpected while subscribing: {text}")),
        }
    }
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

struct Post {
    bot: usize,
    sent: Instant,
    acked: Option<Instant>,
    ok: bool,
    duplicate: bool,
}

async fn post(
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
async fn warm_up(client: &reqwest::Client, url: &str, key: &str, run: &str) {
    let bot = format!("warmup-{run}");
    for n in 0..5u64 {
        let _ = post(client, url, key, &bot, n).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// The machine's load (1-minute load average, and the share of the last 10 s in which some
/// task waited for a CPU), to tell a run on a busy shared machine from a quiet one.
/// User + system CPU seconds a process has used so far (`/proc/PID/stat`, USER_HZ = 100).
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) end at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds used by the relay and by this process since `before`, over `wall` seconds.
fn cpu_use(before: (Option<f64>, Option<f64>), server_pid: Option<u32>, wall: f64) -> Value {
    let d = |b: Option<f64>, a: Option<f64>| match (b, a) {
        (Some(b), Some(a)) => json!(((a - b) * 100.0).round() / 100.0),
        _ => Value::Null,
    };
    json!({
        "wall_seconds": (wall * 100.0).round() / 100.0,
        "relay_cpu_seconds": d(before.0, server_pid.and_then(|p| cpu_seconds(Some(p)))),
        "load_live_cpu_seconds": d(before.1, cpu_seconds(None)),
    })
}

fn machine_load() -> Value {
    let load = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| {
        s.split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
    });
    let cpu_wait = std::fs::read_to_string("/proc/pressure/cpu")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("some"))
                .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")))
                .and_then(|v| v.parse::<f64>().ok())
        });
    json!({"loadavg_1m": load, "cpu_pressure_avg10_pct": cpu_wait})
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn percentiles(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return json!(null);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    json!({"count": v.len(), "p50_ms": p(0.5), "p90_ms": p(0.9), "p99_ms": p(0.99), "max_ms": p(1.0)})
}

async fn moto_counts(url: &Option<String>) -> Option<Value> {
    let url = url.as_ref()?;
    let resp = reqwest::Client::new()
        .get(format!("{}/_relay/op-counts", url.trim_end_matches('/')))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

/// `after - before`, key by key, for the nested count maps the moto server returns.
fn delta(before: &Value, after: &Value) -> Value {
    match (before, after) {
        (_, Value::Object(a)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in a {
                let d = delta(before.get(k).unwrap_or(&Value::Null), v);
                if d != json!(0) && d != json!({}) {
                    out.insert(k.clone(), d);
                }
            }
            Value::Object(out)
        }
        (b, Value::Number(a)) => json!(a.as_i64().unwrap_or(0) - b.as_i64().unwrap_or(0)),
        _ => Value::Null,
    }
}

struct Clients {
    tasks: tokio::task::JoinSet<Result<ClientReport, String>>,
    stop: watch::Sender<bool>,
    connect_seconds: f64,
}

/// Starts `bots.len() × per_bot` clients and waits (bounded) until all are subscribed.
async fn start_clients(
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

async fn collect(mut clients: Clients) -> Result<Vec<ClientReport>, BoxError> {
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
fn check(
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

async fn latency(a: Args) -> Result<bool, BoxError> {
    let run = format!("{:x}", chrono::Utc::now().timestamp_micros());
    let bots: Vec<String> = (0..a.bots).map(|b| format!("live-{run}-{b}")).collect();
    let events = a
        .events
        .unwrap_or((a.rate * a.seconds).round() as usize)
        .max(1);
    let received = Arc::new((0..events).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    let clients = start_clients(&a, &bots, a.clients_per_bot, received.clone()).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let webhook = format!("{}/api/meeting-bot/webhook", a.url);
    warm_up(&http, &webhook, &a.key, &run).await;
    let before = moto_counts(&a.moto_counts).await;
    let load_before = machine_load();
    let cpu_before = (
        a.server_pid.and_then(|p| cpu_seconds(Some(p))),
        cpu_seconds(None),
    );
    let measured = Instant::now();
    let measure_from = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);

    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = tokio::task::JoinSet::new();
    let bot_locks: Vec<Arc<tokio::sync::Mutex<()>>> = (0..a.bots)
        .map(|_| Arc::new(tokio::sync::Mutex::new(())))
        .collect();
    let posting = Instant::now();
    for n in 0..events {
        ticker.tick().await;
        let (http, webhook, key) = (http.clone(), webhook.clone(), a.key.clone());
        let bot = n % a.bots;
        let bot_id = bots[bot].clone();
        let lock = a.serial_per_bot.then(|| bot_locks[bot].clone());
        posts.spawn(async move {
            let _serial = match &lock {
                Some(l) => Some(l.lock().await),
                None => None,
            };
            let sent = Instant::now();
            let (ok, duplicate) = post(&http, &webhook, &key, &bot_id, n as u64).await;
            (
                n,
                Post {
                    bot,
                    sent,
                    acked: Some(Instant::now()),
                    ok,
                    duplicate,
                },
            )
        });
    }
    let posting_seconds = posting.elapsed().as_secs_f64();
    let mut table: Vec<Option<Post>> = (0..events).map(|_| None).collect();
    while let Some(r) = posts.join_next().await {
        let (n, p) = r?;
        table[n] = Some(p);
    }
    let ok_events = table.iter().flatten().filter(|p| p.ok).count();
    let expected_deliveries = ok_events * a.clients_per_bot;
    let drain_deadline = Instant::now() + Duration::from_secs(a.drain);
    let total = || {
        received
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<usize>()
    };
    while total() < expected_deliveries && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Anything extra (a duplicate) would arrive just after: give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = moto_counts(&a.moto_counts).await;
    let cpu = cpu_use(cpu_before, a.server_pid, measured.elapsed().as_secs_f64());
    let connect_seconds = clients.connect_seconds;
    let reports = collect(clients).await?;

    let posts: Vec<Post> = table
        .into_iter()
        .map(|p| p.ok_or("a post went missing"))
        .collect::<Result<_, _>>()?;
    let failed_posts = posts.iter().filter(|p| !p.ok).count();
    let dup_posts = posts.iter().filter(|p| p.duplicate).count();
    let mut per_bot: HashMap<usize, Vec<u64>> = HashMap::new();
    let mut maybe_per_bot: HashMap<usize, Vec<u64>> = HashMap::new();
    for (n, p) in posts.iter().enumerate() {
        let into = if p.ok {
            &mut per_bot
        } else {
            &mut maybe_per_bot
        };
        into.entry(p.bot).or_default().push(n as u64);
    }
    let (complete, problems) = check(&reports, &per_bot, &maybe_per_bot, 1);
    let mut lat = Vec::new();
    let mut since_ack = Vec::new();
    let mut per_event_last: HashMap<u64, f64> = HashMap::new();
    let mut deliveries = 0usize;
    for r in &reports {
        for d in &r.deliveries {
            deliveries += 1;
            if let Some(p) = posts.get(d.n as usize) {
                let l = ms(d.at.saturating_duration_since(p.sent));
                lat.push(l);
                let e = per_event_last.entry(d.n).or_insert(0.0);
                *e = e.max(l);
                if let Some(acked) = p.acked {
                    since_ack.push(if d.at >= acked {
                        ms(d.at - acked)
                    } else {
                        -ms(acked - d.at)
                    });
                }
            }
        }
    }
    let post_lat: Vec<f64> = posts
        .iter()
        .filter_map(|p| p.acked.map(|a| ms(a - p.sent)))
        .collect();
    let ok = failed_posts == 0
        && dup_posts == 0
        && problems.is_empty()
        && deliveries == expected_deliveries;
    let mut out = json!({
        "mode": "latency",
        "bots": a.bots,
        "clients": a.bots * a.clients_per_bot,
        "clients_per_bot": a.clients_per_bot,
        "connect_subscribe_seconds": (connect_seconds * 100.0).round() / 100.0,
        "events_posted": events,
        "posting_seconds": (posting_seconds * 100.0).round() / 100.0,
        "posts_per_second": (events as f64 / posting_seconds).round(),
        "failed_posts": failed_posts,
        "duplicate_answers": dup_posts,
        "deliveries_expected": expected_deliveries,
        "deliveries": deliveries,
        "clients_complete_in_order_exactly_once": complete,
        "webhook_to_ws": percentiles(lat),
        "webhook_to_last_client_of_event": percentiles(per_event_last.into_values().collect()),
        "ack_to_ws_signed": percentiles(since_ack),
        "post_http": percentiles(post_lat),
        "problems": problems,
        "machine_load": {"before": load_before, "after": machine_load()},
        "cpu": cpu,
        "measure_from": measure_from,
        "ok": ok,
    });
    if let (Some(b), Some(af)) = (&before, &after) {
        out["moto_ops_during_posting"] = delta(b, af);
    }
    println!("{out}");
    Ok(ok)
}

async fn burst(a: Args) -> Result<bool, BoxError> {
    let run = format!("{:x}", chrono::Utc::now().timestamp_micros());
    let bot_id = format!("burst-{run}");
    let received = Arc::new(
        (0..a.repeat)
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let clients = start_clients(
        &a,
        std::slice::from_ref(&bot_id),
        a.subscribers,
        received.clone(),
    )
    .await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let webhook = format!("{}/api/meeting-bot/webhook", a.url);
    warm_up(&http, &webhook, &a.key, &run).await;
    let load_before = machine_load();
    let cpu_before = (
        a.server_pid.and_then(|p| cpu_seconds(Some(p))),
        cpu_seconds(None),
    );
    let measured = Instant::now();
    let measure_from = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut reps = Vec::new();
    let mut sent_at = Vec::new();
    let mut rep_ok = Vec::new();
    let mut all_ok = true;
    for r in 0..a.repeat {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rep_cpu = a.server_pid.and_then(|p| cpu_seconds(Some(p)));
        let sent = Instant::now();
        let (ok, duplicate) = post(&http, &webhook, &a.key, &bot_id, r as u64).await;
        let acked = sent.elapsed();
        sent_at.push(sent);
        rep_ok.push(ok && !duplicate);
        if !ok || duplicate {
            all_ok = false;
            reps.push(json!({"rep": r, "post_ok": ok, "duplicate": duplicate}));
            continue;
        }
        let deadline = sent + Duration::from_secs(a.drain);
        while received[r].load(Ordering::Relaxed) < a.subscribers && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let got = received[r].load(Ordering::Relaxed);
        let relay_cpu_ms = match (rep_cpu, a.server_pid.and_then(|p| cpu_seconds(Some(p)))) {
            (Some(b), Some(a)) => json!(((a - b) * 1000.0).round()),
            _ => Value::Null,
        };
        reps.push(json!({"rep": r, "post_http_ms": ms(acked), "clients_with_it": got, "poll_ms": ms(sent.elapsed()), "relay_cpu_ms": relay_cpu_ms}));
        if got < a.subscribers {
            all_ok = false;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connect_seconds = clients.connect_seconds;
    let reports = collect(clients).await?;
    let (acked, maybe): (Vec<u64>, Vec<u64>) =
        (0..a.repeat as u64).partition(|r| rep_ok[*r as usize]);
    let posted = HashMap::from([(0usize, acked)]);
    let maybe = HashMap::from([(0usize, maybe)]);
    let (complete, problems) = check(&reports, &posted, &maybe, 1);
    // Exact times, from each client's own receive instant.
    for (r, rep) in reps.iter_mut().enumerate() {
        let Some(sent) = sent_at.get(r) else { continue };
        let lat: Vec<f64> = reports
            .iter()
            .flat_map(|c| c.deliveries.iter())
            .filter(|d| d.n == r as u64)
            .map(|d| ms(d.at.saturating_duration_since(*sent)))
            .collect();
        rep["to_last_client_ms"] = json!(lat.iter().cloned().fold(0.0f64, f64::max));
        rep["to_first_client_ms"] = json!(lat.iter().cloned().fold(f64::INFINITY, f64::min));
        rep["latency"] = percentiles(lat);
    }
    let ok = all_ok && problems.is_empty();
    println!(
        "{}",
        json!({
            "mode": "burst",
            "subscribers": a.subscribers,
            "connect_subscribe_seconds": (connect_seconds * 100.0).round() / 100.0,
            "reps": reps,
            "clients_complete_in_order_exactly_once": complete,
            "problems": problems,
            "machine_load": {"before": load_before, "after": machine_load()},
            "cpu": cpu_use(cpu_before, a.server_pid, measured.elapsed().as_secs_f64()),
            "measure_from": measure_from,
            "ok": ok,
        })
    );
    Ok(ok)
}

fn main() -> Result<(), BoxError> {
    let a = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ok = rt.block_on(async move {
        match a.mode.as_str() {
            "burst" => burst(a).await,
            _ => latency(a).await,
        }
    })?;
    // Dropping the runtime waits for nothing that is still running: every task has ended.
    if !ok {
        return Err("some deliveries were missing, duplicated or out of order, or a post failed (see the JSON)".into());
    }
    Ok(())
}
