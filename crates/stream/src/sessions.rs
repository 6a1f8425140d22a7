//! Open streams: admission (binding, capacity, lock), the body of each stream, and the ONE
//! refresher task of the instance that keeps every held lock and marker alive.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kubescaler_base_client::{BaseClient, Binding};
use kubescaler_core::{ProfileId, UserId};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde_json::json;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::feed::{self, Frame};
use crate::locks::{AcquireError, ExtendError, Lease, Lost, PairLocks, RegistryUnavailable};
use crate::rebalance::{Rebalancer, Tolerance};

/// A comment line keeps idle connections (and proxies) from timing out when messages are rare.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// What clients are told to wait before reconnecting after a shutdown.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
/// What a handed-off client is told to wait: its lock is already free; the short pause only
/// spreads the reconnections of a hand-off over a moment instead of one instant.
const REBALANCE_RETRY: Duration = Duration::from_millis(250);
/// What a client refused by a draining instance is told to wait before trying (elsewhere).
const DRAINING_RETRY: Duration = Duration::from_millis(100);
/// An instance's fleet entry outlives a missed publication or two; a dead instance's is
/// forgotten after this many periods.
const FLEET_ENTRY_PERIODS: u32 = 3;
/// How long before its lock's validity runs out a stream whose extensions go unconfirmed is
/// ended: time for the watchdog to wake and the stream to stop writing. A tenth of the TTL when
/// that is less.
const END_MARGIN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct StreamMetrics {
    pub active: IntGauge,
    pub sent: IntCounter,
    pub dropped: IntCounter,
    pub bytes: IntCounter,
    pub acquisitions: IntCounterVec,
    pub lost: IntCounterVec,
    pub refresh: Histogram,
    pub rebalanced: IntCounter,
    pub refused: IntCounterVec,
}

impl StreamMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            active: IntGauge::new("kubescaler_stream_active_connections", "Streams open on this instance")?,
            sent: IntCounter::new("kubescaler_stream_messages_sent_total", "Messages written to streams")?,
            dropped: IntCounter::new(
                "kubescaler_stream_messages_dropped_total",
                "Messages skipped for clients reading slower than the rate",
            )?,
            bytes: IntCounter::new(
                "kubescaler_stream_bytes_sent_total",
                "Bytes of messages written to streams",
            )?,
            acquisitions: IntCounterVec::new(
                Opts::new("kubescaler_stream_lock_acquisitions_total", "Lock acquisitions by result"),
                &["result"],
            )?,
            lost: IntCounterVec::new(
                Opts::new("kubescaler_stream_locks_lost_total", "Streams ended by the refresher, by reason"),
                &["reason"],
            )?,
            refresh: Histogram::with_opts(
                HistogramOpts::new(
                    "kubescaler_stream_lock_refresh_duration_seconds",
                    "Time to extend one lock",
                )
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            )?,
            rebalanced: IntCounter::new(
                "kubescaler_stream_rebalanced_total",
                "Streams handed off to other instances because this one held more than its share",
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "kubescaler_stream_refusals_total",
                    "Stream requests refused, by error code (answered in SSE or JSON alike)",
                ),
                &["error"],
            )?,
        };
        registry.register(Box::new(metrics.active.clone()))?;
        registry.register(Box::new(metrics.sent.clone()))?;
        registry.register(Box::new(metrics.dropped.clone()))?;
        registry.register(Box::new(metrics.bytes.clone()))?;
        registry.register(Box::new(metrics.acquisitions.clone()))?;
        registry.register(Box::new(metrics.lost.clone()))?;
        registry.register(Box::new(metrics.refresh.clone()))?;
        registry.register(Box::new(metrics.rebalanced.clone()))?;
        registry.register(Box::new(metrics.refused.clone()))?;
        Ok(metrics)
    }
}

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

