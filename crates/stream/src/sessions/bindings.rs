//! Bindings of held pairs, kept true without asking base per stream: the instance's binding
//! watcher re-checks only the pairs a change touches, when base announces it, and sweeps every
//! held pair once per `BINDING_SWEEP` in case an announcement was lost. Both ask base in
//! batches of up to 1,000 pairs (`POST /bindings/check`, one single-cell read per pair), so a
//! held stream costs base nothing while nothing changes.
//!
//! A stream admitted while a change was on its way may have been checked before the change and
//! registered after the watcher looked: admission compares the [`epoch`](State::epoch) it
//! read before its check with the one after registering, and checks again when they differ.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kubescaler_base_client::BaseError;
use kubescaler_core::bindings::{BindingChange, CheckPairs, MAX_PAIRS_PER_CHECK, Pair};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::{End, Sessions};
use crate::changes::Notice;

/// How long the watcher gathers notices after the first before checking: one change arrives
/// once per Redis instance, and a burst of writes (test data being dropped) is many changes;
/// both become one check.
const GATHER: Duration = Duration::from_millis(10);
/// The pause before a check that base could not answer is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How often the watcher looks for pairs due a sweep check (their last check older than
/// `BINDING_SWEEP`): every second, or ten times per a shorter `BINDING_SWEEP`. Each look checks
/// at most twice its share of the held pairs, oldest first, so a sweep is a steady trickle of
/// small batches (16,000 held pairs at the default 5 min: about 55 a second), never a burst of
/// thousands of reads that a re-check after a change would queue behind at Cassandra — not even
/// 5 min after every held pair was checked at once.
const SWEEP_TICK: Duration = Duration::from_secs(1);

/// The interval between looks for pairs due a sweep check.
fn sweep_tick(sweep: Duration) -> Duration {
    (sweep / 10).min(SWEEP_TICK)
}

/// Most pairs one look checks: twice its share of `held` pairs, at least one, at most one batch.
fn sweep_share(held: usize, sweep: Duration) -> usize {
    let looks = (sweep.as_secs_f64() / sweep_tick(sweep).as_secs_f64()).max(1.0);
    ((2.0 * held as f64 / looks).ceil() as usize).clamp(1, MAX_PAIRS_PER_CHECK)
}

/// What the watcher still has to check.
#[derive(Debug, Default)]
struct Pending {
    /// Pairs whose user left the profile: most changes, found without a scan of the others.
    left: HashSet<Pair>,
    /// Profiles and users every pair of which may have changed.
    changes: HashSet<BindingChange>,
    /// Every held pair (changes were missed).
    all: bool,
}

impl Pending {
    fn add(&mut self, notice: Notice) {
        match notice {
            Notice::Changed(BindingChange::All) | Notice::Missed => self.all = true,
            Notice::Changed(BindingChange::Left(pair)) => {
                self.left.insert(pair);
            }
            Notice::Changed(change) => {
                self.changes.insert(change);
            }
        }
    }

    fn is_empty(&self) -> bool {
        !self.all && self.left.is_empty() && self.changes.is_empty()
    }

    fn touches(&self, pair: Pair) -> bool {
        self.all
            || self.left.contains(&pair)
            || self.changes.iter().any(|change| change.touches(pair.user, pair.profile))
    }
}

