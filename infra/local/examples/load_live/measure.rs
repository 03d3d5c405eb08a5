//! What a run measures besides latency: CPU time of this process and the relay, the machine's
//! load, percentiles, and moto's request counts before and after.

use std::time::Duration;

use serde_json::{Value, json};

/// The machine's load (1-minute load average, and the share of the last 10 s in which some
/// task waited for a CPU), to tell a run on a busy shared machine from a quiet one.
/// User + system CPU seconds a process has used so far (`/proc/PID/stat`, USER_HZ = 100).
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
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
pub(crate) fn cpu_use(
    before: (Option<f64>, Option<f64>),
    server_pid: Option<u32>,
    wall: f64,
) -> Value {
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

pub(crate) fn machine_load() -> Value {
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

pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

pub(crate) fn percentiles(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return json!(null);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    json!({"count": v.len(), "p50_ms": p(0.5), "p90_ms": p(0.9), "p99_ms": p(0.99), "max_ms": p(1.0)})
}

pub(crate) async fn moto_counts(url: &Option<String>) -> Option<Value> {
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
pub(crate) fn delta(before: &Value, after: &Value) -> Value {
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
