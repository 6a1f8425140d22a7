//! The lock and launched registry: one stream per user–profile pair across every replica, and
//! the fleet of stream instances with their open streams — what rebalancing decides on.
//!
//! - [`PairLocks`]: what stream asks of a registry; [`Lease`], and the errors that tell a lock
//!   held elsewhere or lost from a registry that cannot answer.
//! - [`redis`]: [`RedisLocks`], Redlock over `REDIS_URLS` (the cluster).
//! - [`in_process`]: [`InProcessLocks`], the all-in-one process's registry in memory.

mod in_process;
mod redis;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kubescaler_core::{ProfileId, UserId};
use kubescaler_redis::{Failures, InstanceError, QuorumError};
use tokio::time::Instant;

pub use in_process::InProcessLocks;
pub use redis::RedisLocks;

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
    /// Extends each lock and its marker by `ttl`: for each lease, in order, until when its lock
    /// is now valid, or why it was not extended. Many leases cost a few round trips, not one
    /// each: this is what the instance does for every held stream every `LOCK_REFRESH`.
    async fn extend(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Instant, ExtendError>>;
    /// Releases each lock (if still ours) and removes its marker, best effort.
    async fn release(&self, leases: &[Lease]);
    /// Publishes that instance `host` has `streams` open, for `ttl`, and answers the open
    /// streams of every live instance, `host` included.
    async fn publish(&self, host: &str, streams: u64, ttl: Duration) -> Result<Fleet, RegistryUnavailable>;
    /// Removes `host` from the fleet at once (it stops), best effort.
    async fn withdraw(&self, host: &str);
}

/// Open streams per live instance, by host name.
pub type Fleet = BTreeMap<String, u64>;
