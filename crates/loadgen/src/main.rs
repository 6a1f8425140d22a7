//! `loadgen`: pushes streaming load through kubescaler's public URL (the all-in-one front door,
//! nginx, or a cluster's Ingress) and shows, every second, what the streams get.
//!
//! Pairs come from `/main/profiles` (every user of every profile) or a file of `user profile`
//! lines. N streams open at R per second, are held for D, optionally read slowly, and the run
//! stops by itself with a summary (text, or JSON with `--json`). More streams than pairs meet
//! 409s: that is the lock doing its job, and the summary says so. A stream told `rebalance`
//! (its instance holds more than its share) or `shutdown` (its instance stops) reconnects after
//! the time the event gives, as the test agent page does, and a refusal that gives a retry time
//! (503 from an instance draining or stopping) is retried; the summary says how long each move
//! took and where the streams are (the `host` of their events). Ctrl-C or SIGTERM ends the run
//! early, with the summary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use kubescaler_core::model::Profile;
use kubescaler_core::{ProfileId, UserId, duration, pairs};
use kubescaler_sse::{Event, message};
use tokio_util::sync::CancellationToken;

/// Time to open a connection through the public URL: an Ingress answers within milliseconds;
/// five seconds tells a wrong URL from a slow network.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// When a stream ended by `rebalance` or `shutdown` named no time to come back: what an
/// EventSource would wait after stream's first `retry:`.
const DEFAULT_RECONNECT: Duration = Duration::from_millis(500);
/// How often the live line is printed.
const LIVE_LINE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about = "Open many kubescaler streams and watch what they get")]
struct Args {
    /// The suite's public URL, e.g. http://127.0.0.1:8080 or http://<minikube ip>.
    #[arg(long)]
    url: String,
    /// Streams to open.
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// How long to hold them.
    #[arg(long, value_parser = duration::parse, default_value = "60s")]
    duration: Duration,
    /// Streams opened per second.
    #[arg(long, default_value_t = 10.0)]
    ramp: f64,
    /// Read at most this many bytes per second per stream (to exercise dropping).
    #[arg(long)]
    read_rate: Option<u64>,
    /// File of `user profile` lines instead of the pairs /main/profiles lists.
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default)]
struct Counters {
    open: AtomicU64,
    opened: AtomicU64,
    conflicts: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    messages: AtomicU64,
    gaps: AtomicU64,
    after_shutdown: AtomicU64,
    after_rebalance: AtomicU64,
    /// 503s with a retry time (an instance draining to its share, or stopping), retried.
    retried: AtomicU64,
    /// 409s met coming back after a `rebalance` or `shutdown`: the lock was not let go first.
    conflicts_on_return: AtomicU64,
    lock_lost: AtomicU64,
    unbound: AtomicU64,
    /// Open streams per `host` (the instance that serves them).
    hosts: Mutex<BTreeMap<String, u64>>,
    /// Streams that moved after a `rebalance` or `shutdown`: from, to, why, and the time from
    /// the event to the first message of the new stream.
    moves: Mutex<Vec<Move>>,
    /// Fresh opens (not moves): microseconds from the request to the first message.
    first_events: Mutex<Vec<u64>>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Move {
    from: String,
    to: String,
    why: &'static str,
    ms: u64,
}

/// A stream on its way to another instance: where it was, why it left, since when.
#[derive(Debug)]
struct Leaving {
    from: String,
    why: &'static str,
    since: Instant,
}

impl Counters {
    fn host_opened(&self, host: &str) {
        *self.hosts.lock().unwrap_or_else(PoisonError::into_inner).entry(host.to_owned()).or_default() += 1;
    }

    fn host_closed(&self, host: &str) {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = hosts.get_mut(host) {
            *open = open.saturating_sub(1);
        }
    }

