//! Rebalancing: when stream scales up, move streams onto the new instances.
//!
//! A server-sent events stream lasts as long as its client stays, and a load balancer only
//! places new connections: without help, a new replica gets new streams and relieves nobody
//! (measured: 12 streams on the first of 3 pods, 12/0/0). So every instance publishes its
//! number of open streams every `REBALANCE_PERIOD` (see [`PairLocks::publish`]) and reads the
//! fleet's; this module decides, from that view, how many of its streams an instance hands off.
//!
//! The rules, and why:
//! - **Fair share** = ceil(total / live instances). An instance hands off only while it holds
//!   more than its share plus a tolerance (`REBALANCE_TOLERANCE`, default 10 % of the share
//!   and at least 1 stream), and then only down to its share — never below it. The gap between
//!   the two is the hysteresis that keeps an instance at its share from handing off one stream
//!   back and forth.
//! - **Settled first**: over the threshold at two ticks in a row (longer than one period), so a
//!   burst of opens or one stale view moves nothing.
//! - **Bounded**: at most half of its streams in one hand-off.
//! - **Quiet after**: no decision at the tick after a hand-off, so that every instance has
//!   published the moved streams before the next view is trusted (a view that missed them would
//!   move too many).
//! - **Nothing in an instance's first period**: its view of the fleet is not complete yet.
//!
//! How a stream is handed off (lock released first, `event: rebalance`, a short `retry:`) and
//! why the instance refuses new streams while it drains to its share is in
//! [`Sessions`](crate::sessions::Sessions).
//!
//! [`PairLocks::publish`]: crate::locks::PairLocks::publish

use std::str::FromStr;

/// Streams an instance may hold above its fair share before it hands any off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// A number of streams.
    Streams(u64),
    /// A percentage of the fair share, at least 1 stream.
    Percent(f64),
}

impl Tolerance {
    pub(crate) fn of(self, fair: u64) -> u64 {
        match self {
            Tolerance::Streams(n) => n,
            Tolerance::Percent(p) => ((fair as f64 * p / 100.0).ceil() as u64).max(1),
        }
    }
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance::Percent(10.0)
    }
}

impl FromStr for Tolerance {
    type Err = String;

    /// `3` (streams) or `10%` (of the fair share, at least 1 stream).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            match percent.trim().parse::<f64>() {
                Ok(p) if p.is_finite() && p >= 0.0 => Ok(Tolerance::Percent(p)),
                _ => Err(format!("`{text}` is not a percentage such as 10%")),
            }
        } else {
            text.parse::<u64>()
                .map(Tolerance::Streams)
                .map_err(|_| format!("`{text}` is neither a number of streams (3) nor a percentage (10%)"))
        }
    }
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tolerance::Streams(n) => write!(f, "{n}"),
            Tolerance::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// What one tick decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// ceil(total / live instances).
    pub fair: u64,
    /// Streams to hand off now (0: none).
    pub hand_off: u64,
}

/// One instance's rebalancing state, advanced once per `REBALANCE_PERIOD` tick.
#[derive(Debug, Clone)]
pub(crate) struct Rebalancer {
    tolerance: Tolerance,
    /// Ticks seen so far; the first one is the instance's first period.
    ticks: u64,
    /// Consecutive ticks over the threshold.
    over: u64,
    /// Ticks to sit out (after a hand-off).
    quiet: u64,
}

impl Rebalancer {
    pub(crate) fn new(tolerance: Tolerance) -> Self {
        Self { tolerance, ticks: 0, over: 0, quiet: 0 }
    }

