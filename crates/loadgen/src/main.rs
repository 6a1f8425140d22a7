//! `loadgen`: pushes streaming load through kubescaler's public URL (the all-in-one front door,
//! nginx, or a cluster's Ingress) and shows, every second, what the streams get.
//!
//! Pairs come from the first URL's `/main/profiles` (every user of every profile) or a file of
//! `user profile` lines. N streams open at R per second, are held for D, optionally read
//! slowly, and the run stops by itself with a summary (text, or JSON with `--json`). More
//! streams than pairs meet 409s: that is the lock doing its job, and the summary says so. A
//! stream told `rebalance` (its instance holds more than its share) or `shutdown` (its
//! instance stops) reconnects after the time the event gives, as the test agent page does, and
//! a refusal that gives a retry time (503 from an instance draining or stopping) is retried;
//! the summary says how long each move took and where the streams are (the `host` of their
//! events). Ctrl-C or SIGTERM ends the run early, with the summary.
//!
//! One machine holds 100,000 streams this way:
//! - `--url` takes several base URLs, comma-separated (several stream instances): stream i goes
//!   to URL i mod their number.
//! - Each stream holds a socket, and a process may hold only so many open files: every process
//!   raises its soft limit to the hard one, and `--processes` (`auto` by default: the streams
//!   over the limit less a reserve) splits the streams between workers, loadgen started again
//!   by itself; worker k of n holds streams k, k+n, k+2n… ([`workers`] tells how they talk).
//!   The live line and the summary are the same whatever the number of processes. A signal
//!   to the parent stops the workers, which still report; a worker that dies ends the run, and
//!   the parent says so, sums up the others and exits non-zero; no worker outlives its parent.
//! - One source address reaches a destination from at most the ~28,000 ports of the ephemeral
//!   range, and a port bound before connecting is taken for every destination: the streams
//!   spread over `--source-addresses`, stream i from address i mod their number, by default
//!   127.0.0.1, 127.0.0.2, … one per 20,000 streams when every URL is on loopback.
//! - `--churn RATE` closes streams at about RATE per second while the load is held, each
//!   replaced by a stream of a pair not in use; the pair let go comes back last. Each worker
//!   churns its own share of the pairs, so that no two compete for one.
//!
//! The JSON summary keeps its fields, and adds `processes`, `source_addresses` and `churned`.
//!
//! An idle stream costs about 21 kB of memory (10,000 held by one release build: 215–222 MB
//! of RSS), most of it hyper's two 8 kB buffers per connection, which reqwest does not let
//! shrink; the client keeps to HTTP/1.1 and pools nothing, as a stream never lends its
//! connection to another.

mod args;
mod counters;
mod pairs;
mod run;
mod source;
mod stream;
mod summary;
mod workers;

use std::path::Path;

use anyhow::Context;
use clap::Parser;

use crate::args::{Args, Plan};
use crate::pairs::Pair;
use crate::run::Share;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let limit = raise_open_files();
    let plan = Plan::new(&args)?;
    match worker_share(&args)? {
        Some(share) => workers::work(&plan, share)
            .await
            .with_context(|| format!("worker {} of {}", share.index, share.of)),
        None => whole_run(&args, &plan, limit).await,
    }
}

/// The share of a worker, when the parent started this process as one (`--worker K --workers N`).
fn worker_share(args: &Args) -> anyhow::Result<Option<Share>> {
    let (Some(index), Some(of)) = (args.worker, args.workers) else {
        return Ok(None);
    };
    anyhow::ensure!(index < of, "worker {index} of {of}: there is no such worker");
    Ok(Some(Share { index, of }))
}

/// The run the user asked for: in this process alone, or led over as many workers as the open
/// files call for.
async fn whole_run(args: &Args, plan: &Plan, limit: u64) -> anyhow::Result<()> {
    let processes = args::processes(args.processes, plan.streams, limit);
    args::warn_of_limits(plan, processes, limit);
    let pairs = load_pairs(plan, args.pairs.as_deref()).await?;
    run::check_churn(plan, pairs.len(), processes)?;
    if processes > 1 {
        workers::lead(plan, &pairs, processes, args.json).await
    } else {
        run::alone(plan, &pairs, args.json).await
    }
}

/// The pairs to stream, from `file` or else from the first URL; a run without any cannot start.
async fn load_pairs(plan: &Plan, file: Option<&Path>) -> anyhow::Result<Vec<Pair>> {
    let url = &plan.urls[0];
    let pairs = pairs::load(url, file).await?;
    anyhow::ensure!(
        !pairs.is_empty(),
        "no user–profile pairs: create test data first (POST {url}/main/testdata)"
    );
    Ok(pairs)
}

/// Raises the soft limit on open files to the hard one, and says what it is: a process of
/// thousands of streams cannot live within the usual 1,024.
fn raise_open_files() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            eprintln!("warning: the limit on open files could not be raised: {error}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1_024, |(soft, _)| soft)
        }
    }
}
