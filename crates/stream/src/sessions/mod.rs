//! Open streams: admission (binding, capacity, lock), the body of each stream, and the ONE
//! refresher task of the instance that keeps every held lock and marker alive.
//!
//! - [`admission`]: whether a stream may open, and its lock.
//! - [`refresher`]: the refresher and its watchdog, rebalancing, and the release of every lock
//!   on shutdown.
//! - [`bindings`]: the binding watcher, which ends the streams whose pair a change unbound.
//! - [`body`]: the SSE body of an open stream and the [`StreamGuard`] that ends it.
//!
//! Every open stream owns a [`StreamGuard`]: created once the lock is held, dropped on every
//! way out (client gone, lock lost, unbound, rebalanced, shutdown, error). Its `Drop`
//! decrements the active-connections gauge and takes the pair out of the refresher, so neither
//! can drift from the truth whatever path a stream ends by.
//!
//! The refresher also publishes the instance's number of open streams every `REBALANCE_PERIOD`
//! and, when [`Rebalancer`] says so, hands streams off: their locks and markers are released
//! first, then each stream ends with `event: rebalance` and a short `retry:`, so its client
//! reconnects at once and finds the pair free wherever the balancer sends it. For two periods
//! after a hand-off the instance refuses new streams while it holds its fair share or more
//! (503 `rebalancing`, retry in 100 ms): a balancer that picks it again for a moved client —
//! round robin does, for one client in N — then sends the retry elsewhere, and the excess
//! moves in one round instead of (N−1)/N of it per round.
//!
//! A lock whose extension could not be confirmed (Redis slow or away, not a lock held by
//! someone else) is still ours until the validity of its last acquisition or extension runs
//! out: its stream goes on, the next refresh tries again, and a watchdog beside the refresher,
//! which waits on no Redis call, ends the stream with `lock-lost` a margin before that validity
//! ends. A stream never outlives its lock, and one slow answer no longer ends it.

mod admission;
mod bindings;
mod body;
mod refresher;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubescaler_base_client::BaseClient;
use kubescaler_core::{ProfileId, UserId};
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::feed::Frame;
use crate::locks::{AcquireError, Lease, Lost, PairLocks, RegistryUnavailable};
use crate::metrics::StreamMetrics;
use crate::rebalance::Rebalancer;

pub use body::OpenStream;
pub use refresher::{Refresher, RefresherStopped};

/// How long before its lock's validity runs out a stream whose extensions go unconfirmed is
/// ended: time for the watchdog to wake and the stream to stop writing. A tenth of the TTL when
/// that is less.
const END_MARGIN: Duration = Duration::from_millis(500);

/// Why the refresher ended a stream.
#[derive(Debug, Clone)]
enum End {
    LockLost(LockLost),
    Unbound,
    /// Handed off to another instance; the lock is already released.
    Rebalance,
    /// The instance stops; the refresher has released (or is releasing) the lock.
    Shutdown,
}

#[derive(Debug)]
struct Held {
    lease: Lease,
    end: oneshot::Sender<End>,
    /// When the stream must have ended unless an extension succeeds before: the lock's
    /// validity less [`END_MARGIN`].
    deadline: Instant,
    /// Why the last extension was not confirmed, while it was not.
    unconfirmed: Option<RegistryUnavailable>,
    /// When base last said the pair is bound (admission, a re-check, the sweep).
    checked: Instant,
}

