//! The conformance suite of the lock and launched registry: the Redis (Redlock) backend and
//! the in-process one must behave the same. Redis runs for real (`scripts/services.sh up`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use kubescaler_core::{ProfileId, UserId};
use kubescaler_redis::RedisArgs;
use kubescaler_stream::locks::{AcquireError, ExtendError, Fleet, InProcessLocks, PairLocks, RedisLocks};
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
        locks.release(&[lease]).await;
        locks.acquire(u, p, Duration::from_secs(30)).await.expect("free once released");
    }

    pub async fn expiry_and_extension(locks: &dyn PairLocks) {
        let (u, p) = pair();
        let lease = locks.acquire(u, p, TTL).await.unwrap();
        for _ in 0..3 {
            tokio::time::sleep(TTL / 2).await;
            let extended = locks.extend(std::slice::from_ref(&lease), TTL).await;
            assert!(matches!(extended.as_slice(), [Ok(_)]), "extended while held: {extended:?}");
        }
        assert!(matches!(locks.acquire(u, p, TTL).await, Err(AcquireError::Conflict { .. })), "still held");
        tokio::time::sleep(TTL + Duration::from_millis(200)).await;
        let newer = locks.acquire(u, p, TTL).await.expect("free after the TTL");
        let extended = locks.extend(std::slice::from_ref(&lease), TTL).await;
        assert!(
            matches!(extended.as_slice(), [Err(ExtendError::Lost(_))]),
            "the old holder lost it: {extended:?}"
        );
        locks.release(&[lease]).await;
        assert!(
            matches!(locks.acquire(u, p, TTL).await, Err(AcquireError::Conflict { .. })),
            "an old lease cannot release the new holder's lock"
        );
        locks.release(&[newer]).await;
    }

    /// Many leases in one call, across batch boundaries: each lock is extended or refused by its
    /// own token, the answers come in order, and a release takes only what is still its own.
    pub async fn leases_in_batches(locks: &dyn PairLocks) {
        const LEASES: usize = 2_500;
        let ttl = Duration::from_secs(30);
        let mut leases = Vec::with_capacity(LEASES);
        for _ in 0..LEASES {
            let (u, p) = pair();
            leases.push(locks.acquire(u, p, ttl).await.unwrap());
        }
        let extended = locks.extend(&leases, ttl).await;
        assert_eq!(extended.len(), LEASES);
        assert!(extended.iter().all(Result::is_ok), "{:?}", extended.iter().find(|e| e.is_err()));
        // Every 7th pair moves to another holder; the others stay ours.
        let moved: Vec<_> = leases.iter().step_by(7).cloned().collect();
        locks.release(&moved).await;
        let mut others = Vec::new();
        for lease in &moved {
            others.push(locks.acquire(lease.user, lease.profile, ttl).await.expect("released, so free"));
        }
        let verdicts = locks.extend(&leases, ttl).await;
        assert_eq!(verdicts.len(), LEASES);
        for (i, verdict) in verdicts.iter().enumerate() {
            match (i % 7, verdict) {
                (0, Err(ExtendError::Lost(_))) | (1.., Ok(_)) => {}
                other => panic!("lease {i}: {other:?}"),
            }
        }
        locks.release(&leases).await;
        for lease in &moved {
            let taken = locks.acquire(lease.user, lease.profile, TTL).await;
            assert!(
                matches!(taken, Err(AcquireError::Conflict { .. })),
                "a stale lease released the new holder's lock"
            );
        }
        locks.acquire(leases[1].user, leases[1].profile, TTL).await.expect("released with the batch");
        locks.release(&others).await;
    }

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

/// The suite on one backend, each check on a registry of its own (the fleet is whoever
/// publishes there); `$test` is the test attribute: the in-process registry runs on paused
/// time, where its TTLs pass at once, and Redis's take real time.
macro_rules! conformance {
    ($backend:ident, $fresh:path, #[$test:meta]) => {
        mod $backend {
            use super::*;

            conformance!(@tests $fresh, #[$test]; one_holder_per_pair, expiry_and_extension,
                leases_in_batches, the_fleet_is_the_live_instances);
        }
    };
    (@tests $fresh:path, #[$test:meta]; $($check:ident),+) => {
        $(
            #[$test]
            async fn $check() {
                let registry = $fresh().await;
                suite::$check(&*registry.locks).await;
            }
        )+
    };
}

/// A registry for one check, and the Redis server it runs on, if any (stopped when dropped).
struct Fresh {
    locks: Arc<dyn PairLocks>,
    _server: Option<RedisServer>,
}

async fn fresh_redis() -> Fresh {
    let server = RedisServer::start().await;
    let args = RedisArgs { urls: vec![server.url()], timeout: Duration::from_secs(1) };
    Fresh { locks: Arc::new(RedisLocks::new(&args).unwrap()), _server: Some(server) }
}

async fn fresh_in_process() -> Fresh {
    Fresh { locks: Arc::new(InProcessLocks::start()), _server: None }
}

conformance!(redis_backend, fresh_redis, #[tokio::test]);
conformance!(in_process_backend, fresh_in_process, #[tokio::test(start_paused = true)]);

#[tokio::test(start_paused = true)]
async fn in_process_launched_follows_the_lock() {
    let locks = InProcessLocks::start();
    let (u, p) = pair();
    assert!(!locks.is_launched(u, p));
    let lease = locks.acquire(u, p, TTL).await.unwrap();
    assert!(locks.is_launched(u, p));
    locks.release(&[lease]).await;
    assert!(!locks.is_launched(u, p));
    locks.acquire(u, p, Duration::from_millis(100)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!locks.is_launched(u, p), "expired");
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

/// A refresh of thousands of locks costs each Redis instance one script call per 1,000 locks,
/// every lock and marker is extended by it, and a marker that went missing is written again.
#[tokio::test]
async fn redis_extends_a_thousand_locks_per_call() {
    let server = RedisServer::start().await;
    let locks =
        RedisLocks::new(&RedisArgs { urls: vec![server.url()], timeout: Duration::from_secs(1) }).unwrap();
    let mut leases = Vec::new();
    for _ in 0..2_500 {
        let (u, p) = pair();
        leases.push(locks.acquire(u, p, Duration::from_secs(5)).await.unwrap());
    }
    // The first call also loads the script into Redis.
    locks.extend(&leases[..1], Duration::from_secs(5)).await;
    let before = server.command_calls().await;
    let verdicts = locks.extend(&leases, Duration::from_secs(60)).await;
    assert!(verdicts.iter().all(Result::is_ok));
    let after = server.command_calls().await;
    let calls = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
    assert_eq!(calls("evalsha"), 3, "{after:?}");
    assert_eq!(calls("pexpire"), 5_000, "lock and marker each");
    let lease = &leases[2_499];
    let key = |kind| format!("kubescaler:{kind}:{}:{}", lease.user, lease.profile);
    let _: i64 = server.command(&["DEL", &key("launched")]).await.unwrap();
    locks.extend(std::slice::from_ref(lease), Duration::from_secs(60)).await;
    for kind in ["lock", "launched"] {
        let ttl: i64 = server.command(&["PTTL", &key(kind)]).await.unwrap();
        assert!(ttl > 55_000, "{kind} extended to {ttl} ms");
    }
}
