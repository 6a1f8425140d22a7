//! One stream as a browser's `EventSource` would hold it: it comes back after a `rebalance`
//! or `shutdown`, retries a 503 that says when, and counts everything it meets.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kubescaler_core::retry;
use kubescaler_sse::{Event, message};

use crate::counters::{Counters, Move, Why, add};

/// Time to open a connection through the public URL: an Ingress answers within milliseconds;
/// five seconds tells a wrong URL from a slow network.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// When a stream ended by `rebalance` or `shutdown` named no time to come back: what an
/// EventSource would wait after stream's first `retry:`.
const DEFAULT_RECONNECT: Duration = Duration::from_millis(500);

/// A client for streams from `source` (or from where the system chooses). Each stream holds
/// its connection for its whole life, so the client keeps to what that needs: HTTP/1.1 (no
/// HTTP/2 state per connection) and no pool, since a connection is never reused.
pub fn client(source: Option<IpAddr>) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .http1_only()
        .pool_max_idle_per_host(0)
        .local_address(source)
        .build()?)
}

/// How a stream ended, for whoever holds the slot it was in.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Refused with 409 on a fresh open: another stream holds the pair.
    Locked,
    /// Anything else: an error, a final event that does not send it elsewhere, the end of the
    /// body.
    Over,
}

/// A stream on its way to another instance: where it was, why it left, since when.
#[derive(Debug)]
struct Leaving {
    from: String,
    why: Why,
    since: Instant,
}

/// An open stream as the counters see it; dropping it (the stream ended, or was dropped by
/// churn or by the end of the run) counts it closed.
struct Held<'a> {
    counters: &'a Counters,
    host: Option<String>,
}

impl<'a> Held<'a> {
    fn new(counters: &'a Counters) -> Self {
        add(&counters.opened);
        add(&counters.open);
        Held { counters, host: None }
    }

    fn served_by(&mut self, host: String) {
        self.counters.host_opened(&host);
        self.host = Some(host);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(host) = &self.host {
            self.counters.host_closed(host);
        }
    }
}

/// How one connection of a stream ended.
#[derive(Debug)]
struct Ended {
    /// The final event's name, if the service sent one.
    event: Option<String>,
    /// The instance that served it, once its first message arrived.
    host: Option<String>,
    /// When to come back, as the final event said (`reconnect_after_ms`, or its `retry:`).
    retry: Option<Duration>,
}

/// What a refusal says about trying again: `retry_after_ms` of the JSON answer, or its
/// `Retry-After` header.
async fn retry_after(response: reqwest::Response) -> Option<Duration> {
    // Read before the body, which takes the response.
    let header =
        response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    retry::retry_after(body[retry::RETRY_AFTER_MS].as_u64(), header.as_deref())
}

/// One stream, until it ends or its future is dropped. It comes back after a `rebalance` or
/// `shutdown`, and retries a 503 that says when; a 409 ends it, unless it meets one coming
/// back (counted: the service releases a moved stream's lock before telling it to go).
pub async fn stream(http: &reqwest::Client, url: &str, counters: &Counters, read_rate: Option<u64>) -> End {
    let mut leaving: Option<Leaving> = None;
    loop {
        let requested = Instant::now();
        // It reads refusals as statuses; a client that takes only SSE gets them as events.
        let response =
            match http.get(url).header("accept", "text/event-stream, application/json").send().await {
                Ok(r) => r,
                Err(_) => {
                    add(&counters.errors);
                    return End::Over;
                }
            };
        let status = response.status().as_u16();
        if status != 200 {
            let retry = match status {
                409 if leaving.is_none() => {
                    add(&counters.conflicts);
                    return End::Locked;
                }
                409 => {
                    add(&counters.conflicts_on_return);
                    retry_after(response).await
                }
                503 => retry_after(response).await.inspect(|_| add(&counters.retried)),
                _ => None,
            };
            let Some(wait) = retry else {
                add(&counters.errors);
                return End::Over;
            };
            tokio::time::sleep(wait).await;
            continue;
        }
        let ended = {
            let mut held = Held::new(counters);
            read(response, &mut held, read_rate, requested, leaving.take()).await
        };
        let why = match ended.event.as_deref() {
            Some("rebalance") => {
                add(&counters.after_rebalance);
                Why::Rebalance
            }
            Some("shutdown") => {
                add(&counters.after_shutdown);
                Why::Shutdown
            }
            Some("lock-lost") => {
                add(&counters.lock_lost);
                return End::Over;
            }
            Some("unbound") => {
                add(&counters.unbound);
                return End::Over;
            }
            _ => return End::Over,
        };
        leaving = Some(Leaving { from: ended.host.unwrap_or_default(), why, since: Instant::now() });
        tokio::time::sleep(ended.retry.unwrap_or(DEFAULT_RECONNECT)).await;
    }
}

