//! `loadgen`: pushes streaming load through kubescaler's public URL (the all-in-one front door,
//! nginx, or a cluster's Ingress) and shows, every second, what the streams get.
//!
//! Pairs come from `/main/profiles` (every user of every profile) or a file of `user profile`
//! lines. N streams open at R per second, are held for D, optionally read slowly, and the run
//! stops by itself with a summary (text, or JSON with `--json`). More streams than pairs meet
//! 409s: that is the lock doing its job, and the summary says so. A stream told `shutdown`
//! (its instance scaling down) reconnects, as the test agent page does.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use kubescaler_shared::config::duration;

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

    let tasks: Vec<_> = (0..args.streams)
        .map(|i| {
            let (http, url, counters) = (http.clone(), url.clone(), counters.clone());
            let (user, profile) = pairs[i % pairs.len()].clone();
            let delay = Duration::from_secs_f64(i as f64 / args.ramp.max(0.001));
            let read_rate = args.read_rate;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                stream(&http, &format!("{url}/stream/{user}/{profile}"), &counters, end, read_rate).await;
            })
        })
        .collect();

    let mut last_bytes = 0;
    let mut peak_open = 0;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (open, bytes) = (get(&counters.open), get(&counters.bytes));
        peak_open = peak_open.max(open);
        let rate = (bytes - last_bytes) as f64;
        last_bytes = bytes;
        if !args.json {
            eprintln!(
                "{:>5.0}s  open {open:>5}/{}  409 {:>5}  errors {:>4}  {:>8.1} MB/s  {:>7.1} kB/s per stream  gaps {:>7}",
                started.elapsed().as_secs_f64(),
                args.streams,
                get(&counters.conflicts),
                get(&counters.errors),
                rate / 1e6,
                if open > 0 { rate / open as f64 / 1e3 } else { 0.0 },
                get(&counters.gaps),
            );
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "url": url,
        "pairs": pairs.len(),
        "streams_asked": args.streams,
        "streams_opened": get(&counters.opened),
        "peak_open": peak_open,
        "refused_locked_409": get(&counters.conflicts),
        "errors": get(&counters.errors),
        "messages": get(&counters.messages),
        "gaps_in_seq": get(&counters.gaps),
        "bytes": get(&counters.bytes),
        "mb_per_s": get(&counters.bytes) as f64 / seconds / 1e6,
        "reconnects_after_shutdown": get(&counters.reconnects),
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

/// One stream until `end`; reconnects after a `shutdown` event.
async fn stream(
    http: &reqwest::Client,
    url: &str,
    counters: &Counters,
    end: Instant,
    read_rate: Option<u64>,
) {
    while Instant::now() < end {
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
        let ended = read(response, counters, end, read_rate).await;
        counters.open.fetch_sub(1, Ordering::Relaxed);
        match ended.as_deref() {
            Some("shutdown") => {
                counters.reconnects.fetch_add(1, Ordering::Relaxed);
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

/// Reads events until `end` or a final event; returns that event's name.
async fn read(
    response: reqwest::Response,
    counters: &Counters,
    end: Instant,
    read_rate: Option<u64>,
) -> Option<String> {
    let opened = Instant::now();
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut last_seq: Option<u64> = None;
    let mut total = 0u64;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let chunk = match tokio::time::timeout(left, body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            _ => return None,
        };
        total += chunk.len() as u64;
        counters.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(at) = buffer.find("\n\n") {
            let event: String = buffer.drain(..at + 2).collect();
            if let Some(name) = event.lines().find_map(|l| l.strip_prefix("event: ")) {
                return Some(name.to_owned());
            }
            if let Some(seq) =
                event.lines().find_map(|l| l.strip_prefix("id: ")).and_then(|s| s.parse::<u64>().ok())
            {
                counters.messages.fetch_add(1, Ordering::Relaxed);
                if let Some(last) = last_seq {
                    counters.gaps.fetch_add(seq.saturating_sub(last + 1), Ordering::Relaxed);
                }
                last_seq = Some(seq);
            }
        }
        if let Some(rate) = read_rate {
            let due = opened + Duration::from_secs_f64(total as f64 / rate as f64);
            tokio::time::sleep_until(due.min(end).into()).await;
        }
    }
}
