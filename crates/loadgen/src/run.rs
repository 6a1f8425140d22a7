//! A process's share of a run: its streams, each opened on time on its URL, from its source
//! address, and replaced by another pair's now and then under `--churn`; and a run that one
//! process holds alone, live line and summary included.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubescaler_core::sync::lock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::args::Plan;
use crate::counters::{Counters, Report, add};
use crate::pairs::Pair;
use crate::stream::{End, client, stream};
use crate::summary::{self, Live};

/// How often the live line (or a worker's status) comes.
const TICK: Duration = Duration::from_secs(1);
/// A churning stream refused with 409 tries the next pair after this, so that a run whose
/// pairs are all locked elsewhere does not spin.
const LOCKED_PAUSE: Duration = Duration::from_secs(1);

/// Which streams a process holds: those whose index is `index` modulo `of`.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    pub index: usize,
    pub of: usize,
}

impl Share {
    pub const ALL: Share = Share { index: 0, of: 1 };

    fn holds(self, i: usize) -> bool {
        i % self.of == self.index
    }
}

/// The streams of a share, running until [`Running::finish`].
#[derive(Debug)]
pub struct Running {
    pub counters: Arc<Counters>,
    streams: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the share's streams: stream i opens at `plan.delay(i)` from now on URL i mod the
/// URLs, from source address i mod the addresses, on pair i mod the pairs. So a stream goes
/// to the same place, with the same pair, whatever the number of processes.
pub fn start(plan: &Plan, pairs: &[Pair], share: Share) -> anyhow::Result<Running> {
    anyhow::ensure!(!pairs.is_empty(), "no user–profile pairs to stream");
    let clients = if plan.sources.is_empty() {
        vec![client(None)?]
    } else {
        plan.sources.iter().map(|ip| client(Some(*ip))).collect::<anyhow::Result<Vec<_>>>()?
    };
    let counters = Arc::new(Counters::default());
    let streams = CancellationToken::new();
    let churn = plan.churn.map(|rate| {
        // A share takes the spare pairs of its own indices, so workers never compete for one.
        let spare = (plan.streams..pairs.len()).filter(|j| share.holds(*j)).map(|j| pairs[j]).collect();
        Arc::new(Churn { mean: plan.streams as f64 / rate, spare: Mutex::new(spare) })
    });
    let tasks = (share.index..plan.streams)
        .step_by(share.of)
        .map(|i| {
            let slot = Slot {
                base: plan.url(i).to_owned(),
                http: clients[i % clients.len()].clone(),
                counters: counters.clone(),
                read_rate: plan.read_rate,
                churn: churn.clone(),
            };
            let (delay, pair, streams) = (plan.delay(i), pairs[i % pairs.len()], streams.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = streams.cancelled() => return,
                }
                streams.run_until_cancelled(slot.hold(pair)).await;
            })
        })
        .collect();
    Ok(Running { counters, streams, tasks })
}

impl Running {
    /// Counts what is open, then stops every stream: the report's `open_at_end` is what the
    /// run held until its end.
    pub async fn finish(self) -> Report {
        let open_at_end = self.counters.open.load(Ordering::Relaxed);
        self.streams.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.counters.report(open_at_end)
    }
}

/// Pairs not in use, for the streams `--churn` replaces.
#[derive(Debug)]
struct Churn {
    /// Mean lifetime of a stream: with `streams` open, about streams/mean close per second.
    mean: f64,
    /// The pair just let go goes to the back: it comes back last, when its lock has had the
    /// most time to go.
    spare: Mutex<VecDeque<Pair>>,
}

impl Churn {
    /// Lifetimes drawn from an exponential distribution close streams at a steady rate
    /// without closing them in waves.
    fn lifetime(&self) -> Duration {
        let uniform: f64 = rand::random();
        Duration::from_secs_f64(-self.mean * (1.0 - uniform).ln())
    }

    fn next(&self, done: Pair) -> Pair {
        let mut spare = lock(&self.spare);
        spare.push_back(done);
        spare.pop_front().unwrap_or(done)
    }
}

/// What one stream index needs for its whole life.
struct Slot {
    base: String,
    http: reqwest::Client,
    counters: Arc<Counters>,
    read_rate: Option<u64>,
    churn: Option<Arc<Churn>>,
}

impl Slot {
    /// Holds a stream of `pair`; under churn, one pair after another, each for a drawn
    /// lifetime. A churning stream refused with 409 moves on to the next pair: the load is
    /// the number of streams, not those pairs.
    async fn hold(self, mut pair: Pair) {
        loop {
            let url = format!("{}/stream/{}/{}", self.base, pair.0, pair.1);
            let one = stream(&self.http, &url, &self.counters, self.read_rate);
            let Some(churn) = &self.churn else {
                one.await;
                return;
            };
            // Boxed: the timer would otherwise weigh on every stream's task, churned or not.
            match Box::pin(tokio::time::timeout(churn.lifetime(), one)).await {
                Err(_) => add(&self.counters.churned),
                Ok(End::Locked) => tokio::time::sleep(LOCKED_PAUSE).await,
                Ok(End::Over) => return,
            }
            pair = churn.next(pair);
        }
    }
}

