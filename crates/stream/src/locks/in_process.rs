//! The registry in memory, for the all-in-one process: one process needs no Redlock, but the
//! same semantics — one holder per pair, a random token per acquisition, expiry `ttl` after the
//! last extension, conflicts that say when the holder's lock expires, release only by the
//! holder. The launched marker is the held, unexpired lock itself.
//!
//! Expired locks leave the map by themselves: their expiries are kept in order, and one
//! background task sleeps until the next one (or until an earlier one is set), then removes
//! whatever has expired. The task ends when the registry is dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use kubescaler_core::sync::lock;
use kubescaler_core::{ProfileId, UserId};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{AcquireError, ExtendError, Fleet, Lease, Lost, PairLocks, RegistryUnavailable};

type Pair = (UserId, ProfileId);

/// The in-process lock and launched registry (see the module's documentation).
#[derive(Debug)]
pub struct InProcessLocks {
    shared: Arc<Shared>,
    /// Stops the purge task when the registry is dropped.
    _purge: DropGuard,
}

#[derive(Debug)]
struct Shared {
    /// A std mutex, not tokio's: nothing is awaited while it is held, and each holder does a
    /// few map operations, so waiting for it costs less than a tokio mutex's bookkeeping. (A
    /// tokio mutex is for a lock held across an `.await`.)
    state: Mutex<State>,
    /// Wakes the purge task when a lock expires earlier than the one it sleeps until.
    earlier_expiry: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Each held pair's token and expiry.
    held: HashMap<Pair, Held>,
    /// The same expiries, in order: the first is when the purge task next has work. One pair
    /// holds one lock, so `(expiry, pair)` is unique.
    expiries: BTreeSet<(Instant, Pair)>,
    /// Host → (open streams, expiry): the fleet, of one instance in the all-in-one; pruned as
    /// it is published, so it holds the instances of the last few periods.
    fleet: BTreeMap<String, (u64, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    token: u128,
    expires: Instant,
}

impl State {
    /// Holds `pair` for `token` until `expires`, in place of whatever held it; `true` when this
    /// expiry comes before every other (the purge task must wake earlier).
    fn hold(&mut self, pair: Pair, token: u128, expires: Instant) -> bool {
        if let Some(previous) = self.held.insert(pair, Held { token, expires }) {
            self.expiries.remove(&(previous.expires, pair));
        }
        let earliest = self.expiries.first().is_none_or(|(first, _)| expires < *first);
        self.expiries.insert((expires, pair));
        earliest
    }

    fn release(&mut self, pair: Pair) {
        if let Some(held) = self.held.remove(&pair) {
            self.expiries.remove(&(held.expires, pair));
        }
    }

    /// The pair's holder, if its lock has not expired by `now`.
    fn holder(&self, pair: Pair, now: Instant) -> Option<Held> {
        self.held.get(&pair).copied().filter(|held| held.expires > now)
    }

    /// Removes every lock expired by `now`; answers when the next one expires.
    fn purge(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&(expires, pair)) = self.expiries.first() {
            if expires > now {
                return Some(expires);
            }
            self.expiries.pop_first();
            self.held.remove(&pair);
        }
        None
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every change leaves the maps consistent before anything can panic: a poisoned state
        // is still a valid one.
        lock(&self.state)
    }
}

/// The purge task: removes the expired locks, sleeps until the next expiry or an earlier one
/// is set, and again, until `stop`.
async fn purge_expired(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let next = shared.state().purge(Instant::now());
        let next_expiry = async {
            match next {
                Some(when) => tokio::time::sleep_until(when).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = next_expiry => {}
            () = shared.earlier_expiry.notified() => {}
        }
    }
}

impl InProcessLocks {
    /// An empty registry; starts its purge task (so: within a tokio runtime), which ends when
    /// the registry is dropped.
    pub fn start() -> Self {
        let shared = Arc::new(Shared { state: Mutex::default(), earlier_expiry: Notify::new() });
        let stop = CancellationToken::new();
        tokio::spawn(purge_expired(shared.clone(), stop.clone()));
        Self { shared, _purge: stop.drop_guard() }
    }

