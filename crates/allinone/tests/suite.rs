//! The all-in-one process as a new user meets it: embedded backends only — no Redis,
//! Cassandra or Java involved — one front door, the whole API, live streams, locks with TTLs,
//! data that survives a restart, and a clean exit on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kubescaler::{Config, Options};
use kubescaler_server::config::LogFormat;
use kubescaler_testkit::{Http, error_code, free_port};
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn data_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kubescaler-aio-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(dir: &Path) -> Config {
    let options = Options {
        port: 0,
        listen_address: "127.0.0.1".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        cassandra_nodes: None,
        redis_urls: None,
        demo: false,
        log_format: LogFormat::Pretty,
    };
    let mut config = options.into_config().unwrap();
    config.stream.lock_ttl = Duration::from_secs(2);
    config.stream.lock_refresh = Some(Duration::from_millis(500));
    config.stream.stream_interval = Duration::from_millis(50);
    config.stream.stream_message_bytes = 1_000;
    config
}

struct Running {
    http: Http,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(config: Config) -> Running {
    kubescaler_server::telemetry::init_for_tests();
    let shutdown = CancellationToken::new();
    let suite = kubescaler::start(config, shutdown.clone()).await.unwrap();
    let http = Http::new(std::net::SocketAddr::from(([127, 0, 0, 1], suite.port())));
    let task = tokio::spawn(suite.run_until_stopped());
    http.wait_ready(Duration::from_secs(10)).await;
    Running { http, shutdown, task }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap().unwrap();
    }
}

/// Opens a stream through the front door; `Ok(first event text)` or `Err((status, body))`.
async fn open_stream(
    http: &Http,
    user: &str,
    profile: &str,
) -> Result<(reqwest::Response, String), (StatusCode, reqwest::header::HeaderMap, serde_json::Value)> {
    let response = http.client.get(http.url(&format!("/stream/{user}/{profile}"))).send().await.unwrap();
    if response.status() != StatusCode::OK {
        let (status, headers) = (response.status(), response.headers().clone());
        return Err((status, headers, response.json().await.unwrap()));
    }
    // Read until the first message, then hand the open response back (it keeps the stream).
    let mut text = String::new();
    let mut response = response;
    while !text.contains("\ndata: ") {
        let chunk =
            tokio::time::timeout(Duration::from_secs(3), response.chunk()).await.unwrap().unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    Ok((response, text))
}

async fn wait_generation(http: &Http) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, progress) = http.get("/main/testdata").await;
        if progress["state"] != "running" {
            assert_eq!(progress["state"], "done", "{progress}");
            return;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_whole_suite_behind_one_door() {
    let dir = data_dir("tour");
    let suite = start(config(&dir)).await;
    let http = &suite.http;

    assert_eq!(http.get("/main/users").await, (StatusCode::OK, json!([])));
    let (status, progress) =
        http.post("/main/testdata?profiles=4&users_per_profile=3&seed=7", json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{progress}");
    wait_generation(http).await;
    let (_, users) = http.get("/main/users").await;
    assert_eq!(users.as_array().unwrap().len(), 12);
    let (_, suggested) = http.get("/main/suggested").await;
    let user = suggested[0].as_str().unwrap().to_owned();
    let (_, profiles) = http.get("/main/profiles").await;
    let mine: Vec<String> = profiles
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["users"].as_array().unwrap().iter().any(|u| u == user.as_str()))
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(mine.len(), 4, "a shared user is in every profile");

    assert_eq!(http.get(&format!("/main/login/{user}")).await.1, json!([]));
    let page = http.client.get(http.url(&format!("/index/{user}/{}", mine[0]))).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "the test agent page");
    let redirect = http.client.get(http.url(&format!("/main/{user}/{}", mine[0]))).send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);

    let (_stream, first) = open_stream(http, &user, &mine[0]).await.unwrap();
    assert!(first.contains("\"seq\":"), "{first}");
    assert_eq!(
        http.get(&format!("/main/login/{user}")).await.1,
        json!([mine[0]]),
        "launched while streaming"
    );

    let (status, headers, body) = open_stream(http, &user, &mine[0]).await.err().unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "locked");
    assert!(headers.contains_key("retry-after"));
    let stranger = not_in(&users, &profiles, &mine[1]);
    let (status, _, _) = open_stream(http, &stranger, &mine[1]).await.err().unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    suite.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A user that is not in `profile`.
