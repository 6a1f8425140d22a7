//! base in-process on the real Cassandra, stream instances in-process (or as child processes
//! for signals), and an SSE client that reads events as a browser would.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use kubescaler_base::cassandra::CassandraConfig;
use kubescaler_base_client::BaseClientConfig;
use kubescaler_redis::RedisArgs;
use kubescaler_server::config::defaults;
use kubescaler_sse::Parser;
pub use kubescaler_testkit::{
    Http, Nginx, RedisServer, Running, common_args, error_code, free_port, require_cassandra, require_redis,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const KEYSPACE: &str = "kubescaler_test_stream";
pub const TTL: Duration = Duration::from_secs(3);
pub const REFRESH: Duration = Duration::from_millis(500);

/// base announcing binding changes on the shared Redis.
pub async fn spawn_base() -> Running {
    spawn_base_announcing(vec![kubescaler_testkit::shared_redis_url()]).await
}

/// base announcing binding changes on `redis_urls`.
pub async fn spawn_base_announcing(redis_urls: Vec<String>) -> Running {
    let nodes = require_cassandra().await;
    let mut config: kubescaler_base::Config = defaults().unwrap();
    config.port = 0;
    config.cassandra = CassandraConfig::new(nodes, KEYSPACE).unwrap();
    config.redis = RedisArgs { urls: redis_urls, timeout: Duration::from_millis(500) };
    config.common = common_args();
    let shutdown = CancellationToken::new();
    let running = Running::start(kubescaler_base::build(config, shutdown.clone()).await.unwrap(), shutdown);
    running.wait_ready(Duration::from_secs(60)).await;
    running
}

pub fn stream_config(base: &Running, redis_urls: Vec<String>) -> kubescaler_stream::Config {
    let mut config: kubescaler_stream::Config = defaults().unwrap();
    config.port = 0;
    config.base = BaseClientConfig::new(&base.base_url);
    config.redis = RedisArgs { urls: redis_urls, timeout: Duration::from_millis(300) };
    config.lock_ttl = TTL;
    config.lock_refresh = Some(REFRESH);
    config.stream_interval = Duration::from_millis(50);
    config.stream_message_bytes = 2_000;
    config.max_connections = 1_000;
    config.hostname = "stream-test".into();
    // Off unless a test is about it: instances of concurrent tests share a Redis.
    config.rebalance = false;
    config.common = common_args();
    config
}

/// Binding changes from the Redis instances of `config`, as `build` hears them.
pub fn redis_bindings(config: &kubescaler_stream::Config) -> kubescaler_stream::changes::BindingSource {
    kubescaler_stream::changes::BindingSource::Redis(config.redis.clone())
}

pub async fn spawn_stream(config: kubescaler_stream::Config) -> Running {
    let shutdown = CancellationToken::new();
    let running = Running::start(kubescaler_stream::build(config, shutdown.clone()).await.unwrap(), shutdown);
    running.wait_ready(Duration::from_secs(30)).await;
    running
}

/// A user bound to a fresh profile: `(user, profile)` ids.
pub async fn pair(base: &Http) -> (String, String) {
    let (status, user) = base.post("/users", json!({ "name": "Streamer" })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, profile) = base.post("/profiles", json!({ "users": [user["id"]] })).await;
    assert_eq!(status, StatusCode::CREATED);
    (user["id"].as_str().unwrap().to_owned(), profile["id"].as_str().unwrap().to_owned())
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Event {
    pub event: String,
    pub id: Option<u64>,
    pub data: Value,
}

/// What reading a stream gave.
#[derive(Debug)]
pub enum Read {
    Event(Event),
    /// Nothing within the time given.
    Quiet,
    /// The response body ended.
    Ended,
}

/// An open SSE connection, read event by event.
pub struct Sse {
    pub headers: reqwest::header::HeaderMap,
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    events: Parser,
}

impl Sse {
    pub async fn open(
        service: &Http,
        user: &str,
        profile: &str,
    ) -> Result<Sse, (StatusCode, reqwest::header::HeaderMap, Value)> {
        let client = reqwest::Client::new();
        let response = client.get(service.url(&format!("/stream/{user}/{profile}"))).send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        if status != StatusCode::OK {
            let body = response.json().await.unwrap_or(Value::Null);
            return Err((status, headers, body));
        }
        Ok(Sse { headers, body: Box::pin(response.bytes_stream()), events: Parser::new() })
    }

    /// The next event, or `None` when the stream ended (or nothing came within `within`).
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        match self.poll(within).await {
            Read::Event(event) => Some(event),
            Read::Quiet | Read::Ended => None,
        }
    }

    /// The next event, or whether the stream ended or stayed quiet for `within`.
    pub async fn poll(&mut self, within: Duration) -> Read {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(event) = self.events.next_event() {
                if event.data.is_empty() {
                    continue; // a retry hint
                }
                let data = serde_json::from_str(&event.data).unwrap();
                return Read::Event(Event { event: event.name().to_owned(), id: event.seq(), data });
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.events.push(&chunk),
                Ok(_) => return Read::Ended,
                Err(_) => return Read::Quiet,
            }
        }
    }

    /// Reads for `duration`: the messages that came, and what ended the reading early if
    /// anything did (`Read::Event` an event other than a message, `Read::Ended`).
    pub async fn read_for(&mut self, duration: Duration) -> (u64, Read) {
        let deadline = tokio::time::Instant::now() + duration;
        let mut messages = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.poll(left).await {
                Read::Event(event) if event.event == "message" => messages += 1,
                other => return (messages, other),
            }
        }
    }

    /// Reads until an event other than a message comes; returns it.
    pub async fn next_control(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left).await?;
            if event.event != "message" {
                return Some(event);
            }
        }
    }
}

