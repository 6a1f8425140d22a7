//! Redis too busy to answer for a while (the server frozen with SIGSTOP, its connections
//! open): streams go on while their locks are still valid, and end with `lock-lost` before the
//! locks can expire when it stays away too long — never after, even when an extension never
//! answers at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kubescaler_core::{ProfileId, UserId, keys};
use kubescaler_stream::locks::{
    AcquireError, ExtendError, Fleet, Lease, PairLocks, RedisLocks, RegistryUnavailable,
};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

const LOCK_TTL: Duration = Duration::from_secs(6);
const LOCK_REFRESH: Duration = Duration::from_secs(1);
const STREAMS: usize = 3;

async fn streams(base: &Running, redis: &RedisServer) -> (Running, Vec<Sse>, Vec<String>) {
    let mut config = stream_config(base, vec![redis.url()]);
    config.lock_ttl = LOCK_TTL;
    config.lock_refresh = Some(LOCK_REFRESH);
    let stream = spawn_stream(config).await;
    let mut open = Vec::new();
    let mut locks = Vec::new();
    for _ in 0..STREAMS {
        let (user, profile) = pair(base).await;
        let mut sse = Sse::open(&stream, &user, &profile).await.unwrap();
        sse.next(Duration::from_secs(2)).await.unwrap();
        open.push(sse);
        locks.push(keys::lock(UserId::parse(&user).unwrap(), ProfileId::parse(&profile).unwrap()));
    }
    (stream, open, locks)
}

/// Waits until the refresher has just extended the locks, and answers when each now expires
/// at the earliest (by Redis's clock, which is this host's).
async fn just_extended(redis: &RedisServer, locks: &[String]) -> Vec<Instant> {
    let deadline = Instant::now() + LOCK_REFRESH * 3;
    let mut last: i64 = redis.command(&["PTTL", &locks[0]]).await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let pttl: i64 = redis.command(&["PTTL", &locks[0]]).await.unwrap();
        if pttl > last + 100 {
            break;
        }
        last = pttl;
        assert!(Instant::now() < deadline, "the locks are not extended");
    }
    // The other locks are extended in the same round, at the same moment.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut expiries = Vec::new();
    for lock in locks {
        let asked = Instant::now();
        let pttl: i64 = redis.command(&["PTTL", lock]).await.unwrap();
        assert!(pttl > 0, "{lock}: {pttl}");
        expiries.push(asked + Duration::from_millis(pttl as u64));
    }
    expiries
}

#[tokio::test]
async fn redis_frozen_for_less_than_the_ttl_ends_no_stream() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let (stream, mut open, locks) = streams(&base, &redis).await;
    just_extended(&redis, &locks).await;

    // Two refreshes and a half without an answer: both extensions time out.
    redis.pause();
    let during =
        futures::future::join_all(open.iter_mut().map(|sse| sse.read_for(Duration::from_millis(2_500))));
    let during = during.await;
    redis.resume();
    let after = futures::future::join_all(open.iter_mut().map(|sse| sse.read_for(LOCK_REFRESH * 3))).await;

    for (i, ((before, paused_end), (messages, end))) in during.into_iter().zip(after).enumerate() {
        assert!(matches!(paused_end, Read::Quiet), "stream {i} during the pause: {paused_end:?}");
        assert!(matches!(end, Read::Quiet), "stream {i} after the pause: {end:?}");
        assert!(before > 0 && messages > 10, "stream {i}: {before} messages during, {messages} after");
    }
    for lock in &locks {
        let pttl: i64 = redis.command(&["PTTL", lock]).await.unwrap();
        assert!(
            pttl > (LOCK_TTL - LOCK_REFRESH * 2).as_millis() as i64,
            "{lock} extended again: {pttl} ms left"
        );
    }
    assert_eq!(metric(&stream, "kubescaler_stream_active_connections").await, STREAMS as f64);
}

#[tokio::test]
async fn redis_frozen_past_the_ttl_ends_every_stream_before_its_lock_expires() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let (stream, mut open, locks) = streams(&base, &redis).await;
    let expiries = just_extended(&redis, &locks).await;

    redis.pause();
    let ends = futures::future::join_all(open.iter_mut().map(|sse| async {
        let (_, end) = sse.read_for(LOCK_TTL + Duration::from_secs(2)).await;
        (end, Instant::now())
    }))
    .await;
    redis.resume();

    for (i, ((end, at), expires)) in ends.into_iter().zip(expiries).enumerate() {
        let Read::Event(event) = end else { panic!("stream {i} not ended by the service: {end:?}") };
        assert_eq!(event.event, "lock-lost", "stream {i}: {event:?}");
        assert!(
            event.data["reason"].as_str().is_some_and(|r| r.contains("could not be extended")),
            "{event:?}"
        );
        assert!(at < expires, "stream {i} ended {:?} after its lock could expire", at - expires);
        // It went on while the lock was valid, rather than ending at the first failed refresh.
        assert!(
            expires - at < LOCK_REFRESH * 2,
            "stream {i} ended {:?} before its lock could expire",
            expires - at
        );
        assert!(matches!(open[i].poll(Duration::from_millis(500)).await, Read::Ended), "stream {i} closed");
    }
    wait_metric(&stream, "kubescaler_stream_active_connections", 0.0, Duration::from_secs(2)).await;
}

/// Real Redis locks whose extensions never answer.
struct SilentExtensions(RedisLocks);

#[async_trait]
impl PairLocks for SilentExtensions {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    async fn ping(&self) -> Result<(), RegistryUnavailable> {
        self.0.ping().await
    }
    async fn acquire(&self, user: UserId, profile: ProfileId, ttl: Duration) -> Result<Lease, AcquireError> {
        self.0.acquire(user, profile, ttl).await
    }
    async fn extend(&self, _: &[Lease], _: Duration) -> Vec<Result<tokio::time::Instant, ExtendError>> {
        futures::future::pending().await
    }
    async fn release(&self, leases: &[Lease]) {
        self.0.release(leases).await
    }
    async fn publish(&self, host: &str, streams: u64, ttl: Duration) -> Result<Fleet, RegistryUnavailable> {
        self.0.publish(host, streams, ttl).await
    }
    async fn withdraw(&self, host: &str) {
        self.0.withdraw(host).await
    }
}

#[tokio::test]
async fn extensions_that_never_answer_end_the_stream_before_its_lock_expires() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let config = stream_config(&base, vec![redis.url()]);
    let shutdown = CancellationToken::new();
    let locks = Arc::new(SilentExtensions(RedisLocks::new(&config.redis).unwrap()));
    let kubescaler_stream::App { router, refresher, .. } = kubescaler_stream::app(
        &config,
        locks,
        redis_bindings(&config),
        shutdown.clone(),
        prometheus::Registry::new(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = Http::new(listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let (user, profile) = pair(&base).await;

    let asked = Instant::now();
    let mut sse = Sse::open(&http, &user, &profile).await.unwrap();
    let (messages, end) = sse.read_for(TTL + Duration::from_secs(2)).await;
    let ended = asked.elapsed();
    let Read::Event(event) = end else { panic!("not ended by the service: {end:?}") };
    assert_eq!(event.event, "lock-lost", "{event:?}");
    assert!(ended < TTL, "ended {ended:?} after asking, past the lock's TTL");
    assert!(ended > TTL - REFRESH * 2, "ended after {ended:?}: sooner than the lock's validity required");
    assert!(messages > 10, "{messages} messages");
    shutdown.cancel();
    server.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), refresher.drain()).await;
}
