//! Realistic payload generators for tests, benchmarks and load scripts. Deterministic (seeded),
//! so a failing size or timing can be reproduced.

use serde_json::{Value, json};

const VOCAB: &[&str] = &[
    "the", "meeting", "we", "should", "ship", "relay", "on", "friday", "customer", "asked",
    "about", "webhooks", "latency", "is", "fine", "but", "retries", "need", "work", "okay",
    "let's", "move", "to", "next", "item", "budget", "review", "numbers", "quarter", "thanks",
    "everyone", "I", "think", "that", "makes", "sense", "can", "you", "share", "screen",
];
const SPEAKERS: &[&str] = &[
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Edsger Dijkstra",
];

/// Small, fast, seedable generator (xorshift64*); good enough for fake speech.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Transcript segments of `minutes` of talk at ~160 words a minute, with word timings.
fn segments(minutes: u32, seed: u64) -> Vec<Value> {
    let mut rng = Rng(seed | 1);
    let end = f64::from(minutes) * 60.0;
    let mut t = 0.5_f64;
    let mut out = Vec::new();
    while t < end {
        let speaker = SPEAKERS[rng.below(SPEAKERS.len())];
        let start = t;
        let n = 5 + rng.below(40);
        let mut words = Vec::with_capacity(n);
        for _ in 0..n {
            let dur = 0.15 + rng.unit() * 0.35;
            words.push(json!({
                "start": (t * 1000.0).round() / 1000.0,
                "end": ((t + dur) * 1000.0).round() / 1000.0,
                "word": VOCAB[rng.below(VOCAB.len())],
            }));
            t += dur + rng.unit() * 0.08;
        }
        out.push(json!({
            "speaker": speaker,
            "offset": (start * 1000.0).round() / 1000.0,
            "start_time": (start * 1000.0).round() / 1000.0,
            "end_time": (t * 1000.0).round() / 1000.0,
            "words": words,
        }));
        t += 0.3 + rng.unit();
    }
    out
}

/// MeetingBaaS v1 `complete` for a meeting of `minutes` (an hour is ~0.5 MB).
pub fn v1_complete(bot_id: &str, minutes: u32, seed: u64) -> String {
    json!({
        "event": "complete",
        "data": {
            "bot_id": bot_id,
            "mp4": format!("https://bots-videos.s3.amazonaws.com/{bot_id}.mp4?X-Amz-Expires=14400&X-Amz-Signature=0f3a"),
            "audio": format!("https://bots-videos.s3.amazonaws.com/{bot_id}.wav?X-Amz-Expires=14400"),
            "speakers": SPEAKERS,
            "transcript": segments(minutes, seed),
            "event_uuid": null,
            "extra": {"customer": "acme", "ticket": 42},
        }
    })
    .to_string()
}

/// MeetingBaaS v2 `bot.completed` for a meeting of `minutes`: the transcript appears as raw
/// transcription, transcription and diarization, so an hour is ~1.9 MB.
pub fn v2_completed(bot_id: &str, minutes: u32, seed: u64) -> String {
    let segs = segments(minutes, seed);
    // Providers' raw output is wordier: confidence, punctuation, speaker and language per word.
    let raw: Vec<Value> = segs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let words: Vec<Value> = s["words"]
                .as_array()
                .map(|ws| {
                    ws.iter()
                        .map(|w| {
                            json!({
                                "word": w["word"], "punctuated_word": w["word"], "start": w["start"],
                                "end": w["end"], "confidence": 0.9 + (i % 10) as f64 / 100.0,
                                "speaker": i % SPEAKERS.len(), "speaker_confidence": 0.87, "language": "en",
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({"id": i, "channel": 0, "speaker": s["speaker"], "start": s["start_time"], "end": s["end_time"], "words": words})
        })
        .collect();
    let diarization: Vec<Value> = segs
        .iter()
        .map(|s| json!({"speaker": s["speaker"], "start": s["start_time"], "end": s["end_time"]}))
        .collect();
    json!({
        "event": "bot.completed",
        "data": {
            "bot_id": bot_id,
            "event_id": null,
            "participants": SPEAKERS.iter().enumerate().map(|(i, n)| json!({"name": n, "id": i})).collect::<Vec<_>>(),
            "speakers": SPEAKERS.iter().enumerate().map(|(i, n)| json!({"name": n, "id": i, "display_name": n})).collect::<Vec<_>>(),
            "duration_seconds": minutes * 60,
            "joined_at": "2026-11-29T09:00:00Z",
            "exited_at": "2026-11-29T10:00:00Z",
            "data_deleted": false,
            "video": format!("https://cdn.meetingbaas.com/{bot_id}/video.mp4"),
            "audio": format!("https://cdn.meetingbaas.com/{bot_id}/audio.flac"),
            "diarization": diarization,
            "raw_transcription": {"utterances": raw, "metadata": {"audio_duration": minutes * 60, "number_of_distinct_channels": 1}},
            "transcription": segs,
            "transcription_provider": "gladia",
            "transcription_ids": ["tr_1"],
            "sent_at": "2026-11-29T10:00:05Z",
        },
        "extra": {"customer": "acme"},
    })
    .to_string()
}

/// A v1 `complete` of at least `bytes` bytes (and not much more).
pub fn v1_complete_of_size(bot_id: &str, bytes: usize, seed: u64) -> String {
    let per_hour = v1_complete(bot_id, 60, seed).len().max(1);
    let mut minutes = (60 * bytes).div_ceil(per_hour) as u32;
    loop {
        let body = v1_complete(bot_id, minutes, seed);
        if body.len() >= bytes {
            return body;
        }
        minutes += minutes / 20 + 1;
    }
}

/// A v1 `bot.status_change`, the most common delivery.
pub fn v1_status_change(bot_id: &str, code: &str, created_at: &str) -> String {
    json!({
        "event": "bot.status_change",
        "data": {"bot_id": bot_id, "status": {"code": code, "created_at": created_at}}
    })
    .to_string()
}

/// The same JSON with every object's keys in reverse order: senders do not sort keys (ours
/// are generated through a sorted map), and the canonical form must then reorder them.
pub fn keys_reversed(text: &str) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                out.push('{');
                for (i, (k, v)) in map.iter().rev().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(k.as_str()).to_string());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(&serde_json::from_str(text).unwrap_or(Value::Null), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_is_realistic_and_deterministic() {
        let a = v1_complete("b", 60, 7);
        assert_eq!(a, v1_complete("b", 60, 7));
        let v: Value = serde_json::from_str(&a).unwrap();
        let words: usize = v["data"]["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["words"].as_array().unwrap().len())
            .sum();
        // 120–200 words a minute is how people talk in meetings.
        assert!((120 * 60..200 * 60).contains(&words), "{words} words");
        let v2 = v2_completed("b", 60, 7).len();
        assert!(v2 > 1_500_000, "{v2} bytes");
        assert!(v1_complete_of_size("b", 5_000_000, 1).len() >= 5_000_000);
    }
}
