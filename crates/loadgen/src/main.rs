//! `loadgen`: pushes streaming load through kubescaler's public URL (the all-in-one front door,
//! nginx, or a cluster's Ingress) and shows, every second, what the streams get.
//!
//! Pairs come from `/main/profiles` (every user of every profile) or a file of `user profile`
//! lines. N streams open at R per second, are held for D, optionally read slowly, and the run
//! stops by itself with a summary (text, or JSON with `--json`). More streams than pairs meet
//! 409s: that is the lock doing its job, and the summary says so. A stream told `shutdown`
//! (its instance scaling down) reconnects, as the test agent page does; the summary says how
//! long each move took and where the streams are (the `host` of their events). Ctrl-C or
//! SIGTERM ends the run early, with the summary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use kubescaler_shared::config::duration;
use tokio_util::sync::CancellationToken;

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
    #[arg(long, value_parser = duration, default_value = "60s")]
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
    reconnects: AtomicU64,
    lock_lost: AtomicU64,
    unbound: AtomicU64,
    /// Open streams per `host` (the instance that serves them).
    hosts: Mutex<BTreeMap<String, u64>>,
    /// Streams that moved after a `shutdown`: from, to, and the time from the event to the
    /// first message of the new stream.
    moves: Mutex<Vec<Move>>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Move {
    from: String,
    to: String,
    ms: u64,
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
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build()?;
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
            let (user, profile) = pairs[i % pairs.len()].clone();
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
        let tick = (Instant::now() + Duration::from_secs(1)).min(end);
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
                get(&counters.reconnects),
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
        "reconnects_after_shutdown": get(&counters.reconnects),
        "moves": moves,
        "move_ms_median": move_ms.get(move_ms.len() / 2),
        "move_ms_max": move_ms.last(),
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
            "errors {}, reconnects after a shutdown {}, ended by lock loss {}, by unbinding {}",
            summary["errors"], summary["reconnects_after_shutdown"], summary["lock_lost"], summary["unbound"]
        );
        println!("served by {}", hosts_seen.join(", "));
        if let (Some(median), Some(max)) = (move_ms.get(move_ms.len() / 2), move_ms.last()) {
            println!(
                "{} streams moved to another instance after a shutdown, streaming again within {median} ms (median), {max} ms (max)",
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
) -> anyhow::Result<Vec<(String, String)>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        return Ok(text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(u, p)| (u.to_owned(), p.to_owned()))
            .collect());
    }
    let profiles: serde_json::Value = http
        .get(format!("{url}/main/profiles"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}/main/profiles"))?
        .json()
        .await?;
    let mut pairs = Vec::new();
    for profile in profiles.as_array().into_iter().flatten() {
        let id = profile["id"].as_str().unwrap_or_default();
        for user in profile["users"].as_array().into_iter().flatten().filter_map(|u| u.as_str()) {
            pairs.push((user.to_owned(), id.to_owned()));
        }
    }
    Ok(pairs)
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
}

/// One stream, until the run stops it; reconnects after a `shutdown` event.
async fn stream(http: &reqwest::Client, url: &str, counters: &Counters, read_rate: Option<u64>) {
    // Set by a `shutdown`: where the stream was and when it was told to leave.
    let mut moving: Option<(String, Instant)> = None;
    loop {
        let response = match http.get(url).header("accept", "text/event-stream").send().await {
            Ok(r) => r,
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match response.status().as_u16() {
            200 => {}
            409 => {
                counters.conflicts.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        counters.opened.fetch_add(1, Ordering::Relaxed);
        counters.open.fetch_add(1, Ordering::Relaxed);
        let ended = read(response, counters, read_rate, moving.take()).await;
        counters.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(host) = &ended.host {
            counters.host_closed(host);
        }
        match ended.event.as_deref() {
            Some("shutdown") => {
                counters.reconnects.fetch_add(1, Ordering::Relaxed);
                moving = Some((ended.host.unwrap_or_default(), Instant::now()));
                tokio::time::sleep(Duration::from_millis(500)).await;
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
        }
    }
}

/// Reads events until a final event or the end of the body. `moving` is where the stream was
/// before a `shutdown` sent it here, and since when: its first message completes the move.
async fn read(
    response: reqwest::Response,
    counters: &Counters,
    read_rate: Option<u64>,
    mut moving: Option<(String, Instant)>,
) -> Ended {
    let opened = Instant::now();
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut last_seq: Option<u64> = None;
    let mut total = 0u64;
    let mut host: Option<String> = None;
    loop {
        let Some(Ok(chunk)) = body.next().await else {
            return Ended { event: None, host };
        };
        total += chunk.len() as u64;
        counters.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(at) = buffer.find("\n\n") {
            let event: String = buffer.drain(..at + 2).collect();
            if let Some(name) = event.lines().find_map(|l| l.strip_prefix("event: ")) {
                return Ended { event: Some(name.to_owned()), host };
            }
            if let Some(seq) =
                event.lines().find_map(|l| l.strip_prefix("id: ")).and_then(|s| s.parse::<u64>().ok())
            {
                counters.messages.fetch_add(1, Ordering::Relaxed);
                if let Some(last) = last_seq {
                    counters.gaps.fetch_add(seq.saturating_sub(last + 1), Ordering::Relaxed);
                }
                last_seq = Some(seq);
                if host.is_none() {
                    let here = host_of(&event).unwrap_or_default();
                    counters.host_opened(&here);
                    if let Some((from, since)) = moving.take() {
                        let ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                        let to = here.clone();
                        counters.moves.lock().unwrap_or_else(PoisonError::into_inner).push(Move {
                            from,
                            to,
                            ms,
                        });
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

/// The `host` of a message event: its data is `{"host":"…",…}`, and only the host is decoded
/// (the rest is tens of kilobytes of random data).
fn host_of(event: &str) -> Option<String> {
    let data = event.lines().find_map(|l| l.strip_prefix("data: "))?;
    let rest = data.strip_prefix("{\"host\":")?;
    serde_json::Deserializer::from_str(rest).into_iter::<String>().next()?.ok()
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_is_read_from_a_message_without_decoding_the_rest() {
        let event = "id: 7\ndata: {\"host\":\"stream-6d9f \\\"b\\\"\",\"timestamp\":\"1\",\"seq\":7,\"message\":\"xyz\"}\n\n";
        assert_eq!(host_of(event).as_deref(), Some("stream-6d9f \"b\""));
        assert_eq!(host_of("event: shutdown\ndata: {}\n\n"), None);
        assert_eq!(host_of("id: 1\ndata: {\"seq\":1}\n\n"), None);
    }
}