/// The run in this process alone.
pub async fn alone(plan: &Plan, pairs: &[Pair], json: bool) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    let started = Instant::now();
    let running = start(plan, pairs, Share::ALL)?;
    let mut live = Live::new(started, plan, json);
    // Streams run until the run ends or a signal comes, and what is open then is counted
    // before they are stopped.
    let ticker = Ticker::new(Some(started + plan.length()), stop);
    while ticker.tick().await {
        live.tick(&running.counters.status());
    }
    let report = running.finish().await;
    let run = summary::Run {
        plan,
        pairs: pairs.len(),
        processes: 1,
        seconds: started.elapsed().as_secs_f64(),
        peak_open: live.peak_open,
    };
    summary::print(&run, &report, json);
    Ok(())
}

/// Why `--churn` cannot run with these pairs, if it cannot.
pub fn check_churn(plan: &Plan, pairs: usize, processes: usize) -> anyhow::Result<()> {
    if plan.churn.is_none() {
        return Ok(());
    }
    let streams = plan.streams;
    anyhow::ensure!(
        pairs > streams,
        "--churn replaces streams by streams of pairs not in use, so it needs more pairs than streams: \
         there are {pairs} pairs for {streams} streams"
    );
    // Spare pairs are split by index between the processes: each needs one of its own.
    anyhow::ensure!(
        pairs - streams >= processes,
        "--churn over {processes} processes needs a spare pair for each: {pairs} pairs for {streams} streams \
         leave {}; ask for fewer streams or processes, or use more pairs",
        pairs - streams
    );
    Ok(())
}

/// Paces a run: [`Ticker::tick`] waits for the next second, the run's end, or `stop`.
#[derive(Debug)]
pub struct Ticker {
    end: Option<Instant>,
    stop: CancellationToken,
}

impl Ticker {
    pub fn new(end: Option<Instant>, stop: CancellationToken) -> Ticker {
        Ticker { end, stop }
    }

    /// Whether the run goes on; it returns at each second and at the end (the last line shows
    /// what the run held), but not when stopped.
    pub async fn tick(&self) -> bool {
        let now = Instant::now();
        if self.end.is_some_and(|end| now >= end) {
            return false;
        }
        let at = self.end.map_or(now + TICK, |end| end.min(now + TICK));
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => true,
            () = self.stop.cancelled() => false,
        }
    }
}

/// Cancels `stop` on Ctrl-C or SIGTERM: the run ends early, with its summary.
pub async fn stop_on_signal(stop: CancellationToken) {
    let interrupted = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = interrupted => {}
                _ = terminate.recv() => {}
            },
            Err(_) => {
                let _ = interrupted.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupted.await;
    stop.cancel();
}

#[cfg(test)]
mod tests {
    use kubescaler_core::{ProfileId, UserId};

    use super::*;

    fn pair() -> Pair {
        (UserId::new_random(), ProfileId::new_random())
    }

    #[test]
    fn a_pair_let_go_comes_back_last() {
        let (a, b, c) = (pair(), pair(), pair());
        let churn = Churn { mean: 1.0, spare: Mutex::new(VecDeque::from([b, c])) };
        assert_eq!(churn.next(a), b);
        assert_eq!(churn.next(b), c);
        assert_eq!(churn.next(c), a);
    }

    #[test]
    fn lifetimes_average_the_mean() {
        let churn = Churn { mean: 2.0, spare: Mutex::new(VecDeque::new()) };
        let n = 20_000;
        let total: f64 = (0..n).map(|_| churn.lifetime().as_secs_f64()).sum();
        let mean = total / f64::from(n);
        assert!((1.9..2.1).contains(&mean), "{mean}");
    }

    #[test]
    fn churn_needs_spare_pairs() {
        let plan = Plan {
            urls: vec!["http://127.0.0.1:1".into()],
            streams: 10,
            duration: Duration::from_secs(1),
            ramp: 10.0,
            read_rate: None,
            churn: Some(5.0),
            sources: vec![],
        };
        assert!(check_churn(&plan, 10, 1).unwrap_err().to_string().contains("10 pairs for 10 streams"));
        assert!(check_churn(&plan, 11, 1).is_ok());
        assert!(check_churn(&plan, 11, 2).unwrap_err().to_string().contains("spare pair for each"));
        assert!(check_churn(&plan, 12, 2).is_ok());
        assert!(check_churn(&Plan { churn: None, ..plan }, 1, 1).is_ok());
    }
}
