//! The message feed: ONE generator per instance makes each message, encodes it once as a
//! complete SSE frame in a shared `Bytes`, and publishes it on a `watch` channel. A connection
//! only ever sees the newest frame: a client slower than the rate skips messages instead of
//! queueing them, and sees the skip as a gap in `seq` (the SSE `id`).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::SeedableRng;
use rand::distr::{Alphanumeric, SampleString};
use rand::rngs::SmallRng;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One encoded message, shared by every connection.
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: u64,
    pub bytes: Bytes,
}

#[derive(Serialize)]
struct Message<'a> {
    host: &'a str,
    timestamp: String,
    seq: u64,
    message: &'a str,
}

/// Starts the generator; it stops when `shutdown` fires.
pub fn start(
    host: String,
    interval: Duration,
    message_bytes: usize,
    shutdown: CancellationToken,
) -> watch::Receiver<Option<Frame>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut rng = SmallRng::from_os_rng();
        let mut ticks = (!interval.is_zero()).then(|| {
            let mut ticks = tokio::time::interval(interval);
            // A late tick is skipped, not caught up: the rate is a ceiling.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            ticks
        });
        let mut payload = String::with_capacity(message_bytes);
        for seq in 1.. {
            match &mut ticks {
                Some(ticks) => tokio::select! {
                    _ = ticks.tick() => {}
                    () = shutdown.cancelled() => return,
                },
                // Unthrottled (interval 0), for measuring the fan-out ceiling.
                None => {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            }
            payload.clear();
            // Alphanumeric: random data that JSON carries without escaping.
            Alphanumeric.append_string(&mut rng, &mut payload, message_bytes);
            let message = Message {
                host: &host,
                timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                seq,
                message: &payload,
            };
            let bytes = encode(seq, &message);
            if tx.send(Some(Frame { seq, bytes })).is_err() {
                return;
            }
        }
    });
    rx
}

fn encode(seq: u64, message: &Message<'_>) -> Bytes {
    let mut frame = Vec::with_capacity(message.message.len() + 160);
    frame.extend_from_slice(format!("id: {seq}\ndata: ").as_bytes());
    // Serialising a struct of strings and integers cannot fail.
    let _ = serde_json::to_writer(&mut frame, message);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// A named event that ends a stream: `lock-lost`, `unbound`, `shutdown`.
pub fn control(event: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_complete_sse_events_of_the_configured_size() {
        let shutdown = CancellationToken::new();
        let mut rx = start("pod-1".into(), Duration::from_millis(10), 1000, shutdown.clone());
        rx.changed().await.unwrap();
        let frame = rx.borrow_and_update().clone().unwrap();
        let text = std::str::from_utf8(&frame.bytes).unwrap();
        assert!(text.starts_with(&format!("id: {}\ndata: {{", frame.seq)), "{text:.80}");
        assert!(text.ends_with("}\n\n"));
        let json: serde_json::Value =
            serde_json::from_str(text.lines().nth(1).unwrap().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(json["host"], "pod-1");
        assert_eq!(json["seq"], frame.seq);
        assert_eq!(json["message"].as_str().unwrap().len(), 1000);
        shutdown.cancel();
    }
}
