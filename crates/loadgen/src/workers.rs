//! A run over several processes: the parent starts loadgen again as its workers, hands each
//! the pairs, reads their counters and prints the one live line and the one summary.
//!
//! Between parent and worker K of N (started as `loadgen <the same arguments> --worker K
//! --workers N`):
//! - stdin, parent to worker: `pairs COUNT`, then COUNT `user profile` lines; then nothing,
//!   but it stays open for as long as the worker should run. Its end (the parent closed it,
//!   or the parent is gone, whatever the way it went) stops the worker, which is how no
//!   worker outlives its parent.
//! - stdout, worker to parent: one JSON object per line, `{"type":"status",…}` every second
//!   (a [`Status`]) and `{"type":"summary",…}` once, when stopped (a [`Report`]).
//! - stderr: the worker's own, for its errors.

use std::ffi::OsString;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use kubescaler_core::sync::lock;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::args::Plan;
use crate::counters::{Report, Status};
use crate::pairs::{self, Pair};
use crate::run::{self, Share, Ticker};
use crate::summary::{self, Live};

/// Time a worker has to report once told to stop, before it is killed: stopping is
/// dropping its streams, which takes well under a second even for 20,000.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A line a worker writes on its stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line {
    Status(Status),
    Summary(Report),
}

/// Runs the streams `share` holds until the parent closes stdin or a signal comes, with a
/// status line every second and the report at the end.
pub async fn work(plan: &Plan, share: Share) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let (pairs_sent, pairs_received) = tokio::sync::oneshot::channel();
    let parent_gone = stop.clone();
    // A thread of its own, not the runtime's: the read that waits for stdin's end cannot be
    // cancelled, and the runtime would wait for it when the worker returns.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let _ = pairs_sent.send(pairs::decode(&mut stdin));
        let _ = std::io::copy(&mut stdin, &mut std::io::sink());
        parent_gone.cancel();
    });
    let pairs = pairs_received.await.context("reading the pairs from the parent")??;
    tokio::spawn(run::stop_on_signal(stop.clone()));
    let running = run::start(plan, &pairs, share)?;
    let ticker = Ticker::new(None, stop);
    let mut out = tokio::io::stdout();
    while ticker.tick().await {
        if send(&mut out, &Line::Status(running.counters.status())).await.is_err() {
            // No one reads: the parent is gone.
            break;
        }
    }
    let report = running.finish().await;
    let _ = send(&mut out, &Line::Summary(report)).await;
    Ok(())
}

async fn send(out: &mut tokio::io::Stdout, line: &Line) -> anyhow::Result<()> {
    let mut text = serde_json::to_string(line)?;
    text.push('\n');
    out.write_all(text.as_bytes()).await?;
    out.flush().await?;
    Ok(())
}

/// How a worker ended.
#[derive(Debug)]
struct Ended {
    report: Option<Report>,
    /// Whether it died: no summary, or an exit that is not a success.
    died: bool,
}

