//! Load for stream's benchmarks: many SSE clients on raw sockets (lighter than an HTTP client
//! library, so the load generator is not what limits), a raw-TCP fan-out server as the
//! baseline (the same shared-frame broadcast, without HTTP), pair seeding, and lock churn.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use kubescaler_base::cassandra::cql;
use kubescaler_core::percentile::percentile;
use kubescaler_core::{ProfileId, UserId};
use kubescaler_redis::RedisArgs;
use kubescaler_sse::message;
use kubescaler_stream::locks::{PairLocks, RedisLocks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use uuid::Uuid;

/// Inserts `count` profiles holding one user each; prints `user profile` lines.
pub async fn seed_pairs(
    session: &scylla::client::session::Session,
    keyspace: &str,
    count: usize,
) -> anyhow::Result<()> {
    let insert = session.prepare(cql::insert_profile(keyspace)).await?;
    let pairs: Vec<(Uuid, Uuid)> = (0..count).map(|_| (Uuid::new_v4(), Uuid::new_v4())).collect();
    let results = futures::stream::iter(&pairs)
        .map(|(user, profile)| {
            let users: BTreeSet<Uuid> = [*user].into();
            let insert = &insert;
            async move { session.execute_unpaged(insert, (*profile, users)).await }
        })
        .buffer_unordered(crate::SEED_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    anyhow::ensure!(results.iter().all(Result::is_ok), "some inserts failed");
    for (user, profile) in pairs {
        println!("{user} {profile}");
    }
    Ok(())
}

/// What a client reads at once when it reads as fast as it can.
const READ_BUFFER: usize = 64 * 1024;

/// What one client saw.
#[derive(Debug, Default, Clone)]
struct ClientStats {
    status_ok: bool,
    /// Until the response's first bytes: what admission (base, lock, marker) took, without the
    /// first frame's delivery.
    head: Option<Duration>,
    first_event: Option<Duration>,
    bytes_measured: u64,
    /// Age of the newest message read, when the client stopped.
    newest_age: Option<Duration>,
}

pub struct SseLoad {
    pub addr: SocketAddr,
    /// `None`: raw TCP (the baseline server), no HTTP request.
    pub pairs: Option<Vec<(UserId, ProfileId)>>,
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Read at most this many bytes per second per client (slow readers).
    pub read_rate: Option<u64>,
    pub recv_buffer: Option<u32>,
    pub connect_concurrency: usize,
}

pub async fn sse_load(load: SseLoad) -> anyhow::Result<serde_json::Value> {
    let load = Arc::new(load);
    let started = Instant::now();
    let measure_from = started + load.warmup;
    let end = measure_from + load.duration;
    // Streams are opened a few at a time, as real clients arrive.
    let gate = Arc::new(tokio::sync::Semaphore::new(load.connect_concurrency));
    let tasks: Vec<_> = (0..load.clients)
        .map(|i| {
            let (load, gate) = (load.clone(), gate.clone());
            tokio::spawn(async move { client(&load, i, &gate, measure_from, end).await })
        })
        .collect();
    let mut stats = Vec::with_capacity(tasks.len());
    for task in tasks {
        stats.push(task.await?.unwrap_or_default());
    }
    let secs = load.duration.as_secs_f64();
    let ok: Vec<&ClientStats> = stats.iter().filter(|s| s.status_ok).collect();
    let rates: Vec<f64> = ok.iter().map(|s| s.bytes_measured as f64 / secs).collect();
    let mut firsts: Vec<Duration> = ok.iter().filter_map(|s| s.first_event).collect();
    firsts.sort();
    let mut heads: Vec<Duration> = ok.iter().filter_map(|s| s.head).collect();
    heads.sort();
    let pct = |v: &[Duration], q: f64| percentile(v, q).map(|d| d.as_secs_f64() * 1000.0);
    let mut ages: Vec<Duration> = ok.iter().filter_map(|s| s.newest_age).collect();
    ages.sort();
    Ok(serde_json::json!({
        "clients": load.clients,
        "connected": ok.len(),
        "aggregate_mb_s": rates.iter().sum::<f64>() / 1e6,
        "per_client_kb_s_min": rates.iter().copied().fold(f64::INFINITY, f64::min) / 1e3,
        "per_client_kb_s_median": median(&rates) / 1e3,
        "first_event_p50_ms": pct(&firsts, 0.5),
        "first_event_p99_ms": pct(&firsts, 0.99),
        "head_p50_ms": pct(&heads, 0.5),
        "head_p99_ms": pct(&heads, 0.99),
        "newest_age_max_s": ages.last().map(|d| d.as_secs_f64()),
        "first_events_ms": firsts.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
        "rates_b_s": rates,
    }))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5).unwrap_or(0.0)
}

async fn client(
    load: &SseLoad,
    i: usize,
    gate: &tokio::sync::Semaphore,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<ClientStats> {
    let permit = gate.acquire().await?;
    let socket = TcpSocket::new_v4()?;
    if let Some(bytes) = load.recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    let mut stream = socket.connect(load.addr).await.context("connect")?;
    let opened = Instant::now();
    if let Some(pairs) = &load.pairs {
        let (user, profile) = pairs[i % pairs.len()];
        let request = format!(
            "GET /stream/{user}/{profile} HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream, application/json\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
    }
    // Held until the first event: `connect_concurrency` bounds streams being opened at once.
    let mut permit = Some(permit);
    let mut stats = ClientStats::default();
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut head = load.pairs.is_none();
    // The bytes come off a bare socket, HTTP framing included, which the SSE parser reads
    // through. It reads until the first message, and all along for slow readers, to tell how
    // old the newest message read is; otherwise the bytes are only counted.
    let mut events = kubescaler_sse::Parser::new();
    let mut read_total = 0u64;
    let mut newest_timestamp: Option<SystemTime> = None;
    while Instant::now() < end {
        let want = match load.read_rate {
            Some(rate) => {
                // Pace reads: sleep until the bytes read so far are due at `rate`.
                let due = opened + Duration::from_secs_f64(read_total as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait.min(end.saturating_duration_since(Instant::now()))).await;
                }
                (rate as usize / 10).clamp(512, buffer.len())
            }
            None => buffer.len(),
        };
        let left = end.saturating_duration_since(Instant::now());
        let n = match tokio::time::timeout(left, stream.read(&mut buffer[..want])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        read_total += n as u64;
        let chunk = &buffer[..n];
        if !head {
            if chunk.starts_with(b"HTTP/1.1 200") {
                head = true;
                stats.head = Some(opened.elapsed());
                stats.status_ok = true;
            } else {
                anyhow::bail!("refused: {}", String::from_utf8_lossy(&chunk[..chunk.len().min(200)]));
            }
        } else if load.pairs.is_none() {
            stats.status_ok = true;
        }
        if load.pairs.is_none() {
            // The baseline server sends bare frames: the first bytes are the first event.
            if stats.first_event.is_none() {
                stats.first_event = Some(opened.elapsed());
                permit.take();
            }
        } else if stats.first_event.is_none() || load.read_rate.is_some() {
            events.push(chunk);
            while let Some(event) = events.next_event() {
                if !event.is_message() {
                    continue;
                }
                if stats.first_event.is_none() {
                    stats.first_event = Some(opened.elapsed());
                    permit.take();
                }
                if let Some(ts) =
                    message::timestamp(&event.data).and_then(|ts| humantime::parse_rfc3339(ts).ok())
                {
                    newest_timestamp = Some(ts);
                }
            }
        }
        if Instant::now() >= measure_from {
            stats.bytes_measured += n as u64;
        }
    }
    stats.newest_age = newest_timestamp.and_then(|ts| SystemTime::now().duration_since(ts).ok());
    Ok(stats)
}

/// How the raw fan-out server shares its frames between connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Channel {
    /// `tokio::sync::watch`: every connection takes the newest frame, as stream's feed does.
    Watch,
    /// `tokio::sync::broadcast`: every connection reads the frames in order and skips what it
    /// lagged behind.
    Broadcast,
}

/// The baseline: frames generated as fast as possible, shared through one channel, written to
/// plain TCP connections, no HTTP.
pub async fn raw_fanout_server(port: u16, message_bytes: usize, channel: Channel) -> anyhow::Result<()> {
    let payload = Bytes::from(vec![b'x'; message_bytes]);
    let (watch_tx, watch_rx) = watch::channel(Bytes::new());
    let (broadcast_tx, _) = tokio::sync::broadcast::channel::<Bytes>(16);
    let sender = broadcast_tx.clone();
    tokio::spawn(async move {
        loop {
            tokio::task::yield_now().await;
            match channel {
                // The accept loop keeps a receiver, so this fails only when the server is gone.
                Channel::Watch => {
                    if watch_tx.send(payload.clone()).is_err() {
                        return;
                    }
                }
                // No receiver yet is not an end: connections come later.
                Channel::Broadcast => {
                    let _ = sender.send(payload.clone());
                }
            }
        }
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (mut socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        match channel {
            Channel::Watch => {
                let mut rx = watch_rx.clone();
                tokio::spawn(async move {
                    while rx.changed().await.is_ok() {
                        let frame = rx.borrow_and_update().clone();
                        if socket.write_all(&frame).await.is_err() {
                            return;
                        }
                    }
                });
            }
            Channel::Broadcast => {
                let mut rx = broadcast_tx.subscribe();
                tokio::spawn(async move {
                    loop {
                        let frame = match rx.recv().await {
                            Ok(frame) => frame,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        };
                        if socket.write_all(&frame).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    }
}

/// Acquire + release cycles per second through stream's lock code.
pub async fn lock_churn(
    redis: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<serde_json::Value> {
    let locks = Arc::new(RedisLocks::new(&RedisArgs {
        urls: vec![redis.to_owned()],
        timeout: Duration::from_secs(1),
    })?);
    let end = Instant::now() + duration;
    let workers = (0..concurrency).map(|_| {
        let locks = locks.clone();
        tokio::spawn(async move {
            let (user, profile) = (UserId::new_random(), ProfileId::new_random());
            let mut cycles = 0u64;
            while Instant::now() < end {
                let lease = locks.acquire(user, profile, Duration::from_secs(60)).await?;
                locks.release(std::slice::from_ref(&lease)).await;
                cycles += 1;
            }
            anyhow::Ok(cycles)
        })
    });
    let mut total = 0;
    for worker in futures::future::join_all(workers).await {
        total += worker??;
    }
    Ok(
        serde_json::json!({ "cycles": total, "cycles_per_s": total as f64 / duration.as_secs_f64(), "concurrency": concurrency }),
    )
}
