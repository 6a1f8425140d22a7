//! Admission: a stream opens when the pair is bound (base says so), the instance has room
//! (`MAX_CONNECTIONS`), is not handing streams off, and the pair's lock is ours. Nothing is
//! locked and nothing counted when it does not.

use std::sync::Arc;
use std::time::Duration;

use kubescaler_base_client::Binding;
use kubescaler_core::{ProfileId, UserId};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::body::{OpenStream, StreamGuard};
use super::{Drain, Held, Refusal, Sessions};
use crate::locks::AcquireError;

/// What a client refused by a draining instance is told to wait before trying (elsewhere).
const DRAINING_RETRY: Duration = Duration::from_millis(100);
impl Sessions {
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
        let epoch = self.state().epoch;
        match self.base.binding(profile, user).await? {
            Binding::Bound => {}
            Binding::NotBound => return Err(Refusal::NotBound(user, profile)),
            Binding::NoProfile => return Err(Refusal::NoProfile(profile)),
        }
        let permit = self
            .capacity
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full(self.config.max_connections))?;
        let bound = started.elapsed();
        let lease = match self.locks.acquire(user, profile, self.config.lock_ttl).await {
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
        let (end_tx, end_rx) = oneshot::channel();
        let deadline = self.deadline(lease.valid_until);
        // Registered under the lock the shutdown drain takes after cancelling: either the drain
        // sees this pair and releases it, or this request does, before answering.
        let registered = {
            let mut state = self.state();
            (!self.shutdown.is_cancelled()).then(|| {
                let id = state.next_id;
                state.next_id += 1;
                let held =
                    Held { lease: lease.clone(), end: end_tx, deadline, unconfirmed: None, checked: started };
                state.held.insert(id, held);
                (id, state.epoch != epoch, deadline < state.watchdog_at)
            })
        };
        let Some((id, changed, wake_watchdog)) = registered else {
            self.locks.release(std::slice::from_ref(&lease)).await;
            return Err(Refusal::ShuttingDown);
        };
        if wake_watchdog {
            self.watchdog.notify_one();
        }
        // A change the watcher read the held pairs for after this pair's check and before it
        // was registered here could have unbound it unseen: check again, as the watcher would.
        if changed {
            let refusal = match self.base.binding(profile, user).await {
                Ok(Binding::Bound) => None,
                Ok(Binding::NotBound) => Some(Refusal::NotBound(user, profile)),
                Ok(Binding::NoProfile) => Some(Refusal::NoProfile(profile)),
                Err(e) => Some(Refusal::Base(e)),
            };
            if let Some(refusal) = refusal {
                self.state().held.remove(&id);
                self.locks.release(std::slice::from_ref(&lease)).await;
                return Err(refusal);
            }
        }
        self.metrics.active.inc();
        tracing::info!(%user, %profile, stream = id, binding = ?bound, lock = ?(started.elapsed() - bound), "stream opened");
        let guard = StreamGuard { id, lease, sessions: self.clone(), _permit: permit };
        Ok(OpenStream { guard, end: end_rx })
    }

    /// Whether this instance refuses new streams: it handed some off less than two periods ago
    /// and still holds its fair share or more.
    fn draining(&self) -> bool {
        let mut state = self.state();
        match state.drain {
            Some(Drain { until, .. }) if Instant::now() >= until => {
                state.drain = None;
                false
            }
            Some(Drain { target, .. }) => state.held.len() >= target,
            None => false,
        }
    }
}
