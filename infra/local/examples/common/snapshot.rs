//! What the load and memory examples share: a subscribed client's wait for the `connected`
//! message and the snapshot that follows it.

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Error, Message};

/// Reads until the subscription's snapshot (a `status_update` with no event id) has come after
/// `connected`, within `within`; anything else is an error.
pub async fn until_snapshot<S>(stream: &mut S, within: Duration) -> Result<(), String>
where
    S: Stream<Item = Result<Message, Error>> + Unpin,
{
    let deadline = Instant::now() + within;
    let mut connected = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, stream.next())
            .await
            .map_err(|_| format!("no snapshot in {} s", within.as_secs()))?;
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => return Err(format!("closed while subscribing: {other:?}")),
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match v["type"].as_str() {
            Some("connected") => connected = true,
            Some("status_update") if connected && v["event_id"].is_null() => return Ok(()),
            _ => return Err(format!("unexpected while subscribing: {text}")),
        }
    }
}
