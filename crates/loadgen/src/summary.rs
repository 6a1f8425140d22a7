//! What a run shows: the live line every second, and the summary at the end (text, or JSON
//! that scripts read: its field names and meanings stay as they are). Both read counters
//! added up over the processes, so one process or six print alike.

use std::time::Instant;

use kubescaler_core::percentile::percentile;

use crate::args::Plan;
use crate::counters::{Report, Status};
use crate::source;

/// The live line, printed on stderr unless the summary is JSON.
#[derive(Debug)]
pub struct Live {
    started: Instant,
    asked: usize,
    churn: bool,
    quiet: bool,
    last_bytes: u64,
    /// The most streams open at one tick.
    pub peak_open: u64,
}

impl Live {
    pub fn new(started: Instant, plan: &Plan, quiet: bool) -> Live {
        Live { started, asked: plan.streams, churn: plan.churn.is_some(), quiet, last_bytes: 0, peak_open: 0 }
    }

    pub fn tick(&mut self, status: &Status) {
        let open = status.open;
        self.peak_open = self.peak_open.max(open);
        let rate = status.bytes.saturating_sub(self.last_bytes) as f64;
        self.last_bytes = status.bytes;
        if self.quiet {
            return;
        }
        let churned = if self.churn { format!("  churned {:>6}", status.churned) } else { String::new() };
        eprintln!(
            "{:>5.0}s  open {open:>5}/{}  409 {:>5}  errors {:>4}  {:>8.1} MB/s  {:>7.1} kB/s per stream  gaps {:>7}  reconnects {:>4}{churned}  on {}",
            self.started.elapsed().as_secs_f64(),
            self.asked,
            status.conflicts,
            status.errors,
            rate / 1e6,
            if open > 0 { rate / open as f64 / 1e3 } else { 0.0 },
            status.gaps,
            status.reconnects,
            status.spread(),
        );
    }
}

/// What the summary says beside the counters.
#[derive(Debug)]
pub struct Run<'a> {
    pub plan: &'a Plan,
    pub pairs: usize,
    pub processes: usize,
    pub seconds: f64,
    pub peak_open: u64,
}

pub fn json(run: &Run, report: &Report) -> serde_json::Value {
    let mut move_ms: Vec<u64> = report.moves.iter().map(|m| m.ms).collect();
    move_ms.sort_unstable();
    let mut first_events = report.first_events_us.clone();
    first_events.sort_unstable();
    let first_event_ms = |p: f64| percentile(&first_events, p).map(|us| us as f64 / 1000.0);
    serde_json::json!({
        "url": run.plan.url_text(),
        "pairs": run.pairs,
        "streams_asked": run.plan.streams,
        "streams_opened": report.opened,
        "peak_open": run.peak_open.max(report.open_at_end),
        "open_at_end": report.open_at_end,
        "refused_locked_409": report.conflicts,
        "errors": report.errors,
        "messages": report.messages,
        "gaps_in_seq": report.gaps,
        "bytes": report.bytes,
        "mb_per_s": report.bytes as f64 / run.seconds / 1e6,
        "reconnects_after_shutdown": report.after_shutdown,
        "reconnects_after_rebalance": report.after_rebalance,
        "refused_and_retried_503": report.retried,
        "refused_locked_409_on_return": report.conflicts_on_return,
        "moves": report.moves,
        "move_ms_median": percentile(&move_ms, 0.5),
        "move_ms_max": move_ms.last(),
        "first_event_ms": { "p50": first_event_ms(0.5), "p99": first_event_ms(0.99), "max": first_event_ms(1.0) },
        "hosts": report.hosts,
        "lock_lost": report.lock_lost,
        "unbound": report.unbound,
        "churned": report.churned,
        "processes": run.processes,
        "source_addresses": run.plan.sources,
        "seconds": run.seconds,
    })
}

/// Prints the summary on stdout.
pub fn print(run: &Run, report: &Report, as_json: bool) {
    let summary = json(run, report);
    if as_json {
        println!("{summary}");
        return;
    }
    let plan = run.plan;
    let opened = if plan.churn.is_some() {
        // Under churn, a slot opens one stream after another.
        format!("{} streams opened for {} asked", report.opened, plan.streams)
    } else {
        format!("{} of {} streams opened", report.opened, plan.streams)
    };
    println!(
        "\n{opened} over {} pairs; peak {} open; {:.1} MB/s on average; {} messages, {} skipped (gaps in seq)",
        run.pairs,
        summary["peak_open"],
        summary["mb_per_s"].as_f64().unwrap_or(0.0),
        summary["messages"],
        summary["gaps_in_seq"]
    );
    if run.processes > 1 || !plan.sources.is_empty() {
        let from = if plan.sources.is_empty() {
            "source addresses the system chose".to_owned()
        } else {
            format!("source addresses {}", source::describe(&plan.sources))
        };
        println!(
            "held by {} process{}, from {from}",
            run.processes,
            if run.processes == 1 { "" } else { "es" }
        );
    }
    if report.conflicts > 0 {
        let why = if plan.streams > run.pairs {
            format!("{} streams were asked of {} pairs", plan.streams, run.pairs)
        } else if let Some(rate) = plan.churn {
            format!(
                "a pair let go by churn comes back after about {:.0} s ({} spare pairs at {rate}/s), and the service may keep its lock up to LOCK_TTL after a disconnect",
                (run.pairs - plan.streams) as f64 / rate,
                run.pairs - plan.streams
            )
        } else {
            "those pairs were already streaming (another client, or a stream closed less than LOCK_TTL ago)"
                .to_owned()
        };
        println!(
            "{} streams were refused with 409: a pair streams once at a time, and {why} — that is the lock working",
            report.conflicts
        );
    }
    if plan.churn.is_some() {
        println!("{} streams closed by churn and replaced by another pair's", report.churned);
    }
    println!(
        "errors {}, reconnects after a rebalance {} and after a shutdown {} ({} of them refused with 409 on return, {} 503s retried), ended by lock loss {}, by unbinding {}",
        summary["errors"],
        summary["reconnects_after_rebalance"],
        summary["reconnects_after_shutdown"],
        summary["refused_locked_409_on_return"],
        summary["refused_and_retried_503"],
        summary["lock_lost"],
        summary["unbound"]
    );
    let hosts: Vec<&str> = report.hosts.iter().map(String::as_str).collect();
    println!("served by {}", hosts.join(", "));
    if let (Some(median), Some(max)) = (summary["move_ms_median"].as_u64(), summary["move_ms_max"].as_u64()) {
        println!(
            "{} streams moved to another instance, streaming again within {median} ms (median), {max} ms (max)",
            report.moves.len()
        );
    }
}
