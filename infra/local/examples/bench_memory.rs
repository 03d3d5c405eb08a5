//! Memory and descriptor benchmark of a running `relay serve` (used by `scripts/bench-memory`):
//! real WebSocket clients on `/ws` (a client token each, a `subscribe` frame, the `connected`
//! message and the snapshot awaited), the relay's resident memory (`VmRSS`, `VmHWM`) and open
//! descriptors (`/proc/PID/fd`) read at each phase. Loopback only.
//!
//! ```text
//! bench_memory idle --url URL --secret CLIENT_SECRET --pid PID [--clients 10000] [--bots 100]
//! bench_memory slow --url URL --key API_KEY --secret CLIENT_SECRET --pid PID [--clients 100]
//!     [--posts 200] [--size 100000] [--wait 60]
//! ```
//!
//! `idle`: `clients` clients subscribe (spread over `bots` bots) and then only wait; figures
//! before, with all of them subscribed, and after they have all gone.
//! `slow`: `clients` clients subscribe to one bot and then never read; `posts` webhooks of about
//! `size` bytes each are posted to that bot. The relay must close them as too far behind (1008)
//! and keep its memory bounded: figures before, the peak while posting (sampled every 100 ms),
//! once the relay has let go of the sockets; then each client reads what reached it and reports
//! how its connection ended.
//!
//! The last line on stdout is one JSON object with the figures.

#[path = "common/snapshot.rs"]
mod snapshot;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Args {
    mode: String,
    url: String,
    key: String,
    secret: String,
    pid: u32,
    clients: usize,
    bots: usize,
    posts: usize,
    size: usize,
    wait: u64,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or("usage: bench_memory idle|slow --url URL …")?;
    if mode != "idle" && mode != "slow" {
        return Err(format!("unknown mode {mode}: idle or slow"));
    }
    let mut a = Args {
        clients: if mode == "idle" { 10_000 } else { 100 },
        mode,
        url: String::new(),
        key: String::new(),
        secret: String::new(),
        pid: 0,
        bots: 100,
        posts: 200,
        size: 100_000,
        wait: 60,
    };
    while let Some(flag) = it.next() {
        let val = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: std::num::ParseIntError| format!("{flag}: {e}");
        match flag.as_str() {
            "--url" => a.url = val,
            "--key" => a.key = val,
            "--secret" => a.secret = val,
            "--pid" => a.pid = val.parse().map_err(bad)?,
            "--clients" => a.clients = val.parse().map_err(bad)?,
            "--bots" => a.bots = val.parse::<usize>().map_err(bad)?.max(1),
            "--posts" => a.posts = val.parse().map_err(bad)?,
            "--size" => a.size = val.parse().map_err(bad)?,
            "--wait" => a.wait = val.parse().map_err(bad)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    // Aimed at this machine's relay only.
    if !(a.url.starts_with("http://127.") || a.url.starts_with("http://localhost")) {
        return Err(format!("--url {} is not a loopback address", a.url));
    }
    if a.secret.is_empty() || a.pid == 0 {
        return Err("--secret and --pid are required".into());
    }
    if a.mode == "slow" && a.key.is_empty() {
        return Err("slow needs --key (the relay's MEETINGBAAS_API_KEY)".into());
    }
    Ok(a)
}

/// The relay's resident memory now and at its peak (kB), and its open descriptors.
#[derive(Clone, Copy, Default)]
struct Sample {
    rss_kb: u64,
    hwm_kb: u64,
    fds: u64,
}

fn sample(pid: u32) -> Result<Sample, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Ok(Sample {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64,
    })
}

fn mb(kb: u64) -> f64 {
    (kb as f64 / 1024.0 * 10.0).round() / 10.0
}

fn figures(s: Sample) -> Value {
    json!({"rss_mb": mb(s.rss_kb), "hwm_mb": mb(s.hwm_kb), "fds": s.fds})
}

fn token(secret: &str, bot: &str) -> Result<String, BoxError> {
    let keys = relay_core::domain::token::TokenKeys::new(secret)?;
    Ok(keys.mint(&relay_core::domain::token::Claims {
        sub: "bench-memory".into(),
        exp: chrono::Utc::now().timestamp() + 3600,
        bots: vec![bot.to_owned()],
        scope: relay_core::domain::token::Scope::Read,
    })?)
}

/// Connects, subscribes to `bot` and waits for `connected` and the snapshot: a client as the
/// browser module is one, before its first event.
async fn subscribe(url: &str, bot: &str, permits: &Semaphore) -> Result<Ws, String> {
    let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(60),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| format!("connect: {e}"))?;
    ws.send(Message::text(
        json!({"action": "subscribe", "bot_id": bot}).to_string(),
    ))
    .await
    .map_err(|e| format!("subscribe: {e}"))?;
    snapshot::until_snapshot(&mut ws, Duration::from_secs(60)).await?;
    Ok(ws)
}

