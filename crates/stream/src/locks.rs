//! The lock and launched registry: one stream per user–profile pair across every replica.
//!
//! [`RedisLocks`] is Redlock (crate `rslock`) over `REDIS_URLS`: a random token per
//! acquisition, a quorum of N/2+1 instances, validity = TTL − time spent acquiring − drift, and
//! extension or release only while the token still matches. After the lock, the pair's
//! launched marker is written (same TTL) on the instances, where main reads it.
//!
//! A refused acquisition is told apart from an outage by asking the instances for the lock
//! key's remaining TTL: a quorum answering with a live key is a conflict (409, retry when that
//! TTL runs out), fewer answers than a quorum is Redis unavailable (503).
//!
//! Extensions are this module's own script, not rslock's: rslock deletes the lock on every
//! instance when an extension misses its quorum, so one slow answer would give away a lock
//! that is still valid for most of its TTL. Here an extension tells a lock that is gone (held by
//! another token, or expired) from one that could not be confirmed (too few answers), and
//! answers how long the lock stays valid, Redlock's way: from the moment the extension was
//! sent, TTL minus the clock drift allowance.
//!
//! The same registry holds the fleet: every stream instance publishes its number of open
//! streams under its host name with a short TTL ([`PairLocks::publish`]), and reads everyone's
//! — what rebalancing decides on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kubescaler_core::{ProfileId, UserId, keys};
use kubescaler_redis::RedisArgs;
use kubescaler_redis::{Failures, InstanceError, QuorumError, RedisInstances};
use tokio::time::Instant;

/// A held lock on a pair.
#[derive(Debug, Clone)]
pub struct Lease {
    pub user: UserId,
    pub profile: ProfileId,
    /// Until when the acquisition guarantees the lock (see [`validity_end`]).
    pub valid_until: Instant,
    token: Vec<u8>,
}

