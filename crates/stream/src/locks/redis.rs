//! The registry over Redis, for the cluster.
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
//! sent, TTL minus the clock drift allowance. One script call extends up to [`BATCH`] locks and
//! their markers on an instance, each still checked against its own token: an instance
//! holding thousands of streams costs each Redis a few calls per refresh, not thousands.
//! Releases are batched the same way.
//!
//! The fleet: every stream instance publishes its number of open streams under its host name
//! with a short TTL ([`PairLocks::publish`]), and reads everyone's.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kubescaler_core::{ProfileId, UserId, keys};
use kubescaler_redis::{Failures, InstanceError, RedisArgs, RedisInstances};
use tokio::time::Instant;

use super::{AcquireError, ExtendError, Fleet, Lease, Lost, PairLocks, RegistryUnavailable, validity_end};

/// Extends each lock (`KEYS[2i-1]`), and its marker (`KEYS[2i]`) with it, only while the lock
/// holds its lease's token (`ARGV[i+1]`), by `ARGV[1]` milliseconds; answers one flag per
/// lock: 1 extended, 0 not ours. Never deletes anything. The marker's expiry is moved, not the
/// marker rewritten (a third less of Redis' time per lock); one that went missing is written
/// again.
const EXTEND: &str = r"
local ttl = ARGV[1]
local extended = {}
for i = 1, #KEYS / 2 do
  local lock = KEYS[2 * i - 1]
  if redis.call('GET', lock) == ARGV[i + 1] then
    redis.call('PEXPIRE', lock, ttl)
    if redis.call('PEXPIRE', KEYS[2 * i], ttl) == 0 then
      redis.call('SET', KEYS[2 * i], '1', 'PX', ttl)
    end
    extended[i] = 1
  else
    extended[i] = 0
  end
end
return extended
";

/// Deletes each lock (`KEYS[2i-1]`) and its marker (`KEYS[2i]`) while the lock holds its
/// lease's token (`ARGV[i]`): a marker written by the replica that took the pair over stays.
const RELEASE: &str = r"
local deleted = 0
for i = 1, #KEYS / 2 do
  if redis.call('GET', KEYS[2 * i - 1]) == ARGV[i] then
    deleted = deleted + redis.call('DEL', KEYS[2 * i - 1], KEYS[2 * i])
  end
end
return deleted
";

/// Locks per script call. A thousand locks are 3,000 commands run inside Redis (a GET and two
/// PEXPIREs each), about 3 ms of Redis' time on a small machine (docs/SCALE.md): long enough that
/// the round trip is noise, short enough not to hold up other clients of a single-threaded Redis
/// for long.
pub const BATCH: usize = 1_000;
/// Batches in flight at once on each instance: a second one travels while Redis runs the first.
const BATCHES_IN_FLIGHT: usize = 2;

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