#[derive(Debug, Clone)]
pub struct Settings {
    pub stream_interval: Duration,
    pub lock_ttl: Duration,
    pub lock_refresh: Duration,
    pub release_on_disconnect: bool,
    pub max_connections: usize,
    /// This instance's name in the fleet (the pod name).
    pub host: String,
    pub rebalance: bool,
    pub rebalance_period: Duration,
    pub rebalance_tolerance: Tolerance,
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

/// The open streams of this instance.
pub struct Sessions {
    held: Mutex<HashMap<u64, Held>>,
    next_id: AtomicU64,
    locks: Arc<dyn PairLocks>,
    base: BaseClient,
    feed: watch::Receiver<Option<Frame>>,
    capacity: Arc<Semaphore>,
    settings: Settings,
    metrics: StreamMetrics,
    shutdown: CancellationToken,
    /// Releases still running, awaited before the process exits.
    releases: TaskTracker,
    rebalancer: Mutex<Rebalancer>,
    drain: Mutex<Option<Drain>>,
    /// When the watchdog next looks at deadlines; a stream opened with an earlier one wakes it.
    watchdog_at: Mutex<Instant>,
    watchdog: Notify,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new(
        locks: Arc<dyn PairLocks>,
        base: BaseClient,
        feed: watch::Receiver<Option<Frame>>,
        settings: Settings,
        metrics: StreamMetrics,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            held: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            capacity: Arc::new(Semaphore::new(settings.max_connections)),
            locks,
            base,
            feed,
            metrics,
            shutdown,
            releases: TaskTracker::new(),
            rebalancer: Mutex::new(Rebalancer::new(settings.rebalance_tolerance)),
            drain: Mutex::new(None),
            watchdog_at: Mutex::new(Instant::now()),
            watchdog: Notify::new(),
            settings,
        })
    }

    pub fn locks(&self) -> &Arc<dyn PairLocks> {
        &self.locks
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn metrics(&self) -> &StreamMetrics {
        &self.metrics
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Held>> {
        lock(&self.held)
    }

    /// Admits a stream: the pair is bound, there is room, the lock is ours. Nothing is
    /// locked and nothing counted when this fails.
    pub async fn open(self: &Arc<Self>, user: UserId, profile: ProfileId) -> Result<OpenStream, Refusal> {
        if self.shutdown.is_cancelled() {
            return Err(Refusal::ShuttingDown);
        }
        if self.draining() {
            return Err(Refusal::Rebalancing { retry_after: DRAINING_RETRY });
        }
        let started = Instant::now();
        match self.base.binding(profile, user).await? {
            Binding::Bound => {}
            Binding::NotBound => return Err(Refusal::NotBound(user, profile)),
            Binding::NoProfile => return Err(Refusal::NoProfile(profile)),
        }
        let permit = self
            .capacity
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full(self.settings.max_connections))?;
        let bound = started.elapsed();
        let lease = match self.locks.acquire(user, profile, self.settings.lock_ttl).await {
            Ok(lease) => {
                self.metrics.acquisitions.with_label_values(&["acquired"]).inc();
                lease
            }
            Err(e) => {
                let result = match e {
                    AcquireError::Conflict { .. } => "conflict",
                    AcquireError::Unavailable(_) => "error",
                };
                self.metrics.acquisitions.with_label_values(&[result]).inc();
                return Err(e.into());
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (end_tx, end_rx) = oneshot::channel();
        let deadline = self.deadline(lease.valid_until);
        let mut held = self.held();
        // Checked under the lock the shutdown drain takes after cancelling: either the drain
        // sees this pair and releases it, or this request does, before answering.
        if self.shutdown.is_cancelled() {
            drop(held);
            self.locks.release(&lease).await;
            return Err(Refusal::ShuttingDown);
        }
        held.insert(id, Held { lease: lease.clone(), end: end_tx, deadline, unconfirmed: None });
        drop(held);
        if deadline < *lock(&self.watchdog_at) {
            self.watchdog.notify_one();
        }
        self.metrics.active.inc();
        tracing::info!(%user, %profile, stream = id, binding = ?bound, lock = ?(started.elapsed() - bound), "stream opened");
        let guard = StreamGuard { id, lease, sessions: self.clone(), _permit: permit };
        Ok(OpenStream { guard, end: end_rx })
    }

    /// The refresher: every `LOCK_REFRESH`, extend every held lock and marker and re-check
    /// every binding; end the streams that lost either. Beside it, the watchdog ends the streams
    /// whose locks could not be extended in time. On shutdown, release every lock.
    pub async fn refresh_until_shutdown(self: Arc<Self>) {
        let refresher = async {
            let mut ticks = tokio::time::interval(self.settings.lock_refresh);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            // The first tick is at once: the instance joins the fleet as it starts.
            let mut rebalance = tokio::time::interval(self.settings.rebalance_period);
            rebalance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => self.refresh_all().await,
                    _ = rebalance.tick() => self.rebalance().await,
                    () = self.shutdown.cancelled() => break,
                }
            }
        };
        // In the same task, yet never waiting behind the refresher's Redis calls: `join` polls
        // the watchdog whenever its timer fires.
        tokio::join!(refresher, self.watch_deadlines());
        // Out of the fleet first, so that no instance counts this one's streams as placed.
        self.locks.withdraw(&self.settings.host).await;
        // Every lock is released here, and awaited, so the pairs can move to another replica
        // at once; a stream's own guard could only spawn the release, and a spawned task does
        // not outlive the runtime when the process exits.
        let leaving: Vec<Held> = self.held().drain().map(|(_, held)| held).collect();
        let releases = leaving.into_iter().map(|held| {
            let _ = held.end.send(End::Shutdown);
            let locks = self.locks.clone();
            async move { locks.release(&held.lease).await }
        });
        futures::future::join_all(releases).await;
        // Releases spawned before the drain (disconnects, unbound pairs) finish too.
        self.releases.close();
        self.releases.wait().await;
    }

    /// When a stream whose lock is valid until `valid_until` must have ended.
    fn deadline(&self, valid_until: Instant) -> Instant {
        valid_until.checked_sub(END_MARGIN.min(self.settings.lock_ttl / 10)).unwrap_or(valid_until)
    }

    /// Ends every stream whose deadline has come, and sleeps until the next one. Deadlines only
    /// move later (an extension) or go (a stream ends); an earlier one can only come with a new
    /// stream, which wakes this.
    async fn watch_deadlines(&self) {
        loop {
            let now = Instant::now();
            let mut next = now + self.settings.lock_refresh;
            let mut expired = Vec::new();
            {
                let held = self.held();
                for (id, stream) in held.iter() {
                    if stream.deadline <= now {
                        expired.push((*id, stream.unconfirmed.clone()));
                    } else {
                        next = next.min(stream.deadline);
                    }
                }
                // Set under the same lock as the scan: a stream opened after the scan compares
                // its deadline with this, not with the previous wake.
                *lock(&self.watchdog_at) = next;
            }
            for (id, why) in expired {
                self.end(id, End::LockLost(LockLost::Expired(why)), "lock");
            }
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = self.watchdog.notified() => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    async fn refresh_all(self: &Arc<Self>) {
        let snapshot: Vec<(u64, Lease)> = self.held().iter().map(|(id, h)| (*id, h.lease.clone())).collect();
        let unconfirmed = AtomicU64::new(0);
        let unconfirmed = &unconfirmed;
        futures::stream::iter(snapshot)
            .for_each_concurrent(64, |(id, lease)| async move {
                let started = Instant::now();
                // Redis calls time out by themselves (REDIS_TIMEOUT); this bounds a cycle even if
                // one did not, so the next refresh comes while the lock is still valid.
                let extension = self.locks.extend(&lease, self.settings.lock_ttl);
                let extended = tokio::time::timeout(self.settings.lock_refresh, extension).await.unwrap_or_else(
                    |_| Err(ExtendError::Unavailable(RegistryUnavailable::NoAnswer("LOCK_REFRESH"))),
                );
                self.metrics.refresh.observe(started.elapsed().as_secs_f64());
                match extended {
                    Ok(valid_until) => {
                        if let Some(held) = self.held().get_mut(&id) {
                            held.deadline = held.deadline.max(self.deadline(valid_until));
                            if held.unconfirmed.take().is_some() {
                                tracing::info!(user = %lease.user, profile = %lease.profile, stream = id, "lock extended again");
                            }
                        }
                    }
                    Err(ExtendError::Lost(why)) => {
                        self.end(id, End::LockLost(why.into()), "lock");
                        return;
                    }
                    // Perhaps still ours: the stream goes on until its deadline, which the
                    // watchdog keeps; the next refresh tries again.
                    Err(ExtendError::Unavailable(why)) => {
                        if let Some(held) = self.held().get_mut(&id) {
                            held.unconfirmed = Some(why);
                            unconfirmed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                match self.base.binding(lease.profile, lease.user).await {
                    Ok(Binding::Bound) => {}
                    Ok(Binding::NotBound | Binding::NoProfile) => {
                        if self.end(id, End::Unbound, "unbound") {
                            let locks = self.locks.clone();
                            self.releases.spawn(async move { locks.release(&lease).await });
                        }
                    }
                    // base away: the binding cannot be re-checked now, which does not make the
                    // pair unbound; the lock is still held, so the stream goes on.
                    Err(e) => tracing::warn!(error = %e, "binding not re-checked"),
                }
            })
            .await;
        let unconfirmed = unconfirmed.load(Ordering::Relaxed);
        if unconfirmed > 0 {
            let example = self.held().values().find_map(|held| held.unconfirmed.clone());
            let why = example.map(|e| e.to_string());
            tracing::warn!(
                locks = unconfirmed,
                why,
                "locks not extended; their streams go on while the locks are still valid"
            );
        }
    }

    /// Publishes this instance's open streams and, when it holds more than its share of the
    /// fleet's for long enough, hands the excess off.
    async fn rebalance(self: &Arc<Self>) {
        let own = self.held().len() as u64;
        let ttl = self.settings.rebalance_period * FLEET_ENTRY_PERIODS;
        let fleet = match self.locks.publish(&self.settings.host, own, ttl).await {
            Ok(fleet) => fleet,
            Err(e) => {
                tracing::warn!(error = %e, "open streams not published; no rebalancing this period");
                return;
            }
        };
        if !self.settings.rebalance {
            return;
        }
        let decision = lock(&self.rebalancer).tick(own, fleet.values().copied());
        if decision.hand_off > 0 {
            tracing::info!(own, fair = decision.fair, hand_off = decision.hand_off, ?fleet, "rebalancing");
            self.hand_off(decision.hand_off as usize, decision.fair as usize).await;
        }
    }

    /// Ends `count` streams with `event: rebalance`, their locks and markers released first.
    /// The streams opened last go: the ones that arrived while this instance already had more
    /// than its share.
    async fn hand_off(self: &Arc<Self>, count: usize, fair: usize) {
        // Until the next tick that may decide (the one after is quiet): long enough for the moved
        // clients' retries to find the other instances, short enough not to outlive the view.
        let until = Instant::now() + self.settings.rebalance_period * 2;
        *lock(&self.drain) = Some(Drain { target: fair, until });
        let moving: Vec<Held> = {
            let mut held = self.held();
            let mut ids: Vec<u64> = held.keys().copied().collect();
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids.into_iter().take(count).filter_map(|id| held.remove(&id)).collect()
        };
        let started = Instant::now();
        futures::future::join_all(moving.iter().map(|held| self.locks.release(&held.lease))).await;
        let released_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.metrics.rebalanced.inc_by(moving.len() as u64);
        tracing::info!(streams = moving.len(), fair, released_ms, "handed streams off");
        for held in moving {
            let _ = held.end.send(End::Rebalance);
        }
    }

    /// Whether this instance refuses new streams: it handed some off less than two periods ago
    /// and still holds its fair share or more.
    fn draining(&self) -> bool {
        let mut drain = lock(&self.drain);
        match *drain {
            Some(Drain { until, .. }) if Instant::now() >= until => {
                *drain = None;
                false
            }
            Some(Drain { target, .. }) => self.held().len() >= target,
            None => false,
        }
    }

    /// Ends stream `id` if it is still open; `true` when it was.
    fn end(&self, id: u64, why: End, reason: &str) -> bool {
        let Some(held) = self.held().remove(&id) else { return false };
        tracing::info!(user = %held.lease.user, profile = %held.lease.profile, stream = id, ?why, "stream ended by the refresher");
        self.metrics.lost.with_label_values(&[reason]).inc();
        let _ = held.end.send(why);
        true
    }
}

/// Held by an open stream; its drop is the stream's end on every path.
#[derive(Debug)]
pub struct StreamGuard {
    id: u64,
    lease: Lease,
    sessions: Arc<Sessions>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let sessions = &self.sessions;
        sessions.metrics.active.dec();
        tracing::info!(user = %self.lease.user, profile = %self.lease.profile, stream = self.id, "stream closed");
        // Still registered means no refresher verdict: the client left, or the service stops
        // and its drain has not reached this pair. The release is spawned under the lock the
        // drain takes, so the drain's wait for spawned releases cannot miss it.
        let mut held = sessions.held();
        let client_side = held.remove(&self.id).is_some();
        if client_side && (sessions.settings.release_on_disconnect || sessions.shutdown.is_cancelled()) {
            let (locks, lease) = (sessions.locks.clone(), self.lease.clone());
            sessions.releases.spawn(async move { locks.release(&lease).await });
        }
        drop(held);
    }
}

/// An admitted stream, ready to become a response body.
#[derive(Debug)]
pub struct OpenStream {
    guard: StreamGuard,
    end: oneshot::Receiver<End>,
}

struct BodyState {
    guard: Option<StreamGuard>,
    end: oneshot::Receiver<End>,
    /// Made once per stream: registering a new waiter per frame costs more than the frame.
    shutdown: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    feed: watch::Receiver<Option<Frame>>,
    last_seq: Option<u64>,
    started: bool,
}

impl OpenStream {
    /// The SSE body: the newest frame whenever there is one (at most the frame being written
    /// and the newest one wait for a connection), then a final event when the refresher or a
    /// shutdown ends it.
    pub fn into_body(self) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
        let sessions = self.guard.sessions.clone();
        let mut feed = sessions.feed.clone();
        // The current frame goes out at once; later ones as they come.
        feed.mark_changed();
        let state = BodyState {
            guard: Some(self.guard),
            end: self.end,
            shutdown: Box::pin(sessions.shutdown.clone().cancelled_owned()),
            feed,
            last_seq: None,
            started: false,
        };
        // Messages keep the connection busy when they come often; a heartbeat (and the timer
        // it costs per frame) is only needed when they do not.
        let heartbeat = sessions.settings.stream_interval >= HEARTBEAT;
        futures::stream::unfold(state, move |mut state| {
            let sessions = sessions.clone();
            async move {
                state.guard.as_ref()?;
                if !state.started {
                    state.started = true;
                    // Sent at once, so the client has the response head without waiting a tick.
                    let hello = format!("retry: {}\n: stream open\n\n", RECONNECT_AFTER.as_millis());
                    return Some((Ok(Bytes::from(hello)), state));
                }
                loop {
                    tokio::select! {
                        biased;
                        end = &mut state.end => {
                            let frame = match end {
                                Ok(End::LockLost(why)) => {
                                    feed::control("lock-lost", &json!({ "reason": why.to_string() }))
                                }
                                Ok(End::Unbound) => feed::control(
                                    "unbound",
                                    &json!({ "reason": "the user is no longer in the profile, or the profile is gone" }),
                                ),
                                Ok(End::Rebalance) => rebalance_frame(),
                                Ok(End::Shutdown) => shutdown_frame(),
                                Err(_) => return None,
                            };
                            state.guard = None;
                            return Some((Ok(frame), state));
                        }
                        () = &mut state.shutdown => {
                            state.guard = None;
                            return Some((Ok(shutdown_frame()), state));
                        }
                        () = tokio::time::sleep(HEARTBEAT), if heartbeat => {
                            return Some((Ok(Bytes::from_static(b": heartbeat\n\n")), state));
                        }
                        changed = state.feed.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                            let Some(frame) = state.feed.borrow_and_update().clone() else { continue };
                            if let Some(last) = state.last_seq {
                                let skipped = frame.seq.saturating_sub(last + 1);
                                if skipped > 0 {
                                    sessions.metrics.dropped.inc_by(skipped);
                                }
                            }
                            state.last_seq = Some(frame.seq);
                            sessions.metrics.sent.inc();
                            sessions.metrics.bytes.inc_by(frame.bytes.len() as u64);
                            return Some((Ok(frame.bytes), state));
                        }
                    }
                }
            }
        })
    }
}

/// `retry:` too, so that EventSource clients come back as soon as the others.
fn rebalance_frame() -> Bytes {
    let data = json!({
        "reason": "this instance holds more than its share of the streams; reconnect, another one takes this stream",
        "reconnect_after_ms": REBALANCE_RETRY.as_millis() as u64,
    });
    Bytes::from(format!("retry: {}\nevent: rebalance\ndata: {data}\n\n", REBALANCE_RETRY.as_millis()))
}

fn shutdown_frame() -> Bytes {
    feed::control(
        "shutdown",
        &json!({ "reason": "this instance is shutting down; reconnect", "reconnect_after_ms": RECONNECT_AFTER.as_millis() as u64 }),
    )
}

/// A std mutex held for a few instructions, never across an await; a panic while holding one
/// leaves its value whole (every change is one assignment).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
