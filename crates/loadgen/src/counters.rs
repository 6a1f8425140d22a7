//! What a process's streams count, and the two views of it that leave the process: a
//! [`Status`] every second (the live line) and a [`Report`] at the end (the summary). A
//! worker sends both to its parent as JSON, which adds them up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kubescaler_core::sync::lock;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub struct Counters {
    pub open: AtomicU64,
    pub opened: AtomicU64,
    pub conflicts: AtomicU64,
    pub errors: AtomicU64,
    pub bytes: AtomicU64,
    pub messages: AtomicU64,
    pub gaps: AtomicU64,
    pub after_shutdown: AtomicU64,
    pub after_rebalance: AtomicU64,
    /// 503s with a retry time (an instance draining to its share, or stopping), retried.
    pub retried: AtomicU64,
    /// 409s met coming back after a `rebalance` or `shutdown`: the lock was not let go first.
    pub conflicts_on_return: AtomicU64,
    pub lock_lost: AtomicU64,
    pub unbound: AtomicU64,
    /// Streams closed by `--churn` to make room for another pair.
    pub churned: AtomicU64,
    /// Open streams per `host` (the instance that serves them).
    hosts: Mutex<BTreeMap<String, u64>>,
    /// Streams that moved after a `rebalance` or `shutdown`.
    moves: Mutex<Vec<Move>>,
    /// Fresh opens (not moves): microseconds from the request to the first message.
    first_events: Mutex<Vec<u64>>,
}

/// A stream that moved after a `rebalance` or `shutdown`: from, to, why, and the time from
/// the event to the first message of the new stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Move {
    pub from: String,
    pub to: String,
    pub why: Why,
    pub ms: u64,
}

/// The final event that sent a stream elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Why {
    Rebalance,
    Shutdown,
}

/// The counters a live line shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub open: u64,
    pub opened: u64,
    pub bytes: u64,
    pub conflicts: u64,
    pub errors: u64,
    pub gaps: u64,
    pub reconnects: u64,
    pub churned: u64,
    /// Open streams per host that serves some now.
    pub hosts: BTreeMap<String, u64>,
}

/// Everything a process's part of the summary needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub open_at_end: u64,
    pub opened: u64,
    pub conflicts: u64,
    pub errors: u64,
    pub messages: u64,
    pub gaps: u64,
    pub bytes: u64,
    pub after_shutdown: u64,
    pub after_rebalance: u64,
    pub retried: u64,
    pub conflicts_on_return: u64,
    pub lock_lost: u64,
    pub unbound: u64,
    pub churned: u64,
    pub moves: Vec<Move>,
    /// Microseconds from request to first message, of every fresh open.
    pub first_events_us: Vec<u64>,
    /// Every host that served a stream, open now or not.
    pub hosts: BTreeSet<String>,
}

pub fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counters {
    pub fn host_opened(&self, host: &str) {
        *lock(&self.hosts).entry(host.to_owned()).or_default() += 1;
    }

    pub fn host_closed(&self, host: &str) {
        let mut hosts = lock(&self.hosts);
        if let Some(open) = hosts.get_mut(host) {
            *open = open.saturating_sub(1);
        }
    }

    pub fn moved(&self, change: Move) {
        lock(&self.moves).push(change);
    }

    pub fn first_event(&self, us: u64) {
        lock(&self.first_events).push(us);
    }

    pub fn status(&self) -> Status {
        let hosts = lock(&self.hosts);
        Status {
            open: get(&self.open),
            opened: get(&self.opened),
            bytes: get(&self.bytes),
            conflicts: get(&self.conflicts),
            errors: get(&self.errors),
            gaps: get(&self.gaps),
            reconnects: get(&self.after_shutdown) + get(&self.after_rebalance),
            churned: get(&self.churned),
            hosts: hosts.iter().filter(|(_, n)| **n > 0).map(|(h, n)| (h.clone(), *n)).collect(),
        }
    }

    pub fn report(&self, open_at_end: u64) -> Report {
        Report {
            open_at_end,
            opened: get(&self.opened),
            conflicts: get(&self.conflicts),
            errors: get(&self.errors),
            messages: get(&self.messages),
            gaps: get(&self.gaps),
            bytes: get(&self.bytes),
            after_shutdown: get(&self.after_shutdown),
            after_rebalance: get(&self.after_rebalance),
            retried: get(&self.retried),
            conflicts_on_return: get(&self.conflicts_on_return),
            lock_lost: get(&self.lock_lost),
            unbound: get(&self.unbound),
            churned: get(&self.churned),
            moves: lock(&self.moves).clone(),
            first_events_us: lock(&self.first_events).clone(),
            hosts: lock(&self.hosts).keys().cloned().collect(),
        }
    }
}

impl Status {
    /// Adds another process's counters to these.
    pub fn merge(&mut self, other: &Status) {
        self.open += other.open;
        self.opened += other.opened;
        self.bytes += other.bytes;
        self.conflicts += other.conflicts;
        self.errors += other.errors;
        self.gaps += other.gaps;
        self.reconnects += other.reconnects;
        self.churned += other.churned;
        for (host, open) in &other.hosts {
            *self.hosts.entry(host.clone()).or_default() += open;
        }
    }

    /// `host:open` for every host that serves a stream now, e.g. `stream-a:3 stream-b:2`.
    pub fn spread(&self) -> String {
        let busy: Vec<String> = self.hosts.iter().map(|(h, n)| format!("{h}:{n}")).collect();
        busy.join(" ")
    }
}

impl Report {
    /// Adds another process's report to this one.
    pub fn merge(&mut self, other: Report) {
        self.open_at_end += other.open_at_end;
        self.opened += other.opened;
        self.conflicts += other.conflicts;
        self.errors += other.errors;
        self.messages += other.messages;
        self.gaps += other.gaps;
        self.bytes += other.bytes;
        self.after_shutdown += other.after_shutdown;
        self.after_rebalance += other.after_rebalance;
        self.retried += other.retried;
        self.conflicts_on_return += other.conflicts_on_return;
        self.lock_lost += other.lock_lost;
        self.unbound += other.unbound;
        self.churned += other.churned;
        self.moves.extend(other.moves);
        self.first_events_us.extend(other.first_events_us);
        self.hosts.extend(other.hosts);
    }
}
