//! The message feed: ONE generator per instance makes each message, encodes it once as a
//! complete SSE frame in a shared `Bytes`, and publishes it on a `watch` channel. A connection
//! only ever sees the newest frame: a client slower than the rate skips messages instead of
//! queueing them, and sees the skip as a gap in `seq` (the SSE `id`).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use kubescaler_sse::message;
use rand::distr::{Alphanumeric, SampleString};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One encoded message, shared by every connection.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub seq: u64,
    pub bytes: Bytes,
}

/// Random data is drawn once into a pool of this size; each message copies a slice of it from
/// a random offset. Drawing 25,000 fresh random characters per message cost more CPU than
/// sending the message to a thousand clients.
const POOL_BYTES: usize = 1 << 20;

/// Starts the generator; it stops when `shutdown` fires.
pub(crate) fn start(
    host: String,
    interval: Duration,
    message_bytes: usize,
    shutdown: CancellationToken,
) -> watch::Receiver<Option<Frame>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut rng = SmallRng::from_os_rng();
        // Alphanumeric: random data that JSON carries without escaping.
        let pool = Alphanumeric.sample_string(&mut rng, POOL_BYTES.max(message_bytes * 2));
        // The host is the only configured text in a message: escaped once, here.
        let host = serde_json::to_string(&host).unwrap_or_else(|_| "\"\"".into());
        let mut ticks = (!interval.is_zero()).then(|| {
            let mut ticks = tokio::time::interval(interval);
            // A late tick is skipped, not caught up: the rate is a ceiling.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            ticks
        });
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
            let offset = rng.random_range(0..=pool.len() - message_bytes);
            let text = &pool[offset..offset + message_bytes];
            let timestamp = humantime::format_rfc3339_millis(SystemTime::now());
            let bytes = Bytes::from(message::encode(seq, &host, &timestamp.to_string(), text));
            if tx.send(Some(Frame { seq, bytes })).is_err() {
                return;
            }
        }
    });
    rx
}

/// A named event that ends a stream: `lock-lost`, `unbound`, `shutdown`.
pub(crate) fn control(event: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(kubescaler_sse::event(event, data, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_complete_sse_events_of_the_configured_size() {
        let shutdown = CancellationToken::new();
        let mut rx = start("pod \"1\"".into(), Duration::from_millis(10), 1000, shutdown.clone());
        rx.changed().await.unwrap();
        let frame = rx.borrow_and_update().clone().unwrap();
        let text = std::str::from_utf8(&frame.bytes).unwrap();
        assert!(text.starts_with(&format!("id: {}\ndata: {{", frame.seq)), "{text:.80}");
        assert!(text.ends_with("}\n\n"));
        let json: serde_json::Value =
            serde_json::from_str(text.lines().nth(1).unwrap().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(json[message::HOST], "pod \"1\"", "the host is escaped");
        assert_eq!(json[message::SEQ], frame.seq);
        assert_eq!(json[message::MESSAGE].as_str().unwrap().len(), 1000);
        shutdown.cancel();
    }
}