/// Until when a lock set or extended with `ttl` by commands sent at `sent` is ours: Redlock's
/// validity, TTL minus an allowance for the instances' clocks running faster than ours (1 % of
/// the TTL plus 2 ms, as rslock and the Redlock description reckon it).
pub fn validity_end(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl.saturating_sub(ttl / 100 + Duration::from_millis(2))
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AcquireError {
    #[error("the pair is streaming elsewhere; its lock expires in {retry_after:?} at the latest")]
    Conflict { retry_after: Duration },
    #[error("lock registry unavailable: {0}")]
    Unavailable(#[source] RegistryUnavailable),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ExtendError {
    /// Held by another token, or expired: the lock is not ours any more.
    #[error("lock lost: {0}")]
    Lost(#[source] Lost),
    /// Too few instances answered to confirm it: the lock may still be ours, until the validity
    /// of its last acquisition or extension runs out.
    #[error("lock not extended: {0}")]
    Unavailable(#[source] RegistryUnavailable),
}

/// Why a lock is not ours any more.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Lost {
    /// Too many instances hold another token or no lock for a quorum ever to be ours again.
    #[error("expired or taken by another stream on {not_ours} of {instances} Redis instances")]
    OnInstances { not_ours: usize, instances: usize },
    /// The in-process registry holds another token, or none.
    #[error("expired or taken by another stream")]
    InProcess,
}

/// Why the registry could not do, or confirm, what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryUnavailable {
    /// Fewer Redis instances than a quorum answered.
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    /// The lock was taken, its launched marker not written on a quorum (the lock is released).
    #[error("launched marker not written: {0}")]
    Marker(#[source] QuorumError),
    /// Redlock failed for another reason than a lock held elsewhere.
    #[error("{0}")]
    Redlock(#[source] Arc<rslock::LockError>),
    /// Redlock refused the lock, yet no instance holds it (connections being remade).
    #[error("the lock could not be taken though no instance holds it")]
    NoHolder,
    /// Too few instances confirmed an extension; the others failed to answer.
    #[error("{extended} of {instances} Redis instances extended it, {needed} needed: {}", Failures(.failures))]
    Unconfirmed { extended: usize, instances: usize, needed: usize, failures: Vec<InstanceError> },
    /// Too few instances answered a publication of the fleet.
    #[error("{answered} Redis instances answered, {needed} needed: {}", Failures(.failures))]
    Fleet { answered: usize, needed: usize, failures: Vec<InstanceError> },
    /// The registry did not answer within the time its caller allows.
    #[error("no answer within {0}")]
    NoAnswer(&'static str),
}

/// Locks and launched markers of pairs.
#[async_trait]
pub trait PairLocks: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    async fn ping(&self) -> Result<(), RegistryUnavailable>;
    /// Takes the pair's lock for `ttl` (one attempt, no waiting) and writes its marker.
    async fn acquire(&self, user: UserId, profile: ProfileId, ttl: Duration) -> Result<Lease, AcquireError>;
    /// Extends the lock and the marker by `ttl`; answers until when the lock is now valid.
    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<Instant, ExtendError>;
    /// Releases the lock (if still ours) and removes the marker, best effort.
    async fn release(&self, lease: &Lease);
    /// Publishes that instance `host` has `streams` open, for `ttl`, and answers the open
    /// streams of every live instance, `host` included.
    async fn publish(&self, host: &str, streams: u64, ttl: Duration) -> Result<Fleet, RegistryUnavailable>;
    /// Removes `host` from the fleet at once (it stops), best effort.
    async fn withdraw(&self, host: &str);
}

/// Open streams per live instance, by host name.
pub type Fleet = BTreeMap<String, u64>;

/// Extends the lock, and the marker with it, only while the lock holds the lease's token:
/// 1 extended, 0 not ours.
const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  return 1
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
";

/// Writes the instance's entry and its place in the index (scored by expiry, by Redis' clock, so
/// the instances' clocks never matter), drops expired hosts from the index, and answers
/// `host, streams, …` for the live ones. The entries are read by name from the index, which a
/// standalone Redis allows (each instance of `REDIS_URLS` is one).
const PUBLISH: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], now_ms + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
redis.call('PEXPIRE', KEYS[2], ttl)
local fleet = {}
for _, host in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local streams = redis.call('GET', ARGV[4] .. host)
  if streams then
    fleet[#fleet + 1] = host
    fleet[#fleet + 1] = streams
  end
end
return fleet
";

const WITHDRAW: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
";

pub struct RedisLocks {
    manager: rslock::LockManager,
    instances: RedisInstances,
    extend: redis::Script,
    release: redis::Script,
    publish: redis::Script,
    withdraw: redis::Script,
}

impl std::fmt::Debug for RedisLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLocks").field("instances", &self.instances).finish_non_exhaustive()
    }
}

impl RedisLocks {
    pub fn new(config: &RedisArgs) -> Result<Self, redis::RedisError> {
        let clients =
            config.urls.iter().map(|url| redis::Client::open(url.as_str())).collect::<Result<Vec<_>, _>>()?;
        let mut manager = rslock::LockManager::from_clients(clients);
        // One attempt: a conflict is answered at once, never waited out on the request path.
        manager.set_retry(1, Duration::from_millis(1));
        Ok(Self {
            manager,
            instances: RedisInstances::new(config)?,
            extend: redis::Script::new(EXTEND),
            release: redis::Script::new(RELEASE),
            publish: redis::Script::new(PUBLISH),
            withdraw: redis::Script::new(WITHDRAW),
        })
    }

    async fn write_marker(&self, lease: &Lease, ttl: Duration) -> Result<(), RegistryUnavailable> {
        let mut set = redis::cmd("SET");
        set.arg(keys::launched(lease.user, lease.profile)).arg("1").arg("PX").arg(ttl.as_millis() as u64);
        self.instances.on_quorum::<()>(&set).await.map(drop).map_err(RegistryUnavailable::Marker)
    }
}

#[async_trait]
impl PairLocks for RedisLocks {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), RegistryUnavailable> {
        Ok(self.instances.on_quorum::<String>(&redis::cmd("PING")).await.map(drop)?)
    }

    async fn acquire(&self, user: UserId, profile: ProfileId, ttl: Duration) -> Result<Lease, AcquireError> {
        let resource = keys::lock(user, profile);
        // A second attempt only when the first failed with nobody holding the key: a
        // connection the lock manager had to remake after a Redis restart, not a conflict.
        for attempt in 0..2 {
            let started = Instant::now();
            match self.manager.lock(resource.as_bytes(), ttl).await {
                Ok(lock) => {
                    let lease =
                        Lease { user, profile, valid_until: validity_end(started, ttl), token: lock.val };
                    if let Err(e) = self.write_marker(&lease, ttl).await {
                        self.release(&lease).await;
                        return Err(AcquireError::Unavailable(e));
                    }
                    return Ok(lease);
                }
                Err(rslock::LockError::Unavailable) => {
                    // Refused: held elsewhere, or too few instances answered? Ask for the TTL.
                    let mut pttl = redis::cmd("PTTL");
                    pttl.arg(&resource);
                    let answers = self
                        .instances
                        .on_quorum::<i64>(&pttl)
                        .await
                        .map_err(|e| AcquireError::Unavailable(e.into()))?;
                    // PTTL: -2 no key, -1 no expiry (not ours, but held), else milliseconds left.
                    let held: Vec<i64> = answers.into_iter().filter(|ttl| *ttl != -2).collect();
                    if !held.is_empty() {
                        // The longest TTL among holders bounds when the lock can be taken again.
                        let longest = held.into_iter().max().unwrap_or(0);
                        let retry_after = if longest > 0 {
                            Duration::from_millis(longest as u64)
                        } else {
                            ttl.saturating_sub(started.elapsed())
                        };
                        return Err(AcquireError::Conflict { retry_after });
                    }
                    if attempt == 1 {
                        break;
                    }
                }
                Err(e) => return Err(AcquireError::Unavailable(RegistryUnavailable::Redlock(Arc::new(e)))),
            }
        }
        Err(AcquireError::Unavailable(RegistryUnavailable::NoHolder))
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<Instant, ExtendError> {
        let sent = Instant::now();
        let replies = self
            .instances
            .each(|mut connection| {
                let mut invocation = self.extend.prepare_invoke();
                invocation
                    .key(keys::lock(lease.user, lease.profile))
                    .key(keys::launched(lease.user, lease.profile))
                    .arg(lease.token.as_slice())
                    .arg(ttl.as_millis() as u64);
                async move { invocation.invoke_async::<i64>(&mut connection).await }
            })
            .await;
        let instances = replies.len();
        let mut extended = 0;
        let mut failures = Vec::new();
        for reply in replies {
            match reply {
                Ok(1) => extended += 1,
                Ok(_) => {}
                Err(failure) => failures.push(failure),
            }
        }
        let needed = self.instances.quorum();
        if extended >= needed {
            if !failures.is_empty() {
                tracing::warn!(failures = %Failures(&failures), "some Redis instances did not extend a lock; a quorum did");
            }
            return Ok(validity_end(sent, ttl));
        }
        let not_ours = instances - extended - failures.len();
        if extended + failures.len() < needed {
            // The instances that said "not ours" alone leave too few to ever make a quorum.
            return Err(ExtendError::Lost(Lost::OnInstances { not_ours, instances }));
        }
        Err(ExtendError::Unavailable(RegistryUnavailable::Unconfirmed {
            extended,
            instances,
            needed,
            failures,
        }))
    }

    async fn release(&self, lease: &Lease) {
        // Lock and marker go together, and only while the lock is still ours: a marker
        // written by the replica that took the pair over must survive.
        self.instances
            .each(|mut connection| {
                let mut invocation = self.release.prepare_invoke();
                invocation
                    .key(keys::lock(lease.user, lease.profile))
                    .key(keys::launched(lease.user, lease.profile))
                    .arg(lease.token.as_slice());
                async move { invocation.invoke_async::<i64>(&mut connection).await }
            })
            .await;
    }

    async fn publish(&self, host: &str, streams: u64, ttl: Duration) -> Result<Fleet, RegistryUnavailable> {
        let prefix = keys::instance("");
        let replies = self
            .instances
            .each(|mut connection| {
                let mut invocation = self.publish.prepare_invoke();
                invocation
                    .key(keys::instance(host))
                    .key(keys::INSTANCES)
                    .arg(host)
                    .arg(streams)
                    .arg(ttl.as_millis() as u64)
                    .arg(&prefix);
                async move { invocation.invoke_async::<Vec<(String, u64)>>(&mut connection).await }
            })
            .await;
        let (answered, failures): (Vec<_>, Vec<_>) = replies.into_iter().partition(Result::is_ok);
        let answered: Vec<Vec<(String, u64)>> = answered.into_iter().filter_map(Result::ok).collect();
        let needed = self.instances.quorum();
        if answered.len() < needed {
            let failures = failures.into_iter().filter_map(Result::err).collect();
            return Err(RegistryUnavailable::Fleet { answered: answered.len(), needed, failures });
        }
        // Every instance writes its entry to all Redis instances at once; one that missed a write
        // (it was down) holds an older count, so the largest is the latest.
        let mut fleet = Fleet::new();
        for (instance, streams) in answered.into_iter().flatten() {
            let entry = fleet.entry(instance).or_default();
            *entry = (*entry).max(streams);
        }
        Ok(fleet)
    }

    async fn withdraw(&self, host: &str) {
        self.instances
            .each(|mut connection| {
                let mut invocation = self.withdraw.prepare_invoke();
                invocation.key(keys::instance(host)).key(keys::INSTANCES).arg(host);
                async move { invocation.invoke_async::<i64>(&mut connection).await }
            })
            .await;
    }
}

/// The in-process registry, for the all-in-one process: one process needs no Redlock, but the
/// same semantics — one holder per pair, a random token per acquisition, expiry `ttl` after
/// the last extension, conflicts that say when the holder's lock expires, release only by the
/// holder. The launched marker is the held, unexpired lock itself.
#[derive(Debug, Default)]
pub struct InProcessLocks {
    pairs: std::sync::Mutex<InProcessPairs>,
    /// Host → (open streams, expiry): the fleet, of one instance in the all-in-one.
    fleet: std::sync::Mutex<BTreeMap<String, (u64, tokio::time::Instant)>>,
}

#[derive(Debug, Default)]
struct InProcessPairs {
    held: std::collections::HashMap<(UserId, ProfileId), (u128, tokio::time::Instant)>,
    /// Expired entries are swept when the map grows past this, so it stays bounded.
    sweep_at: usize,
}

impl InProcessLocks {
    pub fn new() -> Self {
        Self::default()
    }

    fn pairs(&self) -> std::sync::MutexGuard<'_, InProcessPairs> {
        // Every change is a single insert or remove: a poisoned map is still consistent.
        self.pairs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the pair's lock is held now (what main calls "launched").
    pub fn is_launched(&self, user: UserId, profile: ProfileId) -> bool {
        let now = tokio::time::Instant::now();
        self.pairs().held.get(&(user, profile)).is_some_and(|(_, expires)| *expires > now)
    }
}

fn token_of(lease: &Lease) -> u128 {
    lease.token.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

#[async_trait]
impl PairLocks for InProcessLocks {
    fn backend(&self) -> &'static str {
        "in-process"
    }

    async fn ping(&self) -> Result<(), RegistryUnavailable> {
        Ok(())
    }

    async fn acquire(&self, user: UserId, profile: ProfileId, ttl: Duration) -> Result<Lease, AcquireError> {
        let now = tokio::time::Instant::now();
        let mut pairs = self.pairs();
        if pairs.held.len() >= pairs.sweep_at.max(1024) {
            pairs.held.retain(|_, (_, expires)| *expires > now);
            pairs.sweep_at = pairs.held.len() * 2;
        }
        if let Some((_, expires)) = pairs.held.get(&(user, profile))
            && *expires > now
        {
            return Err(AcquireError::Conflict { retry_after: *expires - now });
        }
        let token: u128 = rand::random();
        pairs.held.insert((user, profile), (token, now + ttl));
        Ok(Lease { user, profile, valid_until: now + ttl, token: token.to_be_bytes().to_vec() })
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<Instant, ExtendError> {
        let now = tokio::time::Instant::now();
        let mut pairs = self.pairs();
        match pairs.held.get_mut(&(lease.user, lease.profile)) {
            Some((token, expires)) if *token == token_of(lease) && *expires > now => {
                *expires = now + ttl;
                Ok(now + ttl)
            }
            _ => Err(ExtendError::Lost(Lost::InProcess)),
        }
    }

    async fn release(&self, lease: &Lease) {
        let mut pairs = self.pairs();
        let key = (lease.user, lease.profile);
        if pairs.held.get(&key).is_some_and(|(token, _)| *token == token_of(lease)) {
            pairs.held.remove(&key);
        }
    }

    async fn publish(&self, host: &str, streams: u64, ttl: Duration) -> Result<Fleet, RegistryUnavailable> {
        let now = tokio::time::Instant::now();
        let mut fleet = self.fleet.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        fleet.insert(host.to_owned(), (streams, now + ttl));
        fleet.retain(|_, (_, expires)| *expires > now);
        Ok(fleet.iter().map(|(host, (streams, _))| (host.clone(), *streams)).collect())
    }

    async fn withdraw(&self, host: &str) {
        self.fleet.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(host);
    }
}