    /// `host:open` for every host that serves a stream now, e.g. `stream-a:3 stream-b:2`.
    fn spread(&self) -> String {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let busy: Vec<String> =
            hosts.iter().filter(|(_, n)| **n > 0).map(|(h, n)| format!("{h}:{n}")).collect();
        busy.join(" ")
    }
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = args.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build()?;
    let pairs = load_pairs(&http, &url, args.pairs.as_ref()).await?;
    anyhow::ensure!(
        !pairs.is_empty(),
        "no user–profile pairs: create test data first (POST {url}/main/testdata)"
    );
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.streams as f64 / args.ramp.max(0.001)) + args.duration;
    // Ends every stream early, on Ctrl-C or SIGTERM; the summary still comes.
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));

    let tasks: Vec<_> = (0..args.streams)
        .map(|i| {
            let (http, url, counters, stop) = (http.clone(), url.clone(), counters.clone(), stop.clone());
            let (user, profile) = pairs[i % pairs.len()];
            let delay = Duration::from_secs_f64(i as f64 / args.ramp.max(0.001));
            let read_rate = args.read_rate;
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
                let url = format!("{url}/stream/{user}/{profile}");
                stop.run_until_cancelled(stream(&http, &url, &counters, read_rate)).await;
            })
        })
        .collect();

    let mut last_bytes = 0;
    let mut peak_open = 0;
    // Streams run until `stop`: the run ends at `end` or on a signal, and what is open then is
    // counted before they are stopped.
    while Instant::now() < end {
        let tick = (Instant::now() + LIVE_LINE_EVERY).min(end);
        tokio::select! {
            () = tokio::time::sleep_until(tick.into()) => {}
            () = stop.cancelled() => break,
        }
        let (open, bytes) = (get(&counters.open), get(&counters.bytes));
        peak_open = peak_open.max(open);
        let rate = (bytes - last_bytes) as f64;
        last_bytes = bytes;
        if !args.json {
            eprintln!(
                "{:>5.0}s  open {open:>5}/{}  409 {:>5}  errors {:>4}  {:>8.1} MB/s  {:>7.1} kB/s per stream  gaps {:>7}  reconnects {:>4}  on {}",
                started.elapsed().as_secs_f64(),
                args.streams,
                get(&counters.conflicts),
                get(&counters.errors),
                rate / 1e6,
                if open > 0 { rate / open as f64 / 1e3 } else { 0.0 },
                get(&counters.gaps),
                get(&counters.after_shutdown) + get(&counters.after_rebalance),
                counters.spread(),
            );
        }
    }
    let open_at_end = get(&counters.open);
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let moves = counters.moves.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut move_ms: Vec<u64> = moves.iter().map(|m| m.ms).collect();
    move_ms.sort_unstable();
    let mut first_events = counters.first_events.lock().unwrap_or_else(PoisonError::into_inner).clone();
    first_events.sort_unstable();
    let percentile = |p: f64| {
        let at = ((first_events.len() as f64 * p) as usize).min(first_events.len().saturating_sub(1));
        first_events.get(at).map(|us| *us as f64 / 1000.0)
    };
    let hosts_seen: Vec<String> =
        counters.hosts.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
    let summary = serde_json::json!({
        "url": url,
        "pairs": pairs.len(),
        "streams_asked": args.streams,
        "streams_opened": get(&counters.opened),
        "peak_open": peak_open,
        "open_at_end": open_at_end,
        "refused_locked_409": get(&counters.conflicts),
        "errors": get(&counters.errors),
        "messages": get(&counters.messages),
        "gaps_in_seq": get(&counters.gaps),
        "bytes": get(&counters.bytes),
        "mb_per_s": get(&counters.bytes) as f64 / seconds / 1e6,
        "reconnects_after_shutdown": get(&counters.after_shutdown),
        "reconnects_after_rebalance": get(&counters.after_rebalance),
        "refused_and_retried_503": get(&counters.retried),
        "refused_locked_409_on_return": get(&counters.conflicts_on_return),
        "moves": moves,
        "move_ms_median": move_ms.get(move_ms.len() / 2),
        "move_ms_max": move_ms.last(),
        "first_event_ms": { "p50": percentile(0.5), "p99": percentile(0.99), "max": percentile(1.0) },
        "hosts": hosts_seen,
        "lock_lost": get(&counters.lock_lost),
        "unbound": get(&counters.unbound),
        "seconds": seconds,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "\n{} of {} streams opened over {} pairs; peak {} open; {:.1} MB/s on average; {} messages, {} skipped (gaps in seq)",
            summary["streams_opened"],
            args.streams,
            pairs.len(),
            peak_open,
            summary["mb_per_s"].as_f64().unwrap_or(0.0),
            summary["messages"],
            summary["gaps_in_seq"]
        );
        let conflicts = get(&counters.conflicts);
        if conflicts > 0 {
            let why = if args.streams > pairs.len() {
                format!("{} streams were asked of {} pairs", args.streams, pairs.len())
            } else {
                "those pairs were already streaming (another client, or a stream closed less than LOCK_TTL ago)".to_owned()
            };
            println!(
                "{conflicts} streams were refused with 409: a pair streams once at a time, and {why} — that is the lock working"
            );
        }
        println!(
            "errors {}, reconnects after a rebalance {} and after a shutdown {} ({} of them refused with 409 on return, {} 503s retried), ended by lock loss {}, by unbinding {}",
            summary["errors"],
            summary["reconnects_after_rebalance"],
            summary["reconnects_after_shutdown"],
            summary["refused_locked_409_on_return"],
            summary["refused_and_retried_503"],
            summary["lock_lost"],
            summary["unbound"]
        );
        println!("served by {}", hosts_seen.join(", "));
        if let (Some(median), Some(max)) = (move_ms.get(move_ms.len() / 2), move_ms.last()) {
            println!(
                "{} streams moved to another instance, streaming again within {median} ms (median), {max} ms (max)",
                moves.len()
            );
        }
    }
    Ok(())
}

