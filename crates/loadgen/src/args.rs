//! The command line, and the plan every process of a run derives from it alike.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kubescaler_core::duration;

use crate::source::{self, Sources};

/// Open files a process keeps for itself beside its streams' sockets: the runtime, stdio,
/// the pipes to its workers, a file of pairs.
const RESERVED_FILES: u64 = 512;

#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about = "Open many kubescaler streams and watch what they get")]
pub struct Args {
    /// The suite's public URL, e.g. http://127.0.0.1:8080 or http://<minikube ip>; several,
    /// comma-separated, share the streams (stream i goes to URL i mod their number). Pairs
    /// come from the first.
    #[arg(long, value_parser = parse_urls)]
    pub url: Urls,
    /// Streams to open.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// How long to hold them.
    #[arg(long, value_parser = duration::parse, default_value = "60s")]
    pub duration: Duration,
    /// Streams opened per second, over all processes.
    #[arg(long, default_value_t = 10.0)]
    pub ramp: f64,
    /// Read at most this many bytes per second per stream (to exercise dropping).
    #[arg(long)]
    pub read_rate: Option<u64>,
    /// File of `user profile` lines instead of the pairs /main/profiles lists.
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Processes that hold the streams: a number, or `auto` for as many as the open-files
    /// limit needs (one socket per stream, the limit less a reserve of 512 per process).
    /// Worker k of n holds streams k, k+n, k+2n…; the summary is one.
    #[arg(long, value_parser = parse_processes, default_value = "auto")]
    pub processes: Processes,
    /// Local addresses the connections come from: a comma list and/or ranges, e.g.
    /// `127.0.0.1-127.0.0.8,10.0.0.5`; stream i comes from address i mod their number.
    /// `none` lets the system choose. Default: when every URL is on loopback (127.0.0.0/8 or
    /// localhost), 127.0.0.1, 127.0.0.2, … one per 20,000 streams; else the system chooses.
    #[arg(long, value_parser = source::parse)]
    pub source_addresses: Option<Sources>,
    /// Close streams at about this many per second overall while the load is held, each
    /// replaced by a stream of a pair not in use (the pair just closed comes back last; a
    /// stream refused with 409 moves on to the next pair). Needs more pairs than streams.
    #[arg(long, value_parser = parse_rate)]
    pub churn: Option<f64>,
    /// This process is worker K of a run: it reads its pairs on stdin and reports on stdout.
    #[arg(long, hide = true, requires = "workers")]
    pub worker: Option<usize>,
    /// The number of workers of the run this worker belongs to.
    #[arg(long, hide = true, requires = "worker")]
    pub workers: Option<usize>,
}

/// The base URLs of `--url`, without their trailing `/`.
#[derive(Debug, Clone)]
pub struct Urls {
    pub bases: Vec<String>,
    /// Whether every one is on loopback, which makes source addresses free to choose.
    pub all_loopback: bool,
}

