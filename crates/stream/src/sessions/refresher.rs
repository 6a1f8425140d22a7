//! The instance's ONE refresher task: every `LOCK_REFRESH` it extends every held lock and
//! marker, in batches; every `REBALANCE_PERIOD` it publishes the instance's open streams and
//! hands the excess off; beside it a watchdog ends the streams whose locks could not be
//! extended in time, and the binding watcher the streams whose pair is no longer bound; on
//! shutdown it releases every lock, awaited.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};

use futures::FutureExt;
use futures::future::BoxFuture;
use kubescaler_server::{Ping, Probe};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Drain, End, Held, LockLost, Sessions};
use crate::changes::Notice;
use crate::locks::{ExtendError, Lease, RegistryUnavailable};

/// An instance's fleet entry outlives a missed publication or two; a dead instance's is
/// forgotten after this many periods.
const FLEET_ENTRY_PERIODS: u32 = 3;

/// The instance's refresher task, spawned once with the instance. Its [`drain`](Self::drain)
/// is the shutdown work the server awaits: it ends once every lock has been released.
///
/// A refresher that stops before the shutdown — a panic — leaves the instance's locks
/// unextended: it is logged as an error when it happens, and the [`probe`](Self::probe) named
/// `refresher` fails from then on, so the instance is taken out of service.
#[derive(Debug)]
pub struct Refresher {
    task: JoinHandle<()>,
    stopped: Arc<Stopped>,
}

/// Why the refresher stopped before the shutdown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefresherStopped {
    #[error("the refresher panicked: {0}")]
    Panicked(String),
    #[error("the refresher ended before the shutdown")]
    Ended,
}

/// Set once, if the refresher stops before the shutdown.
#[derive(Debug, Default)]
struct Stopped(OnceLock<RefresherStopped>);

impl Stopped {
    fn check(&self) -> BoxFuture<'_, Result<(), RefresherStopped>> {
        let result = self.0.get().cloned().map_or(Ok(()), Err);
        Box::pin(std::future::ready(result))
    }
}

impl Refresher {
    /// Starts `sessions`' refresher, and its binding watcher on `notices`; they run until the
    /// instance's shutdown token fires.
    pub(crate) fn spawn(sessions: Arc<Sessions>, notices: mpsc::UnboundedReceiver<Notice>) -> Self {
        let stopped = Arc::new(Stopped::default());
        let shutdown = sessions.shutdown.clone();
        let task = tokio::spawn({
            let stopped = stopped.clone();
            async move {
                // Caught, so that it is told now rather than when the drain awaits the task.
                let outcome = AssertUnwindSafe(sessions.refresh_until_shutdown(notices)).catch_unwind().await;
                let why = match outcome {
                    Ok(()) if shutdown.is_cancelled() => return,
                    Ok(()) => RefresherStopped::Ended,
                    Err(panic) => RefresherStopped::Panicked(panic_message(panic.as_ref())),
                };
                tracing::error!(error = %why, "the refresher stopped: held locks are no longer extended");
                let _ = stopped.0.set(why);
            }
        });
        Self { task, stopped }
    }

    /// Readiness of the refresher: fails once it stopped before the shutdown.
    pub(crate) fn probe(&self) -> Arc<dyn Probe> {
        Ping::probe("refresher", self.stopped.clone(), Stopped::check)
    }

    /// Waits for the refresher to finish its shutdown: every lock released.
    pub async fn drain(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the refresher's task failed");
        }
    }
}

/// A panic's message, when it has one (`panic!` with a text does).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "without a message".to_owned())
}