async fn load_pairs(
    http: &reqwest::Client,
    url: &str,
    file: Option<&PathBuf>,
) -> anyhow::Result<Vec<(UserId, ProfileId)>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        return pairs::parse(&text).with_context(|| format!("reading {}", file.display()));
    }
    let profiles: Vec<Profile> = http
        .get(format!("{url}/main/profiles"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}/main/profiles"))?
        .json()
        .await?;
    Ok(profiles.iter().flat_map(|profile| profile.users.iter().map(|user| (user, profile.id))).collect())
}

async fn stop_on_signal(stop: CancellationToken) {
    let interrupted = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = interrupted => {}
                _ = terminate.recv() => {}
            },
            Err(_) => {
                let _ = interrupted.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupted.await;
    stop.cancel();
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
    let header = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["retry_after_ms"].as_u64().map(Duration::from_millis).or(header)
}

/// One stream, until the run stops it. It comes back after a `rebalance` or `shutdown`, and
/// retries a 503 that says when; a 409 ends it, unless it meets one coming back (counted: the
/// service releases a moved stream's lock before telling it to go).
async fn stream(http: &reqwest::Client, url: &str, counters: &Counters, read_rate: Option<u64>) {
    let mut leaving: Option<Leaving> = None;
    loop {
        let requested = Instant::now();
        // It reads refusals as statuses; a client that takes only SSE gets them as events.
        let response =
            match http.get(url).header("accept", "text/event-stream, application/json").send().await {
                Ok(r) => r,
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
        let status = response.status().as_u16();
        if status != 200 {
            let retry = match status {
                409 if leaving.is_none() => {
                    counters.conflicts.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                409 => {
                    counters.conflicts_on_return.fetch_add(1, Ordering::Relaxed);
                    retry_after(response).await
                }
                503 => retry_after(response).await.inspect(|_| {
                    counters.retried.fetch_add(1, Ordering::Relaxed);
                }),
                _ => None,
            };
            let Some(wait) = retry else {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            tokio::time::sleep(wait).await;
            continue;
        }
        counters.opened.fetch_add(1, Ordering::Relaxed);
        counters.open.fetch_add(1, Ordering::Relaxed);
        let ended = read(response, counters, read_rate, requested, leaving.take()).await;
        counters.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(host) = &ended.host {
            counters.host_closed(host);
        }
        let why = match ended.event.as_deref() {
            Some("rebalance") => {
                counters.after_rebalance.fetch_add(1, Ordering::Relaxed);
                "rebalance"
            }
            Some("shutdown") => {
                counters.after_shutdown.fetch_add(1, Ordering::Relaxed);
                "shutdown"
            }
            Some("lock-lost") => {
                counters.lock_lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some("unbound") => {
                counters.unbound.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => return,
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
    counters: &Counters,
    read_rate: Option<u64>,
    requested: Instant,
    mut leaving: Option<Leaving>,
) -> Ended {
    let opened = Instant::now();
    let mut body = response.bytes_stream();
    let mut events = kubescaler_sse::Parser::new();
    let mut last_seq: Option<u64> = None;
    let mut total = 0u64;
    let mut host: Option<String> = None;
    loop {
        let Some(Ok(chunk)) = body.next().await else {
            return Ended { event: None, host, retry: None };
        };
        total += chunk.len() as u64;
        counters.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        events.push(&chunk);
        while let Some(event) = events.next_event() {
            if let Some(name) = event.event.clone() {
                return Ended { retry: retry_of(&event), event: Some(name), host };
            }
            if let Some(seq) = event.seq() {
                counters.messages.fetch_add(1, Ordering::Relaxed);
                if let Some(last) = last_seq {
                    counters.gaps.fetch_add(seq.saturating_sub(last + 1), Ordering::Relaxed);
                }
                last_seq = Some(seq);
                if host.is_none() {
                    let here = message::host(&event.data).unwrap_or_default();
                    counters.host_opened(&here);
                    if let Some(Leaving { from, why, since }) = leaving.take() {
                        let ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                        let to = here.clone();
                        counters.moves.lock().unwrap_or_else(PoisonError::into_inner).push(Move {
                            from,
                            to,
                            why,
                            ms,
                        });
                    } else {
                        let us = u64::try_from(requested.elapsed().as_micros()).unwrap_or(u64::MAX);
                        counters.first_events.lock().unwrap_or_else(PoisonError::into_inner).push(us);
                    }
                    host = Some(here);
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