/// Why a stream's lock is not ours any more, as its client is told (`lock-lost`).
#[derive(Debug, Clone, thiserror::Error)]
enum LockLost {
    /// Held by another token, or gone.
    #[error(transparent)]
    Taken(#[from] Lost),
    /// No extension was confirmed before the lock's validity ran out; why the last was not.
    #[error("the lock could not be extended before it may expire: {}", .0.as_ref().map_or_else(|| "no extension confirmed".to_owned(), ToString::to_string))]
    Expired(Option<RegistryUnavailable>),
}

/// Why a stream was not opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("no profile {0}")]
    NoProfile(ProfileId),
    #[error("user {0} is not in profile {1}")]
    NotBound(UserId, ProfileId),
    #[error("this instance serves its maximum of {0} streams")]
    Full(usize),
    #[error(transparent)]
    Base(#[from] kubescaler_base_client::BaseError),
    #[error(transparent)]
    Lock(#[from] AcquireError),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("this instance holds more than its share of the streams; another one takes this stream")]
    Rebalancing { retry_after: Duration },
}

/// After a hand-off: refuse new streams while holding `target` or more, until `until`.
#[derive(Debug, Clone, Copy)]
struct Drain {
    target: usize,
    until: Instant,
}

/// The open streams of this instance, and what admitting, refreshing and ending them needs.
pub struct Sessions {
    /// Everything that changes as streams open and end, under ONE lock: each change is a few
    /// instructions, never an await, and with one lock there is no order to keep between the
    /// streams, the watchdog's next wake, the drain and the rebalancer.
    state: Mutex<State>,
    /// Wakes the watchdog when a stream opens with a deadline before the watchdog's next look.
    watchdog: Notify,
    /// `MAX_CONNECTIONS`: a permit per open stream, given back when its guard drops — which
    /// may be after the refresher took the stream out of [`State::held`].
    capacity: Arc<Semaphore>,
    /// Releases spawned when streams end, awaited before the process exits.
    releases: TaskTracker,
    /// Where the pairs' locks and markers are (Redlock on Redis, or in-process).
    locks: Arc<dyn PairLocks>,
    /// Asked whether pairs are bound: at admission, and when a change or the sweep says so.
    base: BaseClient,
    /// The instance's one message generator; every stream sends its newest frame.
    feed: watch::Receiver<Option<Frame>>,
    config: Arc<Config>,
    metrics: StreamMetrics,
    /// The instance stops: admission refuses, and the refresher releases every lock.
    shutdown: CancellationToken,
}

/// What [`Sessions::state`] guards.
#[derive(Debug)]
struct State {
    /// Every open stream the refresher has not ended, by id. A stream leaves it when the
    /// refresher ends it (its lock lost, unbound, handed off, the shutdown) or, failing that,
    /// when its guard drops.
    held: HashMap<u64, Held>,
    /// The id of the next stream admitted.
    next_id: u64,
    /// Moved by the binding watcher each time it reads the held pairs for a change: admission
    /// reads it before asking base and again as it registers its pair, and checks again when
    /// it moved (a change it may have been checked before and registered after).
    epoch: u64,
    /// When the watchdog next looks at deadlines; a stream opened with an earlier one wakes it.
    watchdog_at: Instant,
    /// Set by a hand-off, read by admission.
    drain: Option<Drain>,
    /// Decides hand-offs from the fleet's counts, period after period.
    rebalancer: Rebalancer,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Sessions {
    pub(crate) fn new(
        locks: Arc<dyn PairLocks>,
        base: BaseClient,
        feed: watch::Receiver<Option<Frame>>,
        config: Arc<Config>,
        metrics: StreamMetrics,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                held: HashMap::new(),
                next_id: 1,
                epoch: 0,
                watchdog_at: Instant::now(),
                drain: None,
                rebalancer: Rebalancer::new(config.rebalance_tolerance),
            }),
            watchdog: Notify::new(),
            capacity: Arc::new(Semaphore::new(config.max_connections)),
            releases: TaskTracker::new(),
            locks,
            base,
            feed,
            config,
            metrics,
            shutdown,
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn metrics(&self) -> &StreamMetrics {
        &self.metrics
    }

    /// The one lock: held for a few instructions, never across an await.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        kubescaler_core::sync::lock(&self.state)
    }

    /// When a stream whose lock is valid until `valid_until` must have ended.
    fn deadline(&self, valid_until: Instant) -> Instant {
        valid_until.checked_sub(END_MARGIN.min(self.config.lock_ttl / 10)).unwrap_or(valid_until)
    }
}