impl Sessions {
    /// The refresher: every `LOCK_REFRESH`, extend every held lock and marker; end the streams
    /// that lost theirs. Beside it, the watchdog ends the streams whose locks could not be
    /// extended in time, and the binding watcher those whose pair is no longer bound. On
    /// shutdown, release every lock.
    pub(crate) async fn refresh_until_shutdown(self: Arc<Self>, notices: mpsc::UnboundedReceiver<Notice>) {
        let refresher = async {
            let mut ticks = tokio::time::interval(self.config.lock_refresh());
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            // The first tick is at once: the instance joins the fleet as it starts.
            let mut rebalance = tokio::time::interval(self.config.rebalance_period());
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
        // the watchdog whenever its timer fires, and the watcher whenever a change comes.
        tokio::join!(refresher, self.watch_deadlines(), self.watch_bindings(notices));
        // Out of the fleet first, so that no instance counts this one's streams as placed.
        self.locks.withdraw(&self.config.hostname).await;
        // Every lock is released here, and awaited, so the pairs can move to another replica
        // at once; a stream's own guard could only spawn the release, and a spawned task does
        // not outlive the runtime when the process exits.
        let leaving: Vec<Held> = self.state().held.drain().map(|(_, held)| held).collect();
        let leases: Vec<Lease> = leaving
            .into_iter()
            .map(|held| {
                let _ = held.end.send(End::Shutdown);
                held.lease
            })
            .collect();
        self.locks.release(&leases).await;
        // Releases spawned before the drain (disconnects, unbound pairs) finish too.
        self.releases.close();
        self.releases.wait().await;
    }

    /// Ends every stream whose deadline has come, and sleeps until the next one. Deadlines only
    /// move later (an extension) or go (a stream ends); an earlier one can only come with a new
    /// stream, which wakes this.
    async fn watch_deadlines(&self) {
        loop {
            let now = Instant::now();
            let mut next = now + self.config.lock_refresh();
            let mut expired = Vec::new();
            {
                let mut state = self.state();
                let state = &mut *state;
                for (id, stream) in &state.held {
                    if stream.deadline <= now {
                        expired.push((*id, stream.unconfirmed.clone()));
                    } else {
                        next = next.min(stream.deadline);
                    }
                }
                // Set under the same lock as the scan: a stream opened after the scan compares
                // its deadline with this, not with the previous wake.
                state.watchdog_at = next;
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
        let (ids, leases): (Vec<u64>, Vec<Lease>) =
            self.state().held.iter().map(|(id, held)| (*id, held.lease.clone())).unzip();
        if leases.is_empty() {
            return;
        }
        let started = Instant::now();
        // Redis calls time out by themselves (REDIS_TIMEOUT); this bounds a cycle even if one
        // did not, so the next refresh comes while the locks are still valid.
        let extension = self.locks.extend(&leases, self.config.lock_ttl);
        let outcomes =
            tokio::time::timeout(self.config.lock_refresh(), extension).await.unwrap_or_else(|_| {
                let why = RegistryUnavailable::NoAnswer("LOCK_REFRESH");
                leases.iter().map(|_| Err(ExtendError::Unavailable(why.clone()))).collect()
            });
        self.metrics.refresh.observe(started.elapsed().as_secs_f64());
        let mut lost = Vec::new();
        let mut unconfirmed = 0;
        {
            let mut state = self.state();
            for ((id, lease), outcome) in ids.into_iter().zip(&leases).zip(outcomes) {
                let Some(stream) = state.held.get_mut(&id) else { continue };
                match outcome {
                    Ok(valid_until) => {
                        stream.deadline = stream.deadline.max(self.deadline(valid_until));
                        if stream.unconfirmed.take().is_some() {
                            tracing::info!(user = %lease.user, profile = %lease.profile, stream = id, "lock extended again");
                        }
                    }
                    Err(ExtendError::Lost(why)) => lost.push((id, why)),
                    // Perhaps still ours: the stream goes on until its deadline, which the
                    // watchdog keeps; the next refresh tries again.
                    Err(ExtendError::Unavailable(why)) => {
                        stream.unconfirmed = Some(why);
                        unconfirmed += 1;
                    }
                }
            }
        }
        for (id, why) in lost {
            self.end(id, End::LockLost(why.into()), "lock");
        }
        if unconfirmed > 0 {
            let example = self.state().held.values().find_map(|held| held.unconfirmed.clone());
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
        let own = self.state().held.len() as u64;
        let ttl = self.config.rebalance_period() * FLEET_ENTRY_PERIODS;
        let fleet = match self.locks.publish(&self.config.hostname, own, ttl).await {
            Ok(fleet) => fleet,
            Err(e) => {
                tracing::warn!(error = %e, "open streams not published; no rebalancing this period");
                return;
            }
        };
        if !self.config.rebalance {
            return;
        }
        let decision = self.state().rebalancer.tick(own, fleet.values().copied());
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
        let until = Instant::now() + self.config.rebalance_period() * 2;
        let moving: Vec<Held> = {
            let mut state = self.state();
            state.drain = Some(Drain { target: fair, until });
            let mut ids: Vec<u64> = state.held.keys().copied().collect();
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids.into_iter().take(count).filter_map(|id| state.held.remove(&id)).collect()
        };
        let started = Instant::now();
        let leases: Vec<Lease> = moving.iter().map(|held| held.lease.clone()).collect();
        self.locks.release(&leases).await;
        let released_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.metrics.rebalanced.inc_by(moving.len() as u64);
        tracing::info!(streams = moving.len(), fair, released_ms, "handed streams off");
        for held in moving {
            let _ = held.end.send(End::Rebalance);
        }
    }

    /// Ends stream `id` if it is still open; its lease when it was.
    pub(super) fn end(&self, id: u64, why: End, reason: &str) -> Option<Lease> {
        let held = self.state().held.remove(&id)?;
        tracing::info!(user = %held.lease.user, profile = %held.lease.profile, stream = id, ?why, "stream ended by the refresher");
        self.metrics.lost.with_label_values(&[reason]).inc();
        let _ = held.end.send(why);
        Some(held.lease)
    }
}
