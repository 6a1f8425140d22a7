//! Binding changes, announced: after each write that can take a user out of a profile, base
//! says so on the channel stream listens to ([`keys::BINDINGS`]), so a stream whose pair is no
//! longer bound ends within a moment — and no open stream costs base a request while nothing
//! changes.
//!
//! Announcing never delays or fails a write: the change is queued for one publisher task and
//! the write answers at once. A change that cannot be published (Redis away, the queue full)
//! is counted and logged; stream's slow sweep of every held pair (`BINDING_SWEEP`) is the
//! safety net that catches it.

use kubescaler_core::bindings::BindingChange;
use kubescaler_core::keys;
use kubescaler_redis::{Failures, RedisArgs, RedisInstances};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::{broadcast, mpsc};

/// Changes waiting for the publisher. A burst of writes larger than this (thousands within
/// the few milliseconds a publication takes) drops the excess, which the sweep catches.
const QUEUE: usize = 4_096;

/// Where base announces binding changes.
pub trait Announce: Send + Sync + 'static {
    /// Queues `change` for the instances that hold streams; returns at once.
    fn announce(&self, change: BindingChange);
}

impl std::fmt::Debug for dyn Announce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Announce")
    }
}

/// The all-in-one process's announcer: stream, in the same process, holds a receiver.
impl Announce for broadcast::Sender<BindingChange> {
    fn announce(&self, change: BindingChange) {
        // No receiver (no stream in this process) is no one to tell.
        let _ = self.send(change);
    }
}

/// Announces on every instance of `REDIS_URLS` (`PUBLISH`), in the order of the writes.
#[derive(Debug)]
pub struct RedisAnnouncer {
    queue: mpsc::Sender<BindingChange>,
    counted: Counted,
}

/// `kubescaler_base_binding_changes_total{result}`: published (on at least one instance), lost
/// (no instance took it), dropped (the queue was full).
#[derive(Debug, Clone)]
struct Counted(IntCounterVec);

impl Counted {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = IntCounterVec::new(
            Opts::new(
                "kubescaler_base_binding_changes_total",
                "Binding changes announced to stream, by result: published, lost (no Redis instance \
                 took it) or dropped (queue full); stream's sweep catches the last two",
            ),
            &["result"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        for result in ["published", "lost", "dropped"] {
            counter.with_label_values(&[result]);
        }
        Ok(Self(counter))
    }

    fn inc(&self, result: &str) {
        self.0.with_label_values(&[result]).inc();
    }
}

impl RedisAnnouncer {
    /// Starts the publisher; it ends once the announcer is dropped and the queue is empty.
    pub fn start(config: &RedisArgs, registry: &Registry) -> anyhow::Result<Self> {
        let instances = RedisInstances::new(config)?;
        let counted = Counted::new(registry)?;
        let (queue, changes) = mpsc::channel(QUEUE);
        tokio::spawn(publish(instances, changes, counted.clone()));
        Ok(Self { queue, counted })
    }
}

impl Announce for RedisAnnouncer {
    fn announce(&self, change: BindingChange) {
        if self.queue.try_send(change).is_err() {
            self.counted.inc("dropped");
            tracing::warn!(%change, "binding change dropped: the publisher is behind; stream's sweep will catch it");
        }
    }
}

async fn publish(instances: RedisInstances, mut changes: mpsc::Receiver<BindingChange>, counted: Counted) {
    while let Some(change) = changes.recv().await {
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(keys::BINDINGS).arg(change.to_string());
        // Every instance, as stream listens on every instance: one that answers is enough.
        let (answers, failures) = instances.on_all::<i64>(&publish).await;
        if answers.is_empty() {
            counted.inc("lost");
            tracing::warn!(%change, failures = %Failures(&failures), "binding change not published; stream's sweep will catch it");
        } else {
            counted.inc("published");
            tracing::debug!(%change, listeners = answers.iter().sum::<i64>(), "binding change published");
        }
    }
}
