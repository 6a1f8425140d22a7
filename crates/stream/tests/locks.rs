//! The conformance suite of the lock and launched registry: the Redis (Redlock) backend and
//! the in-process one must behave the same. Redis runs for real (`scripts/services.sh up`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use kubescaler_core::{ProfileId, UserId};
use kubescaler_redis::RedisArgs;
use kubescaler_stream::locks::{AcquireError, Fleet, InProcessLocks, PairLocks, RedisLocks};
use kubescaler_testkit::RedisServer;

fn pair() -> (UserId, ProfileId) {
    (UserId::new_random(), ProfileId::new_random())
}

const TTL: Duration = Duration::from_millis(600);

mod suite {
    use super::*;

    pub async fn one_holder_per_pair(locks: &dyn PairLocks) {
        locks.ping().await.unwrap();
        let (u, p) = pair();
        let lease = locks.acquire(u, p, Duration::from_secs(30)).await.unwrap();
        match locks.acquire(u, p, Duration::from_secs(30)).await {
            Err(AcquireError::Conflict { retry_after }) => {
                assert!(
                    retry_after <= Duration::from_secs(30) && retry_after > Duration::from_secs(25),
                    "{retry_after:?}"
                )
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        let (u2, p2) = pair();
        locks.acquire(u2, p2, Duration::from_secs(30)).await.expect("other pairs are independent");
        locks.release(&lease).await;
        locks.acquire(u, p, Duration::from_secs(30)).await.expect("free once released");
    }

    pub async fn expiry_and_extension(locks: &dyn PairLocks) {
        let (u, p) = pair();
        let lease = locks.acquire(u, p, TTL).await.unwrap();
        for _ in 0..3 {
            tokio::time::sleep(TTL / 2).await;
            locks.extend(&lease, TTL).await.expect("extended while held");
        }
        assert!(matches!(locks.acquire(u, p, TTL).await, Err(AcquireError::Conflict { .. })), "still held");
        tokio::time::sleep(TTL + Duration::from_millis(200)).await;
        let newer = locks.acquire(u, p, TTL).await.expect("free after the TTL");
        assert!(locks.extend(&lease, TTL).await.is_err(), "the old holder lost it");
        locks.release(&lease).await;
        assert!(
            matches!(locks.acquire(u, p, TTL).await, Err(AcquireError::Conflict { .. })),
            "an old lease cannot release the new holder's lock"
        );
        locks.release(&newer).await;
    }

    /// Needs a registry of its own: the fleet is whoever publishes there.
    pub async fn the_fleet_is_the_live_instances(locks: &dyn PairLocks) {
        let fleet = |entries: &[(&str, u64)]| -> Fleet {
            entries.iter().map(|(h, n)| ((*h).to_owned(), *n)).collect()
        };
        assert_eq!(locks.publish("stream-a", 3, TTL).await.unwrap(), fleet(&[("stream-a", 3)]));
        assert_eq!(
            locks.publish("stream-b", 5, TTL).await.unwrap(),
            fleet(&[("stream-a", 3), ("stream-b", 5)])
        );
        assert_eq!(
            locks.publish("stream-a", 4, TTL).await.unwrap(),
            fleet(&[("stream-a", 4), ("stream-b", 5)]),
            "a publication replaces the instance's count"
        );
        locks.withdraw("stream-b").await;
        assert_eq!(locks.publish("stream-a", 4, TTL).await.unwrap(), fleet(&[("stream-a", 4)]), "withdrawn");
        locks.publish("stream-c", 1, Duration::from_millis(200)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            locks.publish("stream-a", 4, TTL).await.unwrap(),
            fleet(&[("stream-a", 4)]),
            "an instance that stopped publishing is gone after its TTL"
        );
    }
}

/// The suite on one backend; `$test` is the test attribute (the in-process registry's run on
/// paused time: its TTLs pass at once, where Redis's take real time).
macro_rules! conformance {
    ($backend:ident, $make:expr, #[$test:meta]) => {
        mod $backend {
            use super::*;

            #[$test]
            async fn one_holder_per_pair() {
                let locks: Arc<dyn PairLocks> = $make.await;
                suite::one_holder_per_pair(&*locks).await;
            }

            #[$test]
            async fn expiry_and_extension() {
                let locks: Arc<dyn PairLocks> = $make.await;
                suite::expiry_and_extension(&*locks).await;
            }
        }
    };
}

async fn redis() -> Arc<dyn PairLocks> {
    let url = kubescaler_testkit::require_redis().await;
    Arc::new(RedisLocks::new(&RedisArgs { urls: vec![url], timeout: Duration::from_secs(1) }).unwrap())
}

async fn in_process() -> Arc<dyn PairLocks> {
    Arc::new(InProcessLocks::start())
}

conformance!(redis_backend, redis(), #[tokio::test]);
conformance!(in_process_backend, in_process(), #[tokio::test(start_paused = true)]);

#[tokio::test(start_paused = true)]
async fn in_process_launched_follows_the_lock() {
    let locks = InProcessLocks::start();
    let (u, p) = pair();
    assert!(!locks.is_launched(u, p));
    let lease = locks.acquire(u, p, TTL).await.unwrap();
    assert!(locks.is_launched(u, p));
    locks.release(&lease).await;
    assert!(!locks.is_launched(u, p));
    locks.acquire(u, p, Duration::from_millis(100)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!locks.is_launched(u, p), "expired");
}

#[tokio::test]
async fn redis_fleet() {
    let server = RedisServer::start().await;
    let locks =
        RedisLocks::new(&RedisArgs { urls: vec![server.url()], timeout: Duration::from_secs(1) }).unwrap();
    suite::the_fleet_is_the_live_instances(&locks).await;
}

#[tokio::test(start_paused = true)]
async fn in_process_fleet() {
    suite::the_fleet_is_the_live_instances(&InProcessLocks::start()).await;
}

#[tokio::test]
async fn the_fleet_needs_a_quorum_of_redis_instances() {
    let mut servers = [RedisServer::start().await, RedisServer::start().await, RedisServer::start().await];
    let urls = servers.iter().map(RedisServer::url).collect();
    let locks = RedisLocks::new(&RedisArgs { urls, timeout: Duration::from_millis(300) }).unwrap();
    locks.publish("stream-a", 7, Duration::from_secs(5)).await.unwrap();
    servers[0].stop().await;
    let fleet = locks.publish("stream-b", 2, Duration::from_secs(5)).await.expect("two of three answer");
    assert_eq!(fleet, Fleet::from([("stream-a".to_owned(), 7), ("stream-b".to_owned(), 2)]));
    servers[1].stop().await;
    let error =
        locks.publish("stream-b", 2, Duration::from_secs(5)).await.expect_err("one of three is too few");
    assert!(error.to_string().contains("1 Redis instances answered, 2 needed"), "{error}");
}
