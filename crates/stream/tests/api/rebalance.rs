//! Rebalancing behind nginx: streams move off an instance that holds more than its share, and
//! only then. Each test has its own Redis, because the fleet is whatever publishes there.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;
use crate::processes::{signal, stream_process_with};

const PERIOD: Duration = REFRESH;

fn rebalancing(base: &Running, redis: &RedisServer, host: &str, port: u16) -> kubescaler_stream::Config {
    let mut config = stream_config(base, vec![redis.url()]);
    config.hostname = host.to_owned();
    config.port = port;
    config.rebalance = true;
    config
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn pairs(base: &Running, n: usize) -> Vec<(String, String)> {
    let mut pairs = Vec::with_capacity(n);
    for _ in 0..n {
        pairs.push(pair(base).await);
    }
    pairs
}

/// What the clients saw, together.
#[derive(Debug, Default)]
struct Tally {
    /// Client → the host it streams from now.
    streaming: BTreeMap<usize, String>,
    /// Told to go (`rebalance`, `shutdown`) and came back.
    reconnects: u64,
    /// Refused with 409 (the pair still locked).
    conflicts: u64,
    /// Refused with 503 and a retry time (an instance draining to its share).
    refused: u64,
    /// Connections that broke or failed.
    broken: u64,
}

/// Clients that behave as `loadgen` and the agent page do: they stream, say where from, come
/// back after the `reconnect_after_ms` of a `rebalance` or `shutdown`, and retry a refusal
/// after its `retry_after_ms`.
struct Clients {
    tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Clients {
    fn start(via: &Http, pairs: &[(String, String)]) -> Self {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = CancellationToken::new();
        let tasks = pairs
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, (user, profile))| {
                let (via, tally, stop) = (via.clone(), tally.clone(), stop.clone());
                tokio::spawn(async move {
                    stop.run_until_cancelled(client(i, via, user, profile, tally)).await;
                })
            })
            .collect();
        Self { tally, stop, tasks }
    }

    fn tally<T>(&self, read: impl FnOnce(&Tally) -> T) -> T {
        read(&self.tally.lock().unwrap())
    }

    fn hosts(&self) -> BTreeMap<String, usize> {
        self.tally(|t| {
            let mut hosts = BTreeMap::new();
            for host in t.streaming.values() {
                *hosts.entry(host.clone()).or_insert(0) += 1;
            }
            hosts
        })
    }

    async fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&BTreeMap<String, usize>) -> bool) {
        let deadline = Instant::now() + within;
        while !done(&self.hosts()) {
            assert!(
                Instant::now() < deadline,
                "{what} not within {within:?}: {:?} {:?}",
                self.hosts(),
                self.tally.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn client(i: usize, via: Http, user: String, profile: String, tally: Arc<Mutex<Tally>>) {
    loop {
        let wait = match Sse::open(&via, &user, &profile).await {
            Ok(mut sse) => loop {
                match sse.next(Duration::from_secs(5)).await {
                    Some(event) if event.event == "message" => {
                        let host = event.data["host"].as_str().unwrap_or_default().to_owned();
                        tally.lock().unwrap().streaming.insert(i, host);
                    }
                    Some(event) if matches!(event.event.as_str(), "rebalance" | "shutdown") => {
                        let mut t = tally.lock().unwrap();
                        t.streaming.remove(&i);
                        t.reconnects += 1;
                        break event.data["reconnect_after_ms"].as_u64().unwrap_or(500);
                    }
                    other => {
                        let mut t = tally.lock().unwrap();
                        t.streaming.remove(&i);
                        t.broken += 1;
                        eprintln!("client {i}: stream ended with {other:?}");
                        break 500;
                    }
                }
            },
            Err((status, _, body)) => {
                let mut t = tally.lock().unwrap();
                match status {
                    StatusCode::CONFLICT => t.conflicts += 1,
                    StatusCode::SERVICE_UNAVAILABLE => t.refused += 1,
                    _ => t.broken += 1,
                }
                body["retry_after_ms"].as_u64().unwrap_or(500)
            }
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

async fn gauge(instance: &Http) -> usize {
    metric(instance, "kubescaler_stream_active_connections").await as usize
}

fn within(hosts: &BTreeMap<String, usize>, host: &str, target: usize, slack: usize) -> bool {
    hosts.get(host).copied().unwrap_or(0).abs_diff(target) <= slack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_instance_gets_half_of_forty_streams_within_two_periods() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let b_port = free_port();
    let a = spawn_stream(rebalancing(&base, &redis, "stream-a", 0)).await;
    let nginx = Nginx::start(&[a.addr, local(b_port)]).await;
    let clients = Clients::start(&nginx, &pairs(&base, 40).await);
    clients
        .wait_for("40 streams on stream-a", Duration::from_secs(15), |h| h.get("stream-a") == Some(&40))
        .await;

    let b = spawn_stream(rebalancing(&base, &redis, "stream-b", b_port)).await;
    let joined = Instant::now();
    let (mut handed_off, mut balanced) = (None, None);
    while joined.elapsed() < PERIOD * 4 + Duration::from_secs(2) && balanced.is_none() {
        let (on_a, on_b) = (gauge(&a).await, gauge(&b).await);
        let hosts = clients.hosts();
        // A moved stream is never counted twice: its old instance lets go before it returns.
        assert!(on_a + on_b <= 40, "gauges {on_a} + {on_b} for 40 streams");
        if handed_off.is_none() && metric(&a, "kubescaler_stream_rebalanced_total").await > 0.0 {
            handed_off = Some(joined.elapsed());
        }
        if within(&hosts, "stream-a", 20, 2)
            && within(&hosts, "stream-b", 20, 2)
            && hosts.values().sum::<usize>() == 40
        {
            balanced = Some(joined.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let balanced = balanced.unwrap_or_else(|| panic!("not 20 ± 2 each: {:?}", clients.hosts()));
    let handed_off = handed_off.expect("stream-a handed streams off");
    eprintln!(
        "stream-b started; stream-a handed off after {handed_off:?}, 20 ± 2 each after {balanced:?}; {:?}",
        clients.tally(|t| format!("{t:?}"))
    );
    // One period to see stream-b, one to be sure (the first tick may come at once, or a period
    // after it started); then the moved clients' reconnections.
    assert!(handed_off <= PERIOD * 2 + Duration::from_millis(300), "handed off only after {handed_off:?}");
    assert!(
        balanced - handed_off <= Duration::from_millis(1500),
        "balanced {:?} after the hand-off",
        balanced - handed_off
    );
    let (on_a, on_b) = (gauge(&a).await, gauge(&b).await);
    let hosts = clients.hosts();
    assert_eq!((on_a, on_b), (hosts["stream-a"], hosts["stream-b"]), "the gauges are the streams");
    assert_eq!(on_a + on_b, 40);
    let moved = metric(&a, "kubescaler_stream_rebalanced_total").await as u64;
    clients.tally(|t| {
        assert_eq!(t.conflicts, 0, "a reconnect met a 409: {t:?}");
        assert_eq!(t.broken, 0, "{t:?}");
        assert_eq!(t.reconnects, moved, "every handed-off client came back: {t:?}");
    });
    assert!((18..=22).contains(&moved), "{moved} streams moved");
    assert_eq!(metric(&b, "kubescaler_stream_rebalanced_total").await, 0.0);
    clients.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_rebalance_off_nothing_moves() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let b_port = free_port();
    let mut config = rebalancing(&base, &redis, "stream-a", 0);
    config.rebalance = false;
    let a = spawn_stream(config).await;
    let nginx = Nginx::start(&[a.addr, local(b_port)]).await;
    let clients = Clients::start(&nginx, &pairs(&base, 40).await);
    clients
        .wait_for("40 streams on stream-a", Duration::from_secs(15), |h| h.get("stream-a") == Some(&40))
        .await;
    let mut config = rebalancing(&base, &redis, "stream-b", b_port);
    config.rebalance = false;
    let b = spawn_stream(config).await;
    tokio::time::sleep(PERIOD * 6).await;
    assert_eq!(clients.hosts(), BTreeMap::from([("stream-a".to_owned(), 40)]));
    assert_eq!((gauge(&a).await, gauge(&b).await), (40, 0));
    assert_eq!(metric(&a, "kubescaler_stream_rebalanced_total").await, 0.0);
    clients.tally(|t| assert_eq!(t.reconnects, 0, "{t:?}"));
    // Both still publish: the fleet knows them (in the order of their last publications).
    let mut fleet: Vec<String> = redis.command(&["ZRANGE", "kubescaler:instances", "0", "-1"]).await.unwrap();
    fleet.sort();
    assert_eq!(fleet, ["stream-a", "stream-b"]);
    clients.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_instance_never_hands_anything_off() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let a = spawn_stream(rebalancing(&base, &redis, "stream-a", 0)).await;
    let clients = Clients::start(&a, &pairs(&base, 20).await);
    clients.wait_for("20 streams", Duration::from_secs(10), |h| h.get("stream-a") == Some(&20)).await;
    tokio::time::sleep(PERIOD * 8).await;
    assert_eq!(metric(&a, "kubescaler_stream_rebalanced_total").await, 0.0);
    clients.tally(|t| assert_eq!((t.reconnects, t.refused, t.broken), (0, 0, 0), "{t:?}"));
    assert_eq!(redis.command::<String>(&["GET", "kubescaler:instance:stream-a"]).await.unwrap(), "20");
    clients.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survivors_of_a_killed_instance_forget_it_and_balance_among_themselves() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let b_port = free_port();
    let a = spawn_stream(rebalancing(&base, &redis, "stream-a", 0)).await;
    let period = format!("{}ms", PERIOD.as_millis());
    let (c, _c_http, c_addr) = stream_process_with(
        &base,
        &redis.url(),
        &[("HOSTNAME", "stream-c"), ("REBALANCE", "true"), ("REBALANCE_PERIOD", &period)],
    )
    .await;
    let nginx = Nginx::start(&[a.addr, local(b_port), c_addr]).await;
    let clients = Clients::start(&nginx, &pairs(&base, 30).await);
    clients.wait_for("30 streams", Duration::from_secs(15), |h| h.values().sum::<usize>() == 30).await;
    // A third instance joins: 10 each.
    let b = spawn_stream(rebalancing(&base, &redis, "stream-b", b_port)).await;
    clients
        .wait_for("10 ± 2 each", PERIOD * 4 + Duration::from_secs(2), |h| {
            ["stream-a", "stream-b", "stream-c"].iter().all(|host| within(h, host, 10, 2))
        })
        .await;

    signal(&c, "-KILL");
    let killed = Instant::now();
    let deadline = killed + PERIOD * 3 + Duration::from_secs(1);
    loop {
        let mut fleet: Vec<String> =
            redis.command(&["ZRANGE", "kubescaler:instances", "0", "-1"]).await.unwrap();
        fleet.sort();
        let entry: Option<String> = redis.command(&["GET", "kubescaler:instance:stream-c"]).await.unwrap();
        if fleet == ["stream-a", "stream-b"] && entry.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stream-c still counted {:?} after its death: {fleet:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its clients come back once their locks expire (it could not release them), onto the others.
    clients
        .wait_for("15 ± 2 on each survivor", TTL + PERIOD * 4 + Duration::from_secs(2), |h| {
            h.values().sum::<usize>() == 30 && within(h, "stream-a", 15, 2) && within(h, "stream-b", 15, 2)
        })
        .await;
    eprintln!("after the kill: {:?} {:?}", clients.hosts(), clients.tally(|t| format!("{t:?}")));
    assert_eq!(gauge(&a).await + gauge(&b).await, 30);
    clients.stop().await;
}
