//! Starts base and main in-process on port 0: base on the real Cassandra, main on a real
//! Redis — the shared one from `scripts/services.sh up`, or a dedicated one for tests that
//! count its commands or stop it.

use std::time::Duration;

use kubescaler_base::cassandra::CassandraConfig;
use kubescaler_base_client::BaseClientConfig;
use kubescaler_redis::RedisArgs;
use kubescaler_server::config::defaults;
pub use kubescaler_testkit::{
    Forwarder, Http, RedisServer, Running, common_args, error_code, require_cassandra, require_redis,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Keyspace for tests that only touch their own random ids.
pub const SHARED_KEYSPACE: &str = "kubescaler_test_main";

/// base on `keyspace`, ready.
pub async fn spawn_base(keyspace: &str) -> Running {
    let nodes = require_cassandra().await;
    let mut config: kubescaler_base::Config = defaults().unwrap();
    config.port = 0;
    config.cassandra = CassandraConfig::new(nodes, keyspace).unwrap();
    config.redis =
        RedisArgs { urls: vec![kubescaler_testkit::shared_redis_url()], timeout: Duration::from_millis(500) };
    config.common = common_args();
    let shutdown = CancellationToken::new();
    let running = Running::start(kubescaler_base::build(config, shutdown.clone()).await.unwrap(), shutdown);
    running.wait_ready(Duration::from_secs(60)).await;
    running
}

pub fn main_config(base_url: &str, redis_urls: Vec<String>) -> kubescaler_main::Config {
    let mut config: kubescaler_main::Config = defaults().unwrap();
    config.port = 0;
    config.base = BaseClientConfig::new(base_url);
    config.redis = RedisArgs { urls: redis_urls, timeout: Duration::from_millis(500) };
    config.hostname = "main-test".into();
    config.common = common_args();
    config
}

/// main with `config`, not waiting for readiness.
pub async fn spawn_main(config: kubescaler_main::Config) -> Running {
    let shutdown = CancellationToken::new();
    Running::start(kubescaler_main::build(config, shutdown.clone()).await.unwrap(), shutdown)
}

/// base on `keyspace` and main in front of it on the shared Redis, both ready.
pub async fn spawn_suite(keyspace: &str) -> (Running, Running) {
    let redis = require_redis().await;
    let base = spawn_base(keyspace).await;
    let main = spawn_main(main_config(&base.http.base_url, vec![redis])).await;
    main.wait_ready(Duration::from_secs(30)).await;
    (base, main)
}

pub async fn create_user(base: &Http, name: &str) -> Value {
    let (status, body) = base.post("/users", json!({ "name": name })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

pub async fn create_profile(base: &Http, users: &[&Value]) -> Value {
    let ids: Vec<_> = users.iter().map(|u| u["id"].clone()).collect();
    let (status, body) = base.post("/profiles", json!({ "users": ids })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

pub fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}

/// Polls `GET /testdata` until the run ends; returns the final progress.
pub async fn wait_generation(main: &Http, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, progress) = main.get("/testdata").await;
        assert_eq!(status, StatusCode::OK);
        if progress["state"] != "running" {
            return progress;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "generation still running after {within:?}: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