/// `count` subscribed clients, `bot_of(i)` the bot of client i.
async fn open_clients(
    a: &Args,
    count: usize,
    bot_of: impl Fn(usize) -> String,
) -> Result<(Vec<Ws>, f64), BoxError> {
    let ws_base = a.url.replacen("http://", "ws://", 1);
    let permits = Arc::new(Semaphore::new(200));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut urls: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..count {
        let bot = bot_of(i);
        let url = match urls.get(&bot) {
            Some(u) => u.clone(),
            None => {
                let u = format!("{ws_base}/ws?token={}", token(&a.secret, &bot)?);
                urls.insert(bot.clone(), u.clone());
                u
            }
        };
        let permits = permits.clone();
        tasks.spawn(async move { subscribe(&url, &bot, &permits).await });
    }
    let mut clients = Vec::with_capacity(count);
    while let Some(r) = tasks.join_next().await {
        clients.push(r?.map_err(|e| format!("a client: {e}"))?);
        if clients.len() % 2000 == 0 {
            eprintln!("bench_memory: {} of {count} subscribed", clients.len());
        }
    }
    Ok((clients, started.elapsed().as_secs_f64()))
}

/// Three samples a second apart, the median of each figure (the relay settles after a burst).
async fn settled(pid: u32) -> Result<Sample, BoxError> {
    let mut s = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.push(sample(pid)?);
    }
    let med = |f: fn(&Sample) -> u64| {
        let mut v: Vec<u64> = s.iter().map(f).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    Ok(Sample {
        rss_kb: med(|x| x.rss_kb),
        hwm_kb: med(|x| x.hwm_kb),
        fds: med(|x| x.fds),
    })
}

async fn idle(a: &Args) -> Result<Value, BoxError> {
    let before = settled(a.pid).await?;
    let (clients, connect_s) =
        open_clients(a, a.clients, |i| format!("idle-bot-{}", i % a.bots)).await?;
    let with = settled(a.pid).await?;
    let n = clients.len();
    let mut closing = tokio::task::JoinSet::new();
    for mut ws in clients {
        closing.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), ws.close(None)).await;
        });
    }
    while closing.join_next().await.is_some() {}
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = settled(a.pid).await?;
    Ok(json!({
        "mode": "idle",
        "clients": n,
        "bots": a.bots,
        "connect_seconds": (connect_s * 10.0).round() / 10.0,
        "before": figures(before),
        "subscribed": figures(with),
        "after_close": figures(after),
        "per_client_kb": ((with.rss_kb.saturating_sub(before.rss_kb)) as f64 / n.max(1) as f64 * 10.0).round() / 10.0,
    }))
}

/// Where and how to post: the webhook route's URL, the API key, the padding of each body.
#[derive(Clone)]
struct Poster {
    url: String,
    key: String,
    size: usize,
}