    /// `own`: the streams this instance holds; `fleet`: every live instance's, its own included.
    pub(crate) fn tick(&mut self, own: u64, fleet: impl IntoIterator<Item = u64>) -> Decision {
        self.ticks += 1;
        let (mut live, mut total) = (0u64, 0u64);
        for streams in fleet {
            live += 1;
            total += streams;
        }
        let fair = total.div_ceil(live.max(1));
        let decision = |hand_off| Decision { fair, hand_off };
        if self.ticks == 1 {
            return decision(0);
        }
        if self.quiet > 0 {
            self.quiet -= 1;
            return decision(0);
        }
        if own <= fair + self.tolerance.of(fair) {
            self.over = 0;
            return decision(0);
        }
        self.over += 1;
        if self.over < 2 {
            return decision(0);
        }
        self.over = 0;
        self.quiet = 1;
        decision((own - fair).min(own.div_ceil(2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(rebalancer: &mut Rebalancer, own: u64, fleet: &[u64], n: usize) -> Vec<u64> {
        (0..n).map(|_| rebalancer.tick(own, fleet.iter().copied()).hand_off).collect()
    }

    #[test]
    fn a_lone_instance_never_hands_off() {
        let mut r = Rebalancer::new(Tolerance::default());
        assert_eq!(ticks(&mut r, 500, &[500], 10), vec![0; 10]);
    }

    #[test]
    fn the_excess_goes_after_two_ticks_over_and_never_below_the_fair_share() {
        let mut r = Rebalancer::new(Tolerance::default());
        // First period: nothing. Then over once: settling. Then the excess, down to 20.
        assert_eq!(ticks(&mut r, 40, &[40, 0], 3), vec![0, 0, 20]);
        assert_eq!(r.tick(40, [40, 0]).fair, 20);
    }

    #[test]
    fn the_tick_after_a_hand_off_is_quiet() {
        let mut r = Rebalancer::new(Tolerance::default());
        assert_eq!(ticks(&mut r, 40, &[40, 0], 3), vec![0, 0, 20]);
        // Still seen over (the others have not published the moved streams yet): quiet, then
        // two ticks of settling again.
        assert_eq!(ticks(&mut r, 40, &[40, 0], 3), vec![0, 0, 20]);
    }

    #[test]
    fn at_most_half_of_the_streams_move_at_once() {
        let mut r = Rebalancer::new(Tolerance::default());
        // 60 on one of three: fair 20, excess 40, but 30 at most.
        assert_eq!(ticks(&mut r, 60, &[60, 0, 0], 3), vec![0, 0, 30]);
    }

    #[test]
    fn within_the_tolerance_nothing_moves() {
        let mut r = Rebalancer::new(Tolerance::default());
        // fair 20, 10 % of it is 2: 22 stays, 23 moves 3.
        assert_eq!(ticks(&mut r, 22, &[22, 18], 5), vec![0; 5]);
        let mut r = Rebalancer::new(Tolerance::default());
        assert_eq!(ticks(&mut r, 23, &[23, 17], 3), vec![0, 0, 3]);
        // At least one stream: fair 2, 3 stays.
        let mut r = Rebalancer::new(Tolerance::default());
        assert_eq!(ticks(&mut r, 3, &[3, 1], 5), vec![0; 5]);
        let mut r = Rebalancer::new(Tolerance::Streams(0));
        assert_eq!(ticks(&mut r, 3, &[3, 1], 3), vec![0, 0, 1]);
    }

    #[test]
    fn dipping_under_the_threshold_restarts_the_settling() {
        let mut r = Rebalancer::new(Tolerance::default());
        r.tick(40, [40, 0]);
        assert_eq!(r.tick(40, [40, 0]).hand_off, 0, "over once");
        assert_eq!(r.tick(20, [20, 20]).hand_off, 0, "under");
        assert_eq!(r.tick(40, [40, 0]).hand_off, 0, "over once again");
        assert_eq!(r.tick(40, [40, 0]).hand_off, 20);
    }

    #[test]
    fn tolerances_parse_as_streams_or_percentages() {
        assert_eq!("3".parse::<Tolerance>(), Ok(Tolerance::Streams(3)));
        assert_eq!(" 10% ".parse::<Tolerance>(), Ok(Tolerance::Percent(10.0)));
        assert_eq!("2.5%".parse::<Tolerance>(), Ok(Tolerance::Percent(2.5)));
        for bad in ["", "-1", "ten", "%", "-5%", "1.5", "nan%"] {
            assert!(bad.parse::<Tolerance>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(Tolerance::default().to_string(), "10%");
        assert_eq!(Tolerance::Percent(10.0).of(35), 4);
        assert_eq!(Tolerance::Percent(10.0).of(0), 1);
    }
}