/// Reads events until a final event or the end of the body. `leaving` is where the stream was
/// before a `rebalance` or `shutdown` sent it here: its first message completes the move; on a
/// fresh open, the time from `requested` to the first message is recorded.
async fn read(
    response: reqwest::Response,
    held: &mut Held<'_>,
    read_rate: Option<u64>,
    requested: Instant,
    mut leaving: Option<Leaving>,
) -> Ended {
    let counters = held.counters;
    let opened = Instant::now();
    let mut body = response.bytes_stream();
    let mut events = kubescaler_sse::Parser::new();
    let mut last_seq: Option<u64> = None;
    let mut total = 0u64;
    loop {
        let Some(Ok(chunk)) = body.next().await else {
            return Ended { event: None, host: held.host.clone(), retry: None };
        };
        total += chunk.len() as u64;
        counters.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        events.push(&chunk);
        while let Some(event) = events.next_event() {
            if let Some(name) = event.event.clone() {
                return Ended { retry: retry_of(&event), event: Some(name), host: held.host.clone() };
            }
            if let Some(seq) = event.seq() {
                add(&counters.messages);
                if let Some(last) = last_seq {
                    counters.gaps.fetch_add(seq.saturating_sub(last + 1), Ordering::Relaxed);
                }
                last_seq = Some(seq);
                if held.host.is_none() {
                    let here = message::host(&event.data).unwrap_or_default();
                    if let Some(Leaving { from, why, since }) = leaving.take() {
                        let ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                        counters.moved(Move { from, to: here.clone(), why, ms });
                    } else {
                        counters
                            .first_event(u64::try_from(requested.elapsed().as_micros()).unwrap_or(u64::MAX));
                    }
                    held.served_by(here);
                }
            }
        }
        if let Some(rate) = read_rate {
            let due = opened + Duration::from_secs_f64(total as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// When a final event asks its client to come back: its data's `reconnect_after_ms`, else its
/// `retry:` field.
fn retry_of(event: &Event) -> Option<Duration> {
    serde_json::from_str::<serde_json::Value>(&event.data)
        .ok()
        .and_then(|data| data["reconnect_after_ms"].as_u64())
        .map(Duration::from_millis)
        .or(event.retry)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kubescaler_sse::{Event, Parser};

    use super::retry_of;

    fn event(text: &str) -> Event {
        let mut parser = Parser::new();
        parser.push(text.as_bytes());
        parser.next_event().unwrap()
    }

    #[test]
    fn a_final_event_says_when_to_come_back() {
        let rebalance =
            event("retry: 250\nevent: rebalance\ndata: {\"reason\":\"busy\",\"reconnect_after_ms\":250}\n\n");
        assert_eq!(retry_of(&rebalance), Some(Duration::from_millis(250)));
        let shutdown =
            event("event: shutdown\ndata: {\"reason\":\"stopping\",\"reconnect_after_ms\":500}\n\n");
        assert_eq!(retry_of(&shutdown), Some(Duration::from_millis(500)));
        assert_eq!(retry_of(&event("retry: 300\nevent: x\ndata: {}\n\n")), Some(Duration::from_millis(300)));
        assert_eq!(retry_of(&event("event: lock-lost\ndata: {\"reason\":\"gone\"}\n\n")), None);
    }
}