fn parse_urls(text: &str) -> Result<Urls, String> {
    let mut bases = Vec::new();
    let mut all_loopback = true;
    for item in text.split(',').map(str::trim) {
        let url = reqwest::Url::parse(item)
            .map_err(|error| format!("`{item}` is not a URL such as http://127.0.0.1:8080 ({error})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("`{item}` is not an http:// URL with a host"));
        }
        all_loopback &= source::is_loopback(&url);
        bases.push(item.trim_end_matches('/').to_owned());
    }
    Ok(Urls { bases, all_loopback })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processes {
    Auto,
    Count(usize),
}

fn parse_processes(text: &str) -> Result<Processes, String> {
    if text == "auto" {
        return Ok(Processes::Auto);
    }
    match text.parse() {
        Ok(0) | Err(_) => Err(format!("`{text}` is neither `auto` nor a number of processes (1 or more)")),
        Ok(n) => Ok(Processes::Count(n)),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("`{text}` is not a rate (streams per second, more than 0)")),
    }
}

/// What every process of a run agrees on: which stream goes where, from where, when.
#[derive(Debug, Clone)]
pub struct Plan {
    pub urls: Vec<String>,
    pub streams: usize,
    pub duration: Duration,
    pub ramp: f64,
    pub read_rate: Option<u64>,
    pub churn: Option<f64>,
    pub sources: Vec<IpAddr>,
}

impl Plan {
    pub fn new(args: &Args) -> anyhow::Result<Plan> {
        let sources = source::choose(args.source_addresses.as_ref(), args.url.all_loopback, args.streams);
        source::check_local(&sources)?;
        Ok(Plan {
            urls: args.url.bases.clone(),
            streams: args.streams,
            duration: args.duration,
            ramp: args.ramp.max(0.001),
            read_rate: args.read_rate,
            churn: args.churn,
            sources,
        })
    }

    /// When stream `i` opens, from the start of the run: streams open in order at `ramp` per
    /// second overall, so a worker of n opens its own at ramp/n.
    pub fn delay(&self, i: usize) -> Duration {
        Duration::from_secs_f64(i as f64 / self.ramp)
    }

    /// How long the run lasts unless stopped: the ramp, then `duration`.
    pub fn length(&self) -> Duration {
        self.delay(self.streams) + self.duration
    }

    pub fn url(&self, i: usize) -> &str {
        &self.urls[i % self.urls.len()]
    }

    /// The URLs as the summary names them: as given, comma-separated.
    pub fn url_text(&self) -> String {
        self.urls.join(",")
    }
}

/// Streams a process can hold under the open-files `limit`.
pub fn per_process(limit: u64) -> usize {
    let usable = limit.saturating_sub(RESERVED_FILES).max(limit / 2).max(1);
    usize::try_from(usable).unwrap_or(usize::MAX)
}

/// How many processes hold `streams`: as asked, or as many as `limit` needs; never more than
/// there are streams.
pub fn processes(asked: Processes, streams: usize, limit: u64) -> usize {
    let wanted = match asked {
        Processes::Count(n) => n,
        Processes::Auto => streams.div_ceil(per_process(limit)),
    };
    wanted.min(streams).max(1)
}

/// Says when a process will hold more sockets than it may open, or a source address more
/// connections than it has ports for: the run goes on, with errors to expect.
pub fn warn_of_limits(plan: &Plan, processes: usize, limit: u64) {
    let held = plan.streams.div_ceil(processes);
    if held > per_process(limit) {
        eprintln!(
            "warning: {held} streams per process need as many open files, and a process may open {limit}: \
             expect errors, or leave --processes to `auto`"
        );
    }
    if !plan.sources.is_empty() {
        let per_address = plan.streams.div_ceil(plan.sources.len());
        if per_address > source::PER_ADDRESS {
            eprintln!(
                "warning: {per_address} connections per source address, more than the {} one address holds \
                 well: expect errors, or give more --source-addresses",
                source::PER_ADDRESS
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn a_hundred_thousand_streams_take_six_processes_at_twenty_thousand_files() {
        assert_eq!(per_process(20_000), 19_488);
        assert_eq!(processes(Processes::Auto, 100_000, 20_000), 6);
        assert_eq!(processes(Processes::Auto, 19_488, 20_000), 1);
        assert_eq!(processes(Processes::Auto, 19_489, 20_000), 2);
        assert_eq!(processes(Processes::Auto, 10, 1_024), 1);
        assert_eq!(processes(Processes::Count(4), 2, 20_000), 2, "no worker without a stream");
        assert_eq!(processes(Processes::Auto, 0, 20_000), 1);
    }

    #[test]
    fn urls() {
        let urls = parse_urls("http://127.0.0.1:18001/,http://127.0.0.1:18002").unwrap();
        assert_eq!(urls.bases, ["http://127.0.0.1:18001", "http://127.0.0.1:18002"]);
        assert!(urls.all_loopback);
        assert!(!parse_urls("http://127.0.0.1:1,http://10.1.1.1").unwrap().all_loopback);
        assert!(parse_urls("http://127.0.0.1:1,").unwrap_err().contains("not a URL"));
        assert!(parse_urls("127.0.0.1:8080").unwrap_err().contains("http://"));
        assert_eq!(parse_processes("auto"), Ok(Processes::Auto));
        assert_eq!(parse_processes("3"), Ok(Processes::Count(3)));
        assert!(parse_processes("0").is_err());
        assert!(parse_rate("0").is_err());
        assert_eq!(parse_rate("2.5"), Ok(2.5));
    }
}
