//! How streams end: disconnects, lock loss, unbinding, shutdown, crashes, slow readers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kubescaler_core::{ProfileId, UserId, keys};
use kubescaler_stream::locks::{
    AcquireError, ExtendError, Fleet, Lease, PairLocks, RedisLocks, RegistryUnavailable,
};
use kubescaler_stream::sessions::Refusal;
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

#[tokio::test]
async fn a_disconnected_pair_is_refused_until_its_ttl_passes() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let stream = spawn_stream(stream_config(&base, vec![redis.url()])).await;
    let (user, profile) = pair(&base).await;
    let marker = keys::launched(UserId::parse(&user).unwrap(), ProfileId::parse(&profile).unwrap());

    let mut sse = Sse::open(&stream, &user, &profile).await.unwrap();
    sse.next(Duration::from_secs(2)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let exists: i64 = redis.command(&["EXISTS", &marker]).await.unwrap();
    assert_eq!(exists, 1, "the refresher keeps the marker alive past one TTL while streaming");
    drop(sse);
    let closed = Instant::now();
    wait_metric(&stream, "kubescaler_stream_active_connections", 0.0, Duration::from_secs(2)).await;

    let (status, _, _) = Sse::open(&stream, &user, &profile).await.err().unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "refused right after the disconnect");
    loop {
        match Sse::open(&stream, &user, &profile).await {
            Ok(_) => break,
            Err((StatusCode::CONFLICT, _, _)) => {
                assert!(closed.elapsed() < TTL + Duration::from_secs(2), "still locked long after the TTL");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(
        closed.elapsed() >= TTL - REFRESH - Duration::from_millis(200),
        "accepted before the TTL: {:?}",
        closed.elapsed()
    );
}

#[tokio::test]
async fn release_on_disconnect_frees_the_pair_at_once() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let mut config = stream_config(&base, vec![redis.url()]);
    config.release_on_disconnect = true;
    let stream = spawn_stream(config).await;
    let (user, profile) = pair(&base).await;
    let sse = Sse::open(&stream, &user, &profile).await.unwrap();
    drop(sse);
    wait_metric(&stream, "kubescaler_stream_active_connections", 0.0, Duration::from_secs(2)).await;
    let deadline = Instant::now() + Duration::from_millis(500);
    while Sse::open(&stream, &user, &profile).await.is_err() {
        assert!(Instant::now() < deadline, "not released at once");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redis_lost_mid_stream_ends_it_with_lock_lost_then_recovers() {
    let mut redis = RedisServer::start().await;
    let base = spawn_base().await;
    let stream = spawn_stream(stream_config(&base, vec![redis.url()])).await;
    let (user, profile) = pair(&base).await;
    let mut sse = Sse::open(&stream, &user, &profile).await.unwrap();
    sse.next(Duration::from_secs(2)).await.unwrap();

    redis.stop().await;
    let stopped = Instant::now();
    let end = sse.next_control(TTL + Duration::from_secs(1)).await.expect("the stream must end");
    assert_eq!(end.event, "lock-lost", "{end:?}");
    assert!(stopped.elapsed() < TTL, "ended within the TTL: {:?}", stopped.elapsed());
    assert!(sse.next(Duration::from_millis(500)).await.is_none(), "nothing after lock-lost");
    wait_metric(&stream, "kubescaler_stream_active_connections", 0.0, Duration::from_secs(2)).await;

    let (other_user, other_profile) = pair(&base).await;
    let (status, _, body) = Sse::open(&stream, &other_user, &other_profile).await.err().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let ready = stream.wait_unready(Duration::from_secs(3)).await;
    assert_eq!(ready["failing"], json!(["redis"]));

    redis.restart().await;
    stream.wait_ready(Duration::from_secs(10)).await;
    let mut again = Sse::open(&stream, &other_user, &other_profile).await.unwrap();
    assert!(again.next(Duration::from_secs(2)).await.is_some());
}

#[tokio::test]
async fn unbinding_mid_stream_ends_it_within_one_refresh() {
    let redis = require_redis().await;
    let base = spawn_base().await;
    let stream = spawn_stream(stream_config(&base, vec![redis])).await;

    let (user, profile) = pair(&base).await;
    let mut by_delete = Sse::open(&stream, &user, &profile).await.unwrap();
    let (user2, profile2) = pair(&base).await;
    let mut by_removal = Sse::open(&stream, &user2, &profile2).await.unwrap();

    let changed = Instant::now();
    assert_eq!(base.delete(&format!("/profiles/{profile}")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(base.put(&format!("/profiles/{profile2}"), json!({ "users": [] })).await.0, StatusCode::OK);
    for sse in [&mut by_delete, &mut by_removal] {
        let end = sse.next_control(REFRESH * 3).await.expect("the stream must end");
        assert_eq!(end.event, "unbound", "{end:?}");
    }
    assert!(changed.elapsed() < REFRESH * 2 + Duration::from_millis(500), "{:?}", changed.elapsed());
    wait_metric(&stream, "kubescaler_stream_active_connections", 0.0, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn shutdown_sends_every_client_away_and_frees_its_pairs_at_once() {
    let redis = require_redis().await;
    let base = spawn_base().await;
    let mut leaving = spawn_stream(stream_config(&base, vec![redis.clone()])).await;
    let staying = spawn_stream(stream_config(&base, vec![redis])).await;
    let mut pairs = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..5 {
        let (u, p) = pair(&base).await;
        let mut sse = Sse::open(&leaving, &u, &p).await.unwrap();
        sse.next(Duration::from_secs(2)).await.unwrap();
        streams.push(sse);
        pairs.push((u, p));
    }

    leaving.shutdown.cancel();
    let signalled = Instant::now();
    // Not ready at once: 503, or no longer accepting connections at all.
    let ready = leaving.client.get(leaving.url("/readyz")).send().await;
    assert!(ready.is_err() || ready.unwrap().status() == StatusCode::SERVICE_UNAVAILABLE);
    for sse in &mut streams {
        let end = sse.next_control(Duration::from_secs(2)).await.expect("a shutdown event");
        assert_eq!(end.event, "shutdown");
        assert!(end.data["reconnect_after_ms"].as_u64().is_some());
    }
    for (u, p) in &pairs {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match Sse::open(&staying, u, p).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "pair not free within 1 s of the shutdown: {e:?}")
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::timeout(Duration::from_secs(5), leaving.task.take().unwrap())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(signalled.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_slow_reader_skips_messages_instead_of_queueing_them() {
    const MESSAGE: usize = 25_000;
    let redis = require_redis().await;
    let base = spawn_base().await;
    let mut config = stream_config(&base, vec![redis]);
    config.stream_message_bytes = MESSAGE;
    config.stream_interval = Duration::from_millis(100);
    let stream = spawn_stream(config).await;
    let (user, profile) = pair(&base).await;

    // 250 KB/s offered, 10 KB/s read for 20 s, through a client socket with a small receive
    // buffer (as a slow network would have), so backpressure reaches the service.
    let mut reader = SlowReader::connect(stream.addr, &user, &profile).await;
    let client = reader.local_addr();
    let mut seqs = Vec::new();
    let mut most_queued = 0;
    for _ in 0..20 {
        seqs.extend(reader.read(10_000, Duration::from_millis(800)).await);
        // Let what the last read made room for move, then account for every byte the service
        // took from the feed for this (its only) stream: read by the client, waiting in the
        // client's receive queue, waiting in the service socket's send queue — the rest is
        // queued inside the service. HTTP framing read by the client (< 1 KB here) makes this
        // slightly low, which a 25 KB message dwarfs.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let taken = metric(&stream, "kubescaler_stream_bytes_sent_total").await as u64;
        let (_, client_unread) = tcp_queues(client, stream.addr);
        let (service_unacked, _) = tcp_queues(stream.addr, client);
        let queued = taken.saturating_sub(reader.total + client_unread + service_unacked);
        most_queued = most_queued.max(queued);
    }
    assert!(
        most_queued <= 2 * MESSAGE as u64,
        "the service queued {most_queued} bytes for one slow connection (more than 2 messages)"
    );
    assert!(seqs.len() >= 3, "{seqs:?}");
    let gaps = seqs.windows(2).filter(|w| w[1] > w[0] + 1).count();
    assert!(gaps > 0, "gaps in seq: {seqs:?}");
    assert!(metric(&stream, "kubescaler_stream_messages_dropped_total").await > 0.0, "drops counted");

    // What the slow client reads is current: compare with a fresh stream's first message.
    let newest = *seqs.last().unwrap();
    let (u2, p2) = pair(&base).await;
    let mut probe = Sse::open(&stream, &u2, &p2).await.unwrap();
    let now = probe.next(Duration::from_secs(2)).await.unwrap().id.unwrap();
    // Behind by what the socket buffers hold, not by everything generated since it connected
    // (200 messages in 20 s): under 15 s old at 10 messages a second.
    let behind = now.saturating_sub(newest);
    eprintln!("slow reader: most queued in the service {most_queued} B, newest message {behind} behind");
    assert!(behind <= 150, "the slow reader's newest message is {behind} messages ({} s) old", behind / 10);
}

/// Real Redis locks, but the instance starts shutting down while a lock is being taken.
struct ShutdownDuringAcquire {
    inner: RedisLocks,
    shutdown: CancellationToken,
}

#[async_trait]
impl PairLocks for ShutdownDuringAcquire {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ping(&self) -> Result<(), RegistryUnavailable> {
        self.inner.ping().await
    }
    async fn acquire(&self, user: UserId, profile: ProfileId, ttl: Duration) -> Result<Lease, AcquireError> {
        let lease = self.inner.acquire(user, profile, ttl).await;
        self.shutdown.cancel();
        lease
    }
    async fn extend(
        &self,
        leases: &[Lease],
        ttl: Duration,
    ) -> Vec<Result<tokio::time::Instant, ExtendError>> {
        self.inner.extend(leases, ttl).await
    }
    async fn release(&self, leases: &[Lease]) {
        self.inner.release(leases).await
    }
    async fn publish(&self, host: &str, streams: u64, ttl: Duration) -> Result<Fleet, RegistryUnavailable> {
        self.inner.publish(host, streams, ttl).await
    }
    async fn withdraw(&self, host: &str) {
        self.inner.withdraw(host).await
    }
}

#[tokio::test]
async fn a_lock_taken_as_the_shutdown_starts_is_given_back_at_once() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let config = stream_config(&base, vec![redis.url()]);
    let shutdown = CancellationToken::new();
    let locks = Arc::new(ShutdownDuringAcquire {
        inner: RedisLocks::new(&config.redis).unwrap(),
        shutdown: shutdown.clone(),
    });
    let kubescaler_stream::App { sessions, .. } = kubescaler_stream::app(
        &config,
        locks,
        redis_bindings(&config),
        shutdown,
        prometheus::Registry::new(),
    )
    .unwrap();
    let (user, profile) = pair(&base).await;
    let (user, profile) = (UserId::parse(&user).unwrap(), ProfileId::parse(&profile).unwrap());

    let refused = sessions.open(user, profile).await.expect_err("refused: the instance is stopping");
    assert!(matches!(refused, Refusal::ShuttingDown), "{refused:?}");
    let markers: i64 = redis.command(&["EXISTS", &keys::launched(user, profile)]).await.unwrap();
    assert_eq!(markers, 0, "no launched marker left behind");
    let other = RedisLocks::new(&config.redis).unwrap();
    other.acquire(user, profile, TTL).await.expect("the pair is free for another replica at once");
}

fn gauge(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .find(|family| family.name() == name)
        .map(|family| family.get_metric()[0].get_gauge().get_value())
        .unwrap_or_else(|| panic!("no {name} registered"))
}

#[tokio::test]
async fn the_gauge_returns_to_zero_as_the_instance_shuts_down() {
    use futures::StreamExt;
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let config = stream_config(&base, vec![redis.url()]);
    let shutdown = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let locks = Arc::new(RedisLocks::new(&config.redis).unwrap());
    let kubescaler_stream::App { sessions, refresher, .. } =
        kubescaler_stream::app(&config, locks, redis_bindings(&config), shutdown.clone(), registry.clone())
            .unwrap();
    let mut bodies = Vec::new();
    let mut pairs = Vec::new();
    for _ in 0..3 {
        let (user, profile) = pair(&base).await;
        let (user, profile) = (UserId::parse(&user).unwrap(), ProfileId::parse(&profile).unwrap());
        let mut body = Box::pin(sessions.open(user, profile).await.unwrap().into_body());
        body.next().await.unwrap().unwrap();
        bodies.push(body);
        pairs.push((user, profile));
    }
    assert_eq!(gauge(&registry, "kubescaler_stream_active_connections"), 3.0);

    shutdown.cancel();
    for body in &mut bodies {
        let mut last = None;
        while let Some(frame) = tokio::time::timeout(Duration::from_secs(2), body.next()).await.unwrap() {
            last = Some(frame.unwrap());
        }
        let last = String::from_utf8(last.unwrap().to_vec()).unwrap();
        assert!(last.starts_with("event: shutdown\n"), "{last}");
    }
    drop(bodies);
    assert_eq!(gauge(&registry, "kubescaler_stream_active_connections"), 0.0);
    tokio::time::timeout(Duration::from_secs(2), refresher.drain()).await.unwrap();
    let other = RedisLocks::new(&config.redis).unwrap();
    for (user, profile) in pairs {
        other.acquire(user, profile, TTL).await.expect("released by the shutdown");
    }
}
