//! stream as a real process: what SIGTERM (a scale-down) and SIGKILL (a crash) do to its pairs.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::process::{Child, Command};

use crate::helpers::*;

async fn stream_process(base: &Running, redis: &str) -> (Child, Http) {
    let (child, http, _) = stream_process_with(base, redis, &[("REBALANCE", "false")]).await;
    (child, http)
}

/// The stream binary as a child process with the tests' settings and `env` on top; ready.
pub async fn stream_process_with(
    base: &Running,
    redis: &str,
    env: &[(&str, &str)],
) -> (Child, Http, SocketAddr) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_stream"))
        .env("PORT", port.to_string())
        .env("LISTEN_ADDRESS", "127.0.0.1")
        .env("BASE_URL", &base.base_url)
        .env("REDIS_URLS", redis)
        .env("LOCK_TTL", format!("{}ms", TTL.as_millis()))
        .env("LOCK_REFRESH", format!("{}ms", REFRESH.as_millis()))
        .env("STREAM_INTERVAL", "50ms")
        .env("STREAM_MESSAGE_BYTES", "2000")
        .env("SHUTDOWN_GRACE", "5s")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let http = Http::new(addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !http.client.get(http.url("/readyz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
        assert!(Instant::now() < deadline, "stream process not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, http, addr)
}

pub fn signal(child: &Child, name: &str) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill").args([name, &pid]).status().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_moves_twenty_pairs_to_another_instance_within_a_second() {
    let redis = require_redis().await;
    let base = spawn_base().await;
    let (mut child, leaving) = stream_process(&base, &redis).await;
    let staying = spawn_stream(stream_config(&base, vec![redis.clone()])).await;
    let mut pairs = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..20 {
        let (u, p) = pair(&base).await;
        let mut sse = Sse::open(&leaving, &u, &p).await.unwrap();
        sse.next(Duration::from_secs(2)).await.unwrap();
        streams.push(sse);
        pairs.push((u, p));
    }

    signal(&child, "-TERM");
    let signalled = Instant::now();
    for sse in &mut streams {
        let end = sse.next_control(Duration::from_secs(2)).await.expect("a shutdown event");
        assert_eq!(end.event, "shutdown");
    }
    let moved = futures::future::join_all(pairs.iter().map(|(u, p)| {
        let staying = staying.http.clone();
        async move {
            loop {
                if Sse::open(&staying, u, p).await.is_ok() {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }));
    let moved =
        tokio::time::timeout(Duration::from_secs(3), moved).await.expect("every pair accepted elsewhere");
    let slowest = moved.iter().map(|t| t.duration_since(signalled)).max().unwrap();
    assert!(slowest < Duration::from_secs(1), "the last pair moved after {slowest:?}");
    let status = tokio::time::timeout(Duration::from_secs(6), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "clean exit within SHUTDOWN_GRACE: {status:?}");
}

#[tokio::test]
async fn a_crashed_instance_keeps_its_pairs_until_the_ttl_passes() {
    let redis = require_redis().await;
    let base = spawn_base().await;
    let (mut child, crashing) = stream_process(&base, &redis).await;
    let other = spawn_stream(stream_config(&base, vec![redis.clone()])).await;
    let (u, p) = pair(&base).await;
    let mut sse = Sse::open(&crashing, &u, &p).await.unwrap();
    sse.next(Duration::from_secs(2)).await.unwrap();
    tokio::time::sleep(REFRESH).await;

    signal(&child, "-KILL");
    let killed = Instant::now();
    child.wait().await.unwrap();
    let (status, _, _) = Sse::open(&other, &u, &p).await.err().expect("still locked right after the crash");
    assert_eq!(status, StatusCode::CONFLICT);
    loop {
        if Sse::open(&other, &u, &p).await.is_ok() {
            break;
        }
        assert!(killed.elapsed() < TTL + Duration::from_secs(2), "not accepted after the TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        killed.elapsed() >= TTL - REFRESH - Duration::from_millis(200),
        "accepted before the TTL: {:?}",
        killed.elapsed()
    );
}
