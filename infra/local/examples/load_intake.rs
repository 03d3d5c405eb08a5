//! Load generator for the webhook route of a running relay: N concurrent senders over real
//! HTTP (keep-alive), a share of exact redeliveries, per-request latency. Bounded in time and
//! aimed at loopback only. Used by `scripts/bench-intake`.
//!
//! Without `--rate` every sender sends its next request as soon as the last is answered (the
//! most the relay can take). With `--rate R` requests are due at a fixed R per second in all
//! (at most N in flight) and each latency counts from when its request was due, so a stall
//! shows in full in the figures rather than pausing the clock (no coordinated omission).
//!
//! `cargo run --release -p relay --example load_intake -- --url URL --key KEY [--concurrency 64]
//!  [--seconds 10] [--dup-percent 10] [--rate 5000]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

struct Args {
    url: String,
    key: String,
    concurrency: usize,
    seconds: u64,
    dup_percent: u64,
    /// Requests per second in all; 0: as fast as answers come.
    rate: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        key: String::new(),
        concurrency: 64,
        seconds: 10,
        dup_percent: 10,
        rate: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => a.url = val,
            "--key" => a.key = val,
            "--concurrency" => a.concurrency = val.parse().map_err(|_| "bad --concurrency")?,
            "--seconds" => a.seconds = val.parse().map_err(|_| "bad --seconds")?,
            "--dup-percent" => a.dup_percent = val.parse().map_err(|_| "bad --dup-percent")?,
            "--rate" => a.rate = val.parse().map_err(|_| "bad --rate")?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let host_ok = a.url.starts_with("http://127.")
        || a.url.starts_with("http://localhost")
        || a.url.starts_with("http://[::1]");
    if !host_ok {
        return Err("--url must be a loopback address".into());
    }
    if a.key.is_empty() {
        return Err("--key is required".into());
    }
    Ok(a)
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    dup_sent: u64,
    dup_answered: u64,
    errors: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Arc::new(args()?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .timeout(Duration::from_secs(10))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let started = Instant::now();
    // Each run's bodies are its own: without this, a second run against the same relay repeats
    // the first run's bodies byte for byte and measures only the duplicate path.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // With a rate, the senders share one schedule: slot i is due at started + i / rate.
    let slots = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..a.concurrency {
        let (client, a, run) = (client.clone(), a.clone(), format!("{run:x}"));
        let slots = slots.clone();
        tasks.spawn(async move {
            let mut t = Tally::default();
            let mut last_body: Option<String> = None;
            let mut n: u64 = 0;
            loop {
                let due = if a.rate > 0 {
                    let slot = slots.fetch_add(1, Ordering::Relaxed);
                    let due = started + Duration::from_secs_f64(slot as f64 / a.rate as f64);
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    due
                } else {
                    if Instant::now() >= deadline {
                        break;
                    }
                    Instant::now()
                };
                n += 1;
                // Every tenth (by default) delivery repeats the previous one byte for byte.
                let is_dup = last_body.is_some() && (n * 7919 + worker as u64) % 100 < a.dup_percent;
                let body = match (&last_body, is_dup) {
                    (Some(b), true) => b.clone(),
                    _ => json!({
                        "event": "bot.status_change",
                        "data": {
                            "bot_id": format!("load-{}", (worker as u64 * 31 + n) % 200),
                            "status": {"code": "in_call_recording", "created_at": format!("2026-11-29T09:00:{:02}.{n:06}Z", worker % 60)},
                            "worker": worker, "n": n, "run": run,
                        }
                    })
                    .to_string(),
                };
                let resp = client
                    .post(&a.url)
                    .header("content-type", "application/json")
                    .header("x-meeting-baas-api-key", &a.key)
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match resp {
                    Ok(r) if r.status() == 200 => r.text().await.ok(),
                    _ => None,
                };
                t.latencies_us
                    .push(due.elapsed().as_micros().min(u32::MAX as u128) as u32);
                match ok {
                    Some(text) => {
                        t.ok += 1;
                        if is_dup {
                            t.dup_sent += 1;
                        }
                        if text.contains("\"duplicate\":true") {
                            t.dup_answered += 1;
                        }
                    }
                    None => t.errors += 1,
                }
                last_body = Some(body);
            }
            t
        });
    }
    let mut all = Tally::default();
    while let Some(r) = tasks.join_next().await {
        let t = r?;
        all.latencies_us.extend(t.latencies_us);
        all.ok += t.ok;
        all.dup_sent += t.dup_sent;
        all.dup_answered += t.dup_answered;
        all.errors += t.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let v = &all.latencies_us;
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
        }
    };
    println!(
        "{}",
        json!({
            "requests": all.latencies_us.len(),
            "ok": all.ok,
            "errors": all.errors,
            "duplicates_sent": all.dup_sent,
            "duplicates_answered": all.dup_answered,
            "seconds": (elapsed * 100.0).round() / 100.0,
            "per_second": (all.ok as f64 / elapsed).round(),
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": pct(1.0),
            "concurrency": a.concurrency,
            "rate": a.rate,
        })
    );
    if all.errors > 0 || all.dup_answered != all.dup_sent {
        return Err(format!(
            "{} errors; {} duplicates sent, {} answered as duplicates",
            all.errors, all.dup_sent, all.dup_answered
        )
        .into());
    }
    Ok(())
}