    /// Whether the pair's lock is held now (what main calls "launched").
    pub fn is_launched(&self, user: UserId, profile: ProfileId) -> bool {
        self.shared.state().holder((user, profile), Instant::now()).is_some()
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
        let now = Instant::now();
        let mut state = self.shared.state();
        if let Some(held) = state.holder((user, profile), now) {
            return Err(AcquireError::Conflict { retry_after: held.expires - now });
        }
        let token: u128 = rand::random();
        let earliest = state.hold((user, profile), token, now + ttl);
        // Notified after the lock is released, so the task does not wake to a held mutex.
        drop(state);
        if earliest {
            self.shared.earlier_expiry.notify_one();
        }
        Ok(Lease { user, profile, valid_until: now + ttl, token: token.to_be_bytes().to_vec() })
    }

    async fn extend(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Instant, ExtendError>> {
        let now = Instant::now();
        let mut state = self.shared.state();
        leases
            .iter()
            .map(|lease| {
                let pair = (lease.user, lease.profile);
                match state.holder(pair, now) {
                    // A later expiry: the purge task wakes at the earlier one, finds nothing,
                    // and sleeps again, so it need not be told.
                    Some(held) if held.token == token_of(lease) => {
                        state.hold(pair, held.token, now + ttl);
                        Ok(now + ttl)
                    }
                    _ => Err(ExtendError::Lost(Lost::InProcess)),
                }
            })
            .collect()
    }

    async fn release(&self, leases: &[Lease]) {
        let mut state = self.shared.state();
        for lease in leases {
            let pair = (lease.user, lease.profile);
            if state.held.get(&pair).is_some_and(|held| held.token == token_of(lease)) {
                state.release(pair);
            }
        }
    }

    async fn publish(&self, host: &str, streams: u64, ttl: Duration) -> Result<Fleet, RegistryUnavailable> {
        let now = Instant::now();
        let mut state = self.shared.state();
        state.fleet.insert(host.to_owned(), (streams, now + ttl));
        state.fleet.retain(|_, (_, expires)| *expires > now);
        Ok(state.fleet.iter().map(|(host, (streams, _))| (host.clone(), *streams)).collect())
    }

    async fn withdraw(&self, host: &str) {
        self.shared.state().fleet.remove(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(locks: &InProcessLocks) -> (usize, usize) {
        let state = locks.shared.state();
        (state.held.len(), state.expiries.len())
    }

    #[tokio::test(start_paused = true)]
    async fn expired_locks_leave_the_registry_by_themselves() {
        let locks = InProcessLocks::start();
        let pairs: Vec<Pair> = (0..100).map(|_| (UserId::new_random(), ProfileId::new_random())).collect();
        for (i, (user, profile)) in pairs.iter().enumerate() {
            let ttl = Duration::from_secs(10 + i as u64 % 10);
            locks.acquire(*user, *profile, ttl).await.unwrap();
        }
        let short =
            locks.acquire(UserId::new_random(), ProfileId::new_random(), Duration::from_secs(1)).await;
        let short = short.unwrap();
        assert_eq!(held(&locks), (101, 101));

        // The shorter lock, set last, expires first: the purge task was told, and takes it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(held(&locks), (100, 100));
        assert!(!locks.is_launched(short.user, short.profile));

        // An extension moves a lock's expiry later; the others go when theirs come.
        let kept = locks.acquire(UserId::new_random(), ProfileId::new_random(), Duration::from_secs(5)).await;
        let kept = kept.unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let extended = locks.extend(std::slice::from_ref(&kept), Duration::from_secs(60)).await;
        assert!(matches!(extended.as_slice(), [Ok(_)]), "{extended:?}");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(held(&locks), (1, 1), "only the extended lock is left");
        assert!(locks.is_launched(kept.user, kept.profile));
        locks.release(std::slice::from_ref(&kept)).await;
        assert_eq!(held(&locks), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_purge_task_stops_with_the_registry() {
        let locks = InProcessLocks::start();
        locks.acquire(UserId::new_random(), ProfileId::new_random(), Duration::from_secs(1)).await.unwrap();
        let shared = Arc::downgrade(&locks.shared);
        tokio::task::yield_now().await;
        drop(locks);
        // The task holds the other reference until it sees the stop.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(shared.upgrade().is_none(), "the purge task still holds the registry");
    }
}
