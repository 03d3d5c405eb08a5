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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod clients;
mod measure;
#[path = "../common/snapshot.rs"]
mod snapshot;

use clients::*;
use measure::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Args {
    pub(crate) mode: String,
    pub(crate) url: String,
    pub(crate) key: String,
    pub(crate) secret: String,
    pub(crate) bots: usize,
    pub(crate) clients_per_bot: usize,
    pub(crate) rate: f64,
    pub(crate) seconds: f64,
    pub(crate) events: Option<usize>,
    pub(crate) subscribers: usize,
    pub(crate) repeat: usize,
    pub(crate) connect_concurrency: usize,
    /// Seconds to wait for the deliveries after the last post.
    pub(crate) drain: u64,
    pub(crate) moto_counts: Option<String>,
    /// Never two posts of one bot in flight at once (no writers racing for a bot's session).
    pub(crate) serial_per_bot: bool,
    /// The relay's pid: its CPU time over the measurement is reported.
    pub(crate) server_pid: Option<u32>,
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
