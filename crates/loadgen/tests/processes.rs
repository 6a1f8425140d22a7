//! `loadgen` at scale, in small: streams split between processes add up to what one process
//! would hold, go to their URL from their source address whatever the number of processes,
//! churn without meeting their own locks, and no worker outlives the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Suite;
use kubescaler_core::{ProfileId, UserId};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn loadgen(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen")).args(args).output().await.unwrap()
}

fn summary(output: &Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_hold_what_one_would() {
    let suite = Suite::start("processes", 6).await;
    let summary = summary(
        &loadgen(&[
            "--url",
            &suite.url,
            "--streams",
            "20",
            "--processes",
            "2",
            "--duration",
            "2s",
            "--ramp",
            "50",
            "--json",
        ])
        .await,
    );
    assert_eq!(summary["pairs"], 22, "{summary}");
    assert_eq!(summary["processes"], 2, "{summary}");
    assert_eq!(summary["streams_asked"], 20, "{summary}");
    assert_eq!(summary["streams_opened"], 20, "{summary}");
    assert_eq!(summary["open_at_end"], 20, "{summary}");
    assert_eq!(summary["peak_open"], 20, "{summary}");
    assert_eq!(summary["refused_locked_409"], 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(summary["churned"], 0, "{summary}");
    assert!(summary["messages"].as_u64().unwrap() > 100, "{summary}");
    assert!(summary["bytes"].as_u64().unwrap() > 100_000, "{summary}");
    assert!(summary["first_event_ms"]["p50"].as_f64().is_some(), "{summary}");
    assert_eq!(summary["hosts"].as_array().unwrap().len(), 1, "{summary}");
    assert_eq!(summary["source_addresses"], serde_json::json!(["127.0.0.1"]), "loopback: {summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_meet_the_lock_as_one_process_does() {
    let suite = Suite::start("processes-lock", 3).await;
    // 12 streams of 10 pairs: streams 10 and 11 take the pairs of streams 0 and 1, in
    // whichever process they are.
    let summary = summary(
        &loadgen(&[
            "--url",
            &suite.url,
            "--streams",
            "12",
            "--processes",
            "3",
            "--duration",
            "2s",
            "--ramp",
            "50",
            "--json",
        ])
        .await,
    );
    assert_eq!(summary["processes"], 3, "{summary}");
    assert_eq!(summary["streams_opened"], 10, "{summary}");
    assert_eq!(summary["refused_locked_409"], 2, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
}

/// A stand-in for stream instances: it answers every request with one message and holds the
/// connection, and records where each request came from and what it asked.
#[derive(Clone, Default)]
struct Listener {
    seen: Arc<Mutex<Vec<(IpAddr, String)>>>,
}

impl Listener {
    async fn start() -> (Listener, String) {
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", socket.local_addr().unwrap());
        let listener = Listener::default();
        let seen = listener.seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut connection, peer)) = socket.accept().await else { return };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match connection.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                    seen.lock().unwrap().push((peer.ip(), path));
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
                                  id: 1\ndata: {\"host\":\"listener\",\"seq\":1}\n\n";
                    if connection.write_all(answer.as_bytes()).await.is_ok() {
                        while matches!(connection.read(&mut buffer).await, Ok(n) if n > 0) {}
                    }
                });
            }
        });
        (listener, url)
    }

    /// Source address and pair of every request, the pair as `user/profile`.
    fn take(&self) -> Vec<(IpAddr, String)> {
        std::mem::take(&mut *self.seen.lock().unwrap())
            .into_iter()
            .map(|(ip, path)| (ip, path.trim_start_matches("/stream/").to_owned()))
            .collect()
    }
}