async fn post(client: &reqwest::Client, p: &Poster, bot: &str, n: usize) -> bool {
    let body = json!({
        "event": "bot.status_change",
        "data": {
            "bot_id": bot,
            "n": n,
            "status": {"code": "in_call_recording", "created_at": chrono::Utc::now().to_rfc3339()},
            "pad": "x".repeat(p.size),
        },
    })
    .to_string();
    matches!(
        client
            .post(&p.url)
            .header("content-type", "application/json")
            .header("x-meeting-baas-api-key", &p.key)
            .body(body)
            .send()
            .await,
        Ok(r) if r.status() == 200
    )
}

/// How one non-reading client's connection ended, once it read again.
async fn ending(mut ws: Ws) -> (String, u64) {
    let mut events = 0u64;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => events += 1,
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                return (format!("close {}", u16::from(f.code)), events);
            }
            Ok(Some(Ok(Message::Close(None)))) => return ("close, no code".into(), events),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return (format!("dropped ({e})"), events),
            Ok(None) => return ("dropped (end of stream)".into(), events),
            Err(_) => return ("still open".into(), events),
        }
    }
}

async fn slow(a: &Args) -> Result<Value, BoxError> {
    let bot = "slow-bench-bot";
    let http = reqwest::Client::new();
    let poster = Poster {
        url: format!("{}/api/meeting-bot/webhook", a.url),
        key: a.key.clone(),
        size: a.size,
    };
    // One post first: the intake and fan-out paths are warm before the baseline.
    let _ = post(&http, &poster, "slow-bench-warmup", 0).await;
    let before = settled(a.pid).await?;
    let (clients, _) = open_clients(a, a.clients, |_| bot.to_owned()).await?;
    // From here on the clients are never polled, so nothing they are sent is read.
    let subscribed = settled(a.pid).await?;

    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), a.pid);
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(s) = sample(pid) {
                    peak.fetch_max(s.rss_kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(4));
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..a.posts {
        let (http, permits, poster) = (http.clone(), permits.clone(), poster.clone());
        posts.spawn(async move {
            let _p = permits.acquire().await;
            post(&http, &poster, bot, n).await
        });
    }
    let mut ok = 0usize;
    while let Some(r) = posts.join_next().await {
        ok += usize::from(r.unwrap_or(false));
    }
    let posting_s = started.elapsed().as_secs_f64();
    let at_last_post = sample(a.pid)?;

    // The relay lets go of a socket it closed: wait (bounded) until its descriptors are back
    // to what they were before the clients came (give or take this process's few pooled HTTP
    // connections and the fan-out's).
    let deadline = Instant::now() + Duration::from_secs(a.wait);
    let mut released_after = None;
    while Instant::now() < deadline {
        if sample(a.pid)?.fds <= before.fds + 8 {
            released_after = Some(started.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let after = settled(a.pid).await?;

    let mut endings = tokio::task::JoinSet::new();
    for ws in clients {
        endings.spawn(ending(ws));
    }
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    let mut read = Vec::new();
    while let Some(r) = endings.join_next().await {
        let (how, events) = r?;
        *ends.entry(how).or_default() += 1;
        read.push(events);
    }
    read.sort_unstable();
    let policy = u16::from(CloseCode::Policy);
    Ok(json!({
        "mode": "slow",
        "clients": a.clients,
        "posts": a.posts,
        "posts_ok": ok,
        "post_bytes": a.size,
        "posting_seconds": (posting_s * 10.0).round() / 10.0,
        "released_seconds": released_after.map(|s| (s * 10.0).round() / 10.0),
        "before": figures(before),
        "subscribed": figures(subscribed),
        "at_last_post": figures(at_last_post),
        "peak_rss_mb": mb(peak.load(Ordering::Relaxed)),
        "after_release": figures(after),
        "client_endings": ends,
        "closed_1008": ends.get(&format!("close {policy}")).copied().unwrap_or(0),
        "events_read_per_client": {"min": read.first(), "median": read.get(read.len() / 2), "max": read.last()},
    }))
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_memory: {e}");
            std::process::exit(2);
        }
    };
    let out = if a.mode == "idle" {
        idle(&a).await
    } else {
        slow(&a).await
    };
    match out {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("bench_memory: {e}");
            std::process::exit(1);
        }
    }
}