/// The value of a metric without labels in `/metrics`.
pub async fn metric(service: &Http, name: &str) -> f64 {
    let text = service.client.get(service.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

pub async fn wait_metric(service: &Http, name: &str, value: f64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = metric(service, name).await;
        if now == value {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} is {now}, expected {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stream read over a raw socket with a small receive buffer, at a chosen rate.
pub struct SlowReader {
    socket: tokio::net::TcpStream,
    events: Parser,
    /// Every byte read from the socket so far, HTTP framing included.
    pub total: u64,
}

impl SlowReader {
    pub async fn connect(addr: SocketAddr, user: &str, profile: &str) -> Self {
        use tokio::io::AsyncWriteExt;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        let mut socket = socket.connect(addr).await.unwrap();
        let request = format!(
            "GET /stream/{user}/{profile} HTTP/1.1\r\nhost: stream\r\naccept: text/event-stream\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        Self { socket, events: Parser::new(), total: 0 }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Reads at about `bytes_per_second` for `duration`; returns the `id`s seen, in order. The
    /// bytes are the raw response, HTTP framing included, which the SSE parser reads through.
    pub async fn read(&mut self, bytes_per_second: usize, duration: Duration) -> Vec<u64> {
        use tokio::io::AsyncReadExt;
        let started = tokio::time::Instant::now();
        let mut read = 0usize;
        let mut chunk = vec![0u8; 4096];
        let mut seqs = Vec::new();
        while started.elapsed() < duration {
            let n = match tokio::time::timeout(Duration::from_secs(2), self.socket.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => break,
            };
            read += n;
            self.total += n as u64;
            self.events.push(&chunk[..n]);
            while let Some(event) = self.events.next_event() {
                seqs.extend(event.seq());
            }
            let due = Duration::from_secs_f64(read as f64 / bytes_per_second as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        seqs
    }
}

/// The kernel's queues of the TCP socket `local` → `remote` (from `/proc/net/tcp`): bytes sent
/// and not yet acknowledged, and bytes received and not yet read by the application.
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> (u64, u64) {
    fn hex(addr: SocketAddr) -> String {
        let SocketAddr::V4(v4) = addr else { panic!("IPv4 only: {addr}") };
        // The kernel prints the address as the u32 it stores, in network byte order.
        format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port())
    }
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields[1] == local && fields[2] == remote).then(|| {
                let (tx, rx) = fields[4].split_once(':').unwrap();
                (u64::from_str_radix(tx, 16).unwrap(), u64::from_str_radix(rx, 16).unwrap())
            })
        })
        .unwrap_or_else(|| panic!("no socket {local} -> {remote} in /proc/net/tcp"))
}
