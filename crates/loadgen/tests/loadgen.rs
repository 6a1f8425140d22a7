//! `loadgen` against the all-in-one process: it opens what it can, counts what is refused, says
//! where its streams are, and a Ctrl-C still ends with the summary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Suite;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_streams_than_pairs_meet_the_lock() {
    let suite = Suite::start("lock", 3).await;
    // 3 profiles of 2 users, the first one's users shared into the other two: 10 pairs.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", &suite.url, "--streams", "12", "--duration", "2s", "--ramp", "50", "--json"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["pairs"], 10, "{summary}");
    assert_eq!(summary["streams_opened"], 10, "{summary}");
    assert_eq!(summary["refused_locked_409"], 2, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert!(summary["messages"].as_u64().unwrap() > 100, "{summary}");
    assert_eq!(summary["open_at_end"], 10, "every opened stream ran to the end: {summary}");
    assert_eq!(summary["hosts"].as_array().unwrap().len(), 1, "one instance served them all: {summary}");

    let text = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", &suite.url, "--streams", "1", "--duration", "1s"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("that is the lock working"), "{stdout}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_ends_at_once_with_its_summary() {
    let suite = Suite::start("interrupt", 2).await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", &suite.url, "--streams", "3", "--duration", "600s", "--ramp", "50", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let interrupted = std::time::Instant::now();
    let kill =
        std::process::Command::new("kill").args(["-INT", &child.id().unwrap().to_string()]).status().unwrap();
    assert!(kill.success());
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("loadgen ends soon after SIGINT, not after its 600 s")
        .unwrap();
    assert!(output.status.success());
    assert!(interrupted.elapsed() < Duration::from_secs(5), "ended {:?} after SIGINT", interrupted.elapsed());
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["streams_opened"], 3, "{summary}");
    assert_eq!(summary["open_at_end"], 3, "{summary}");
    assert!(summary["seconds"].as_f64().unwrap() < 10.0, "{summary}");
    assert!(summary["messages"].as_u64().unwrap() > 10, "{summary}");
}