fn pairs_file(name: &str, count: usize) -> (PathBuf, Vec<String>) {
    let pairs: Vec<String> =
        (0..count).map(|_| format!("{} {}", UserId::new_random(), ProfileId::new_random())).collect();
    let file = std::env::temp_dir().join(format!("kubescaler-loadgen-{name}-{}.pairs", std::process::id()));
    std::fs::write(&file, pairs.join("\n")).unwrap();
    (file, pairs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_go_to_their_url_from_their_source_address() {
    let (first, first_url) = Listener::start().await;
    let (second, second_url) = Listener::start().await;
    let (file, pairs) = pairs_file("sources", 6);
    let urls = format!("{first_url},{second_url}");
    for processes in ["1", "2", "3"] {
        let summary = summary(
            &loadgen(&[
                "--url",
                &urls,
                "--pairs",
                file.to_str().unwrap(),
                "--streams",
                "6",
                "--source-addresses",
                "127.0.0.2-127.0.0.3,127.0.0.5",
                "--processes",
                processes,
                "--duration",
                "1s",
                "--ramp",
                "100",
                "--json",
            ])
            .await,
        );
        assert_eq!(summary["streams_opened"], 6, "{summary}");
        assert_eq!(summary["open_at_end"], 6, "{summary}");
        assert_eq!(summary["processes"].to_string(), processes, "{summary}");
        assert_eq!(summary["source_addresses"], serde_json::json!(["127.0.0.2", "127.0.0.3", "127.0.0.5"]));
        // Stream i: URL i mod 2, source address i mod 3, pair i.
        let sources: [IpAddr; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.5"].map(|ip| ip.parse().unwrap());
        let mut expected: [BTreeMap<String, IpAddr>; 2] = Default::default();
        for (i, pair) in pairs.iter().enumerate() {
            expected[i % 2].insert(pair.replace(' ', "/"), sources[i % 3]);
        }
        let seen = [first.take(), second.take()];
        assert_eq!(seen.each_ref().map(Vec::len), [3, 3], "one request per stream: {seen:?}");
        let got: [BTreeMap<String, IpAddr>; 2] =
            seen.map(|seen| seen.into_iter().map(|(ip, pair)| (pair, ip)).collect());
        assert_eq!(got, expected, "with {processes} processes");
    }
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_streams_come_from_127_0_0_1_unless_told() {
    let (listener, url) = Listener::start().await;
    let (file, _) = pairs_file("default-source", 2);
    let run = |sources: Option<&'static str>| {
        let (url, file) = (url.clone(), file.clone());
        async move {
            let mut args = vec!["--url", &url, "--pairs", file.to_str().unwrap(), "--streams", "2"];
            args.extend(["--duration", "1s", "--ramp", "100", "--json"]);
            if let Some(sources) = sources {
                args.extend(["--source-addresses", sources]);
            }
            summary(&loadgen(&args).await)
        }
    };
    let summary = run(None).await;
    assert_eq!(summary["source_addresses"], serde_json::json!(["127.0.0.1"]), "{summary}");
    assert!(listener.take().iter().all(|(ip, _)| ip.to_string() == "127.0.0.1"));
    let summary = run(Some("none")).await;
    assert_eq!(summary["source_addresses"], serde_json::json!([]), "{summary}");
    assert_eq!(summary["streams_opened"], 2, "{summary}");
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_source_addresses_are_refused_with_what_is_wrong() {
    for (given, says) in [
        ("127.0.0.300", "`127.0.0.300` is not an IP address"),
        ("127.0.0.9-127.0.0.2", "127.0.0.9-127.0.0.2 ends before it starts"),
        ("127.0.0.2,,127.0.0.3", "empty item"),
        ("127.0.0.1-::1", "mixes IPv4 and IPv6"),
        ("127.0.0.2,127.0.0.2", "127.0.0.2 is given twice"),
        // TEST-NET-1: an address, but not this machine's.
        ("192.0.2.1", "source address 192.0.2.1 cannot be used on this machine"),
    ] {
        let output = loadgen(&["--url", "http://127.0.0.1:1", "--source-addresses", given]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{given} was taken");
        assert!(stderr.contains(says), "{given}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_replaces_streams_by_pairs_not_in_use() {
    for processes in ["1", "2"] {
        // 58 pairs for 4 streams: ~20 replacements in 2 s never reach a pair let go in the
        // run, whose lock the service keeps for LOCK_TTL after the disconnect.
        let suite = Suite::start(&format!("churn-{processes}"), 15).await;
        let summary = summary(
            &loadgen(&[
                "--url",
                &suite.url,
                "--streams",
                "4",
                "--churn",
                "10",
                "--processes",
                processes,
                "--duration",
                "2s",
                "--ramp",
                "100",
                "--json",
            ])
            .await,
        );
        assert_eq!(summary["pairs"], 58, "{summary}");
        let churned = summary["churned"].as_u64().unwrap();
        assert!(churned > 3, "{summary}");
        assert_eq!(summary["refused_locked_409"], 0, "{summary}");
        assert_eq!(summary["errors"], 0, "{summary}");
        assert!(summary["streams_opened"].as_u64().unwrap() > 4, "{summary}");
        assert!(summary["open_at_end"].as_u64().unwrap() <= 4, "{summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_without_spare_pairs_is_refused() {
    let (file, _) = pairs_file("churn-short", 3);
    let file = file.to_str().unwrap();
    let output =
        loadgen(&["--url", "http://127.0.0.1:1", "--pairs", file, "--streams", "3", "--churn", "1"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("needs more pairs than streams: there are 3 pairs for 3 streams"), "{stderr}");
    let output = loadgen(&[
        "--url",
        "http://127.0.0.1:1",
        "--pairs",
        file,
        "--streams",
        "2",
        "--churn",
        "1",
        "--processes",
        "2",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("needs a spare pair for each"), "{stderr}");
    let _ = std::fs::remove_file(file);
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid …`: the name may hold spaces, the fields after it do not.
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        if after_name.split_whitespace().nth(1) == Some(&pid.to_string()) {
            found.push(child);
        }
    }
    found
}

/// Whether `pid` is gone (a zombie is: it runs no more).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

async fn all_gone(pids: &[u32], within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if pids.iter().all(|pid| gone(*pid)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill").args([name, &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

/// A parent run of 600 s holding 3 streams in 2 workers, and its workers once they hold them.
async fn long_run(suite: &Suite) -> (tokio::process::Child, Vec<u32>) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", &suite.url, "--streams", "3", "--processes", "2", "--duration", "600s"])
        .args(["--ramp", "50", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let workers = children(child.id().unwrap());
    assert_eq!(workers.len(), 2, "{workers:?}");
    (child, workers)
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signalled_parent_stops_its_workers_with_their_summaries() {
    let suite = Suite::start("processes-term", 2).await;
    let (child, workers) = long_run(&suite).await;
    signal(child.id().unwrap(), "-TERM");
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("loadgen ends soon after SIGTERM")
        .unwrap();
    let summary = summary(&output);
    assert_eq!(summary["processes"], 2, "{summary}");
    assert_eq!(summary["streams_opened"], 3, "{summary}");
    assert_eq!(summary["open_at_end"], 3, "{summary}");
    assert!(summary["messages"].as_u64().unwrap() > 10, "{summary}");
    assert!(all_gone(&workers, Duration::from_secs(5)).await, "workers left: {workers:?}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_fails_the_run_after_the_others_report() {
    let suite = Suite::start("processes-dead", 2).await;
    let (child, workers) = long_run(&suite).await;
    signal(workers[0], "-KILL");
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("loadgen ends soon after a worker dies")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("(pid {}) died", workers[0])), "{stderr}");
    assert!(stderr.contains("1 of 2 workers died"), "{stderr}");
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["processes"], 2, "{summary}");
    let opened = summary["streams_opened"].as_u64().unwrap();
    assert!(opened == 1 || opened == 2, "the other worker's streams only: {summary}");
    assert!(all_gone(&workers, Duration::from_secs(5)).await, "workers left: {workers:?}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_do_not_outlive_a_killed_parent() {
    let suite = Suite::start("processes-killed", 2).await;
    let (mut child, workers) = long_run(&suite).await;
    signal(child.id().unwrap(), "-KILL");
    child.wait().await.unwrap();
    assert!(all_gone(&workers, Duration::from_secs(5)).await, "workers left: {workers:?}");
}
