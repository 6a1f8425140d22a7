//! `loadgen` against the all-in-one process: it opens what it can, counts what is refused, and
//! its summary says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kubescaler::Options;
use kubescaler_shared::config::LogFormat;
use kubescaler_testkit::Http;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_streams_than_pairs_meet_the_lock() {
    let dir = std::env::temp_dir().join(format!("kubescaler-loadgen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = Options {
        port: 0,
        listen_address: "127.0.0.1".parse().unwrap(),
        data_dir: dir.clone(),
        cassandra_nodes: None,
        redis_urls: None,
        demo: false,
        log_format: LogFormat::Pretty,
    };
    let mut config = options.into_config().unwrap();
    config.stream.stream_message_bytes = 1_000;
    let shutdown = CancellationToken::new();
    let suite = kubescaler::start(config, shutdown.clone()).await.unwrap();
    let http = Http::new(std::net::SocketAddr::from(([127, 0, 0, 1], suite.port())));
    let url = suite.url().to_owned();
    tokio::spawn(suite.run_until_stopped());
    http.wait_ready(Duration::from_secs(10)).await;
    let (status, _) = http.post("/main/testdata?profiles=3&users_per_profile=2", json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    while http.get("/main/testdata").await.1["state"] == "running" {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 3 profiles of 2 users, the first one's users shared into the other two: 10 pairs.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", &url, "--streams", "12", "--duration", "2s", "--ramp", "50", "--json"])
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

    let text = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", &url, "--streams", "1", "--duration", "1s"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("that is the lock working"), "{stdout}");
    shutdown.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}