/// Runs `plan` in `processes` workers and prints what they held together. It fails when a
/// worker died, after the others have been stopped and summed up.
pub async fn lead(plan: &Plan, pairs: &[Pair], processes: usize, json: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding loadgen's own executable to start its workers")?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let stop = CancellationToken::new();
    tokio::spawn(run::stop_on_signal(stop.clone()));
    let feed: Arc<str> = pairs::encode(pairs).into();
    let latest = Arc::new(Mutex::new(vec![Status::default(); processes]));
    let started = Instant::now();
    let mut drivers = Vec::new();
    let mut not_started = None;
    for k in 0..processes {
        let mut command = Command::new(&exe);
        command
            .args(&args)
            .args(["--worker", &k.to_string(), "--workers", &processes.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Should the parent fail on its way out, its workers go with it.
            .kill_on_drop(true);
        // Out of the terminal's process group, so that a Ctrl-C reaches the parent only, which
        // stops the workers itself and tells a stopped worker from a dead one.
        #[cfg(unix)]
        command.process_group(0);
        match command.spawn() {
            Ok(child) => {
                drivers.push(tokio::spawn(drive(k, child, feed.clone(), stop.clone(), latest.clone())))
            }
            Err(error) => {
                not_started = Some(
                    anyhow::Error::new(error).context(format!("starting worker {k} ({})", exe.display())),
                );
                stop.cancel();
                break;
            }
        }
    }
    let mut live = Live::new(started, plan, json);
    let ticker = Ticker::new(Some(started + plan.length()), stop.clone());
    while ticker.tick().await {
        let mut total = Status::default();
        for status in lock(&latest).iter() {
            total.merge(status);
        }
        live.tick(&total);
    }
    stop.cancel();
    let mut report = Report::default();
    let mut dead = Vec::new();
    for (k, driver) in drivers.into_iter().enumerate() {
        match driver.await {
            Ok(ended) => {
                if ended.died {
                    dead.push(k);
                }
                if let Some(part) = ended.report {
                    report.merge(part);
                }
            }
            Err(_) => dead.push(k),
        }
    }
    let run = summary::Run {
        plan,
        pairs: pairs.len(),
        processes,
        seconds: started.elapsed().as_secs_f64(),
        peak_open: live.peak_open,
    };
    summary::print(&run, &report, json);
    if let Some(error) = not_started {
        return Err(error);
    }
    anyhow::ensure!(
        dead.is_empty(),
        "{} of {processes} workers died (worker {}): the summary counts the others only",
        dead.len(),
        dead.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// Feeds worker `k` its pairs, keeps its latest status in `latest`, and stops it when `stop`
/// is cancelled. A worker that ends first ends the run for all: the load is no longer what
/// was asked.
async fn drive(
    k: usize,
    mut child: Child,
    feed: Arc<str>,
    stop: CancellationToken,
    latest: Arc<Mutex<Vec<Status>>>,
) -> Ended {
    let pid = child.id().unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        let stop = stop.clone();
        tokio::spawn(async move {
            // A worker that cannot take its pairs has died, which its stdout tells.
            if stdin.write_all(feed.as_bytes()).await.is_ok() && stdin.flush().await.is_ok() {
                stop.cancelled().await;
            }
            drop(stdin);
        });
    }
    let mut report = None;
    if let Some(stdout) = child.stdout.take() {
        let mut lines = BufReader::new(stdout).lines();
        let mut kill_at: Option<Instant> = None;
        loop {
            let grace = kill_at.map_or(tokio::time::Instant::now(), Into::into);
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => match serde_json::from_str::<Line>(&line) {
                        Ok(Line::Status(status)) => {
                            if let Some(slot) = lock(&latest).get_mut(k) {
                                *slot = status;
                            }
                        }
                        Ok(Line::Summary(part)) => report = Some(part),
                        Err(error) => eprintln!("worker {k} (pid {pid}) wrote a line that is not a report ({error}): {line}"),
                    },
                    Ok(None) | Err(_) => break,
                },
                () = stop.cancelled(), if kill_at.is_none() => kill_at = Some(Instant::now() + STOP_GRACE),
                () = tokio::time::sleep_until(grace), if kill_at.is_some() => {
                    eprintln!("worker {k} (pid {pid}) did not stop within {STOP_GRACE:?}: killing it");
                    let _ = child.start_kill();
                    kill_at = Some(Instant::now() + STOP_GRACE);
                }
            }
        }
    }
    let status = child.wait().await;
    let ended_early = !stop.is_cancelled();
    let died = report.is_none() || !status.as_ref().is_ok_and(ExitStatus::success);
    let how = match &status {
        Ok(status) => status.to_string(),
        Err(error) => format!("its status unknown: {error}"),
    };
    if died {
        eprintln!("worker {k} (pid {pid}) died ({how}){}", if ended_early { "; ending the run" } else { "" });
    } else if ended_early {
        eprintln!("worker {k} (pid {pid}) stopped before the run's end ({how}); ending the run");
    }
    stop.cancel();
    Ended { report, died }
}