impl Sessions {
    /// The binding watcher, until shutdown: checks again the held pairs that announced changes
    /// touch, and sweeps every held pair once per `BINDING_SWEEP`.
    pub(super) async fn watch_bindings(self: &Arc<Self>, mut notices: mpsc::UnboundedReceiver<Notice>) {
        let mut sweep = tokio::time::interval(sweep_tick(self.config.binding_sweep));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = Pending::default();
        let mut retry_at: Option<Instant> = None;
        let mut listening = true;
        // A sweep runs beside the watcher, not in it: a slice of a large instance's pairs is
        // thousands of reads, and an announced change must not wait behind them.
        let mut sweeping: Option<AbortOnDropHandle<()>> = None;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                notice = notices.recv(), if listening => {
                    let Some(notice) = notice else {
                        // No source any more: the sweep alone keeps bindings true.
                        listening = false;
                        continue;
                    };
                    pending.add(notice);
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(GATHER) => {}
                    }
                    while let Ok(notice) = notices.try_recv() {
                        pending.add(notice);
                    }
                }
                () = wait_until(retry_at) => {}
                _ = sweep.tick() => {
                    // One sweep at a time: while the last one runs, its pairs are being checked.
                    if sweeping.as_ref().is_some_and(|sweep| !sweep.is_finished()) {
                        continue;
                    }
                    let stale = self.due_a_sweep();
                    if stale.is_empty() {
                        continue;
                    }
                    let sessions = Arc::clone(self);
                    sweeping = Some(AbortOnDropHandle::new(tokio::spawn(async move {
                        if let Err(e) = sessions.recheck(stale).await {
                            tracing::warn!(error = %e, "bindings not swept; the next tick tries again");
                        }
                    })));
                    continue;
                }
            }
            if pending.is_empty() {
                continue;
            }
            let touched = self.held_where(|pair| pending.touches(pair));
            match self.recheck(touched).await {
                Ok(()) => {
                    pending = Pending::default();
                    retry_at = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?RETRY, "changed bindings not checked; trying again");
                    retry_at = Some(Instant::now() + RETRY);
                }
            }
        }
    }

    /// The held streams whose last check is older than `BINDING_SWEEP`, oldest first, at most
    /// one look's share.
    fn due_a_sweep(&self) -> Vec<(u64, Pair)> {
        let sweep = self.config.binding_sweep;
        let Some(due) = Instant::now().checked_sub(sweep) else { return Vec::new() };
        let state = self.state();
        let mut stale: Vec<_> = state
            .held
            .iter()
            .filter(|(_, held)| held.checked <= due)
            .map(|(id, held)| {
                (held.checked, *id, Pair { user: held.lease.user, profile: held.lease.profile })
            })
            .collect();
        let share = sweep_share(state.held.len(), sweep);
        drop(state);
        if stale.len() > share {
            stale.select_nth_unstable_by_key(share, |(checked, _, _)| *checked);
            stale.truncate(share);
        }
        stale.into_iter().map(|(_, id, pair)| (id, pair)).collect()
    }

    /// The held streams whose pair a change touches (`select`). The epoch moves under the same
    /// lock: an admission that registers after this read sees it moved and checks its pair
    /// itself.
    fn held_where(&self, select: impl Fn(Pair) -> bool) -> Vec<(u64, Pair)> {
        let mut state = self.state();
        state.epoch += 1;
        state
            .held
            .iter()
            .filter_map(|(id, held)| {
                let pair = Pair { user: held.lease.user, profile: held.lease.profile };
                select(pair).then_some((*id, pair))
            })
            .collect()
    }

    /// Asks base about `streams`' pairs, a batch at a time; ends the streams whose pair is no
    /// longer bound (`event: unbound`) and releases their locks.
    async fn recheck(self: &Arc<Self>, streams: Vec<(u64, Pair)>) -> Result<(), BaseError> {
        for batch in streams.chunks(MAX_PAIRS_PER_CHECK) {
            let asked = Instant::now();
            let pairs = batch.iter().map(|(_, pair)| *pair).collect();
            // At most MAX_PAIRS_PER_CHECK by construction.
            let Ok(pairs) = CheckPairs::new(pairs) else { continue };
            let verdicts = self.base.bindings(pairs).await?;
            let mut unbound = Vec::new();
            {
                let mut state = self.state();
                for ((id, _), bound) in batch.iter().zip(verdicts) {
                    match state.held.get_mut(id) {
                        Some(stream) if bound => stream.checked = stream.checked.max(asked),
                        Some(_) => unbound.push(*id),
                        None => {}
                    }
                }
            }
            let leases: Vec<_> =
                unbound.into_iter().filter_map(|id| self.end(id, End::Unbound, "unbound")).collect();
            if !leases.is_empty() {
                let locks = self.locks.clone();
                self.releases.spawn(async move { locks.release(&leases).await });
            }
        }
        Ok(())
    }
}

async fn wait_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use kubescaler_core::{ProfileId, UserId};

    use super::*;

    #[test]
    fn a_sweep_is_a_trickle_of_small_batches() {
        let five_minutes = Duration::from_secs(300);
        assert_eq!(sweep_tick(five_minutes), Duration::from_secs(1));
        assert_eq!(sweep_tick(Duration::from_secs(2)), Duration::from_millis(200));
        // 16,000 pairs over 300 looks: twice the 54 a look must check on average.
        assert_eq!(sweep_share(16_000, five_minutes), 107);
        assert_eq!(sweep_share(0, five_minutes), 1);
        assert_eq!(sweep_share(1_000_000, five_minutes), MAX_PAIRS_PER_CHECK);
        assert_eq!(sweep_share(2, Duration::from_secs(2)), 1);
    }

    #[test]
    fn pending_changes_touch_the_pairs_they_name_and_a_miss_touches_all() {
        let pair = Pair { user: UserId::new_random(), profile: ProfileId::new_random() };
        let mut pending = Pending::default();
        assert!(pending.is_empty());
        pending.add(Notice::Changed(BindingChange::Profile(ProfileId::new_random())));
        assert!(!pending.touches(pair));
        pending.add(Notice::Changed(BindingChange::Left(Pair { user: UserId::new_random(), ..pair })));
        assert!(!pending.is_empty() && !pending.touches(pair));
        pending.add(Notice::Changed(BindingChange::Left(pair)));
        assert!(pending.touches(pair));
        let mut by_user = Pending::default();
        by_user.add(Notice::Changed(BindingChange::User(pair.user)));
        assert!(by_user.touches(pair));
        let mut missed = Pending::default();
        missed.add(Notice::Missed);
        assert!(!missed.is_empty() && missed.touches(pair));
    }
}