/// Redlock attempts per acquisition: one. A conflict is answered at once, never waited out on
/// the request path.
const LOCK_ATTEMPTS: u32 = 1;
/// Acquisitions tried before a refusal nobody holds counts as Redis unavailable: a second one
/// after a connection remade (a Redis restart), never more on the request path.
const ACQUISITION_ROUNDS: u32 = 2;
/// rslock's pause between attempts, never slept with one attempt; rslock draws the pause from
/// `0..delay`, which must not be empty.
const UNUSED_RETRY_DELAY: Duration = Duration::from_millis(1);

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
        manager.set_retry(LOCK_ATTEMPTS, UNUSED_RETRY_DELAY);
        Ok(Self {
            manager,
            instances: RedisInstances::new(config)?,
            extend: redis::Script::new(EXTEND),
            release: redis::Script::new(RELEASE),
            publish: redis::Script::new(PUBLISH),
            withdraw: redis::Script::new(WITHDRAW),
        })
    }

    /// One script call per instance for `batch`; each lease's verdict from the instances' flags.
    async fn extend_batch(&self, batch: &[Lease], ttl: Duration) -> Vec<Result<Instant, ExtendError>> {
        let sent = Instant::now();
        let replies = self
            .instances
            .each(|mut connection| {
                let mut invocation = self.extend.prepare_invoke();
                invocation.arg(ttl.as_millis() as u64);
                for lease in batch {
                    invocation
                        .key(keys::lock(lease.user, lease.profile))
                        .key(keys::launched(lease.user, lease.profile))
                        .arg(lease.token.as_slice());
                }
                async move {
                    let flags = invocation.invoke_async::<Vec<i64>>(&mut connection).await?;
                    if flags.len() == batch.len() {
                        Ok(flags)
                    } else {
                        Err(redis::RedisError::from((
                            redis::ErrorKind::UnexpectedReturnType,
                            "extension answered another number of flags than locks asked",
                            format!("{} for {}", flags.len(), batch.len()),
                        )))
                    }
                }
            })
            .await;
        let needed = self.instances.quorum();
        let failures: Vec<InstanceError> =
            replies.iter().filter_map(|reply| reply.as_ref().err().cloned()).collect();
        let flags: Vec<&Vec<i64>> = replies.iter().filter_map(|reply| reply.as_ref().ok()).collect();
        if !failures.is_empty() && flags.len() >= needed {
            tracing::warn!(failures = %Failures(&failures), "some Redis instances did not extend locks; a quorum answered");
        }
        (0..batch.len())
            .map(|i| {
                let extended = flags.iter().filter(|flags| flags[i] == 1).count();
                verdict(extended, replies.len(), needed, &failures, validity_end(sent, ttl))
            })
            .collect()
    }

    async fn release_batch(&self, batch: &[Lease]) {
        self.instances
            .each(|mut connection| {
                let mut invocation = self.release.prepare_invoke();
                for lease in batch {
                    invocation
                        .key(keys::lock(lease.user, lease.profile))
                        .key(keys::launched(lease.user, lease.profile))
                        .arg(lease.token.as_slice());
                }
                async move { invocation.invoke_async::<i64>(&mut connection).await }
            })
            .await;
    }

    async fn write_marker(&self, lease: &Lease, ttl: Duration) -> Result<(), RegistryUnavailable> {
        let mut set = redis::cmd("SET");
        set.arg(keys::launched(lease.user, lease.profile)).arg("1").arg("PX").arg(ttl.as_millis() as u64);
        self.instances.on_quorum::<()>(&set).await.map(drop).map_err(RegistryUnavailable::Marker)
    }
}

/// A lock's fate from what the instances said: extended on a quorum, lost when those that said
/// "not ours" leave too few to ever make one, unconfirmed otherwise.
fn verdict(
    extended: usize,
    instances: usize,
    needed: usize,
    failures: &[InstanceError],
    valid_until: Instant,
) -> Result<Instant, ExtendError> {
    if extended >= needed {
        return Ok(valid_until);
    }
    let not_ours = instances - extended - failures.len();
    if extended + failures.len() < needed {
        return Err(ExtendError::Lost(Lost::OnInstances { not_ours, instances }));
    }
    Err(ExtendError::Unavailable(RegistryUnavailable::Unconfirmed {
        extended,
        instances,
        needed,
        failures: failures.to_vec(),
    }))
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
        for attempt in 1..=ACQUISITION_ROUNDS {
            let started = Instant::now();
            match self.manager.lock(resource.as_bytes(), ttl).await {
                Ok(lock) => {
                    let lease =
                        Lease { user, profile, valid_until: validity_end(started, ttl), token: lock.val };
                    if let Err(e) = self.write_marker(&lease, ttl).await {
                        self.release(std::slice::from_ref(&lease)).await;
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
                    if attempt == ACQUISITION_ROUNDS {
                        break;
                    }
                }
                Err(e) => return Err(AcquireError::Unavailable(RegistryUnavailable::Redlock(Arc::new(e)))),
            }
        }
        Err(AcquireError::Unavailable(RegistryUnavailable::NoHolder))
    }

    async fn extend(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Instant, ExtendError>> {
        let batches: Vec<_> = leases.chunks(BATCH).map(|batch| self.extend_batch(batch, ttl)).collect();
        let verdicts: Vec<Vec<_>> =
            futures::stream::iter(batches).buffered(BATCHES_IN_FLIGHT).collect().await;
        verdicts.into_iter().flatten().collect()
    }

    async fn release(&self, leases: &[Lease]) {
        let batches: Vec<_> = leases.chunks(BATCH).map(|batch| self.release_batch(batch)).collect();
        futures::stream::iter(batches).buffer_unordered(BATCHES_IN_FLIGHT).collect::<Vec<()>>().await;
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
