//! The registry in memory, for the all-in-one process.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use kubescaler_core::{ProfileId, UserId};
use tokio::time::Instant;

use super::{AcquireError, ExtendError, Fleet, Lease, Lost, PairLocks, RegistryUnavailable};

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