fn not_in(users: &serde_json::Value, profiles: &serde_json::Value, profile: &str) -> String {
    let members: Vec<&serde_json::Value> =
        profiles.as_array().unwrap().iter().find(|p| p["id"] == profile).unwrap()["users"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
    users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["id"])
        .find(|id| !members.contains(id))
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_closed_stream_keeps_its_pair_until_the_ttl() {
    let dir = data_dir("ttl");
    let suite = start(config(&dir)).await;
    let http = &suite.http;
    http.post("/main/testdata?profiles=2&users_per_profile=2", json!(null)).await;
    wait_generation(http).await;
    let (_, profiles) = http.get("/main/profiles").await;
    let profile = &profiles[0];
    let (u, p) = (profile["users"][0].as_str().unwrap(), profile["id"].as_str().unwrap());

    let (stream, _) = open_stream(http, u, p).await.unwrap();
    drop(stream);
    let closed = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(open_stream(http, u, p).await.err().unwrap().0, StatusCode::CONFLICT, "refused right after");
    loop {
        match open_stream(http, u, p).await {
            Ok(_) => break,
            Err((StatusCode::CONFLICT, _, _)) => {
                assert!(closed.elapsed() < Duration::from_secs(4), "still locked long after the 2 s TTL");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(
        closed.elapsed() >= Duration::from_millis(1200),
        "accepted before the TTL: {:?}",
        closed.elapsed()
    );
    suite.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// base announces in the process itself: a stream whose pair is dropped with the test data
/// ends with `unbound` at once, without Redis.
#[tokio::test]
async fn dropped_data_ends_its_streams_at_once() {
    let dir = data_dir("unbound");
    let mut config = config(&dir);
    // Far beyond the test: only the announcement can end the stream in time.
    config.stream.binding_sweep = Duration::from_secs(600);
    let suite = start(config).await;
    let http = &suite.http;
    http.post("/main/testdata?profiles=2&users_per_profile=2", json!(null)).await;
    wait_generation(http).await;
    let (_, profiles) = http.get("/main/profiles").await;
    let (u, p) = (profiles[0]["users"][0].as_str().unwrap(), profiles[0]["id"].as_str().unwrap());
    let (mut stream, _) = open_stream(http, u, p).await.unwrap();

    let dropped = Instant::now();
    assert_eq!(http.delete("/main/testdata").await.0, StatusCode::NO_CONTENT);
    let mut text = String::new();
    while !text.contains("event: unbound\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(1), stream.chunk()).await;
        let chunk = chunk.expect("unbound within a second").unwrap().expect("ended by an event");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(dropped.elapsed() < Duration::from_secs(1), "{:?}", dropped.elapsed());
    suite.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = data_dir("restart");
    let suite = start(config(&dir)).await;
    suite.http.post("/main/testdata?profiles=3&users_per_profile=2", json!(null)).await;
    wait_generation(&suite.http).await;
    let (_, before) = suite.http.get("/main/profiles").await;
    suite.stop().await;

    let again = start(config(&dir)).await;
    assert_eq!(again.http.get("/main/profiles").await.1, before);
    again.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_binary_starts_fast_and_exits_cleanly_on_sigterm() {
    let dir = data_dir("process");
    let port = free_port();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubescaler"))
        .env("PORT", port.to_string())
        .env("DATA_DIR", &dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = Http::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    while !http.client.get(http.url("/readyz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
        assert!(started.elapsed() < Duration::from_secs(10), "not ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut out = child.stdout.take().unwrap();
    let mut banner = vec![0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut out, &mut banner).await.unwrap();
    assert!(
        String::from_utf8_lossy(&banner[..n]).contains(&format!("http://127.0.0.1:{port}")),
        "prints its URL"
    );

    let (_, body) = http.get("/main/users").await;
    assert_eq!(body, json!([]));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binary on `port` and `dir` with `args`, its output piped.
fn spawn_binary(port: u16, dir: &Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kubescaler"))
        .args(["--port", &port.to_string(), "--data-dir"])
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("CASSANDRA_NODES")
        .env_remove("REDIS_URLS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until a process started a moment ago answers `/readyz` with 200.
async fn wait_process_ready(http: &Http) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http.client.get(http.url("/readyz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn terminate(mut child: tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "{exit:?}");
}

async fn text(http: &Http, path: &str) -> (StatusCode, String) {
    let response = http.client.get(http.url(path)).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn help_lists_the_services_settings() {
    let output =
        tokio::process::Command::new(env!("CARGO_BIN_EXE_kubescaler")).arg("--help").output().await.unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--lock-ttl",
        "--redis-urls",
        "--cassandra-nodes",
        "--admin-token",
        "--stream-interval",
        "--testdata-concurrency",
        "--hostname",
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
}

/// `--lock-ttl` on the command line is the TTL the streams get: a second stream of a pair is
/// told to come back within 3 s, not within the default minute. A short TTL alone is enough:
/// the refresh period follows it.
#[tokio::test]
async fn service_settings_given_as_flags_take_effect() {
    let dir = data_dir("flags");
    let port = free_port();
    let child = spawn_binary(port, &dir, &["--lock-ttl", "3s", "--hostname", "box-7"]);
    let http = Http::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    wait_process_ready(&http).await;
    assert_eq!(text(&http, "/main/").await, (StatusCode::OK, "box-7".to_owned()));

    http.post("/main/testdata?profiles=2&users_per_profile=2", json!(null)).await;
    wait_generation(&http).await;
    let (_, profiles) = http.get("/main/profiles").await;
    let (u, p) = (profiles[0]["users"][0].as_str().unwrap(), profiles[0]["id"].as_str().unwrap());
    let (stream, first) = open_stream(&http, u, p).await.unwrap();
    assert!(first.contains("\"host\":\"box-7\""), "{first}");
    let (status, _, body) = open_stream(&http, u, p).await.err().unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let retry = body["retry_after_ms"].as_u64().unwrap();
    assert!(retry <= 3_000, "retry after {retry} ms with a 3 s TTL");
    drop(stream);
    terminate(child).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--redis-urls` is not an on/off switch: the suite uses the Redis given, and says so when
/// it does not answer.
#[tokio::test]
async fn given_redis_urls_are_the_ones_used() {
    let dir = data_dir("redis-urls");
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let config = Config::try_parse_from([
        "kubescaler",
        "--port",
        "0",
        "--data-dir",
        dir.to_str().unwrap(),
        "--redis-urls",
        &dead,
        "--redis-timeout",
        "200ms",
    ])
    .unwrap();
    let shutdown = CancellationToken::new();
    let suite = kubescaler::start(config, shutdown.clone()).await.unwrap();
    let http = Http::new(std::net::SocketAddr::from(([127, 0, 0, 1], suite.port())));
    let task = tokio::spawn(suite.run_until_stopped());
    for path in ["/readyz", "/main/readyz"] {
        let (status, body) = http.get(path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert_eq!(body["failing"], json!(["redis"]), "{path}: {body}");
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// main is mounted once under `/main`: its root answers the host name, its API is at
/// `/main/x` and nowhere deeper, and a path it does not serve is a JSON 404 naming that path.
#[tokio::test]
async fn main_is_mounted_once_under_main() {
    let dir = data_dir("routes");
    let mut config = config(&dir);
    config.main.hostname = "main-host".into();
    let suite = start(config).await;
    let http = &suite.http;
    for path in ["/main", "/main/"] {
        assert_eq!(text(http, path).await, (StatusCode::OK, "main-host".to_owned()), "{path}");
    }
    let (status, usage) = text(http, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(usage.contains("<html") || usage.contains("<!doctype"), "stream's usage page: {usage}");
    assert_eq!(http.get("/main/users").await.0, StatusCode::OK);
    assert_eq!(http.get("/main/readyz").await.0, StatusCode::OK);
    for path in [
        "/main/main/users",
        "/main/actuator/health",
        "/main/users/x",
        "/main/a/b/c",
        "/nowhere",
        "/main/nowhere",
    ] {
        let (status, body) = http.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(error_code(&body), "no_route", "{path}");
        assert_eq!(body["message"], format!("no route for GET {path}"));
    }
    suite.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A new user's first minute: with `--demo`, a few lines, the last of them the link to the
/// test agent; no line per request (the demo's own, main's calls to base).
#[tokio::test]
async fn the_demo_ends_its_output_with_the_agent_link() {
    let dir = data_dir("demo");
    let port = free_port();
    let mut child = spawn_binary(port, &dir, &["--demo"]);
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    for pipe in [Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>, Box::new(stderr)] {
        let tx = lines_tx.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(pipe));
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    let link = format!("http://127.0.0.1:{port}/index/");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l: &String| l.contains(&link)) {
        let line = tokio::time::timeout_at(deadline.into(), lines.recv()).await;
        seen.push(
            line.unwrap_or_else(|_| panic!("no agent link within 30 s:\n{}", seen.join("\n"))).unwrap(),
        );
    }
    // Whatever comes in the next second would be under the link.
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(1), lines.recv()).await {
        seen.push(line);
    }
    let output = seen.join("\n");
    let last = seen.iter().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(last.contains(&link), "the link is not the last line:\n{output}");
    assert!(!output.contains("finished processing request"), "request lines:\n{output}");
    assert!(seen.len() <= 20, "{} lines:\n{output}", seen.len());

    let http = Http::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let agent = last.split_whitespace().find(|w| w.starts_with(&link)).unwrap();
    let page = http.client.get(agent).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "{agent}");
    terminate(child).await;
    let _ = std::fs::remove_dir_all(&dir);
}
