//! Starts base in-process on port 0 against the real Cassandra that `scripts/services.sh up`
//! runs, and talks to it over HTTP like any client.

use std::ops::Deref;
use std::time::Duration;

use kubescaler_base::Config;
use kubescaler_base::cassandra::CassandraConfig;
use kubescaler_redis::RedisArgs;
use kubescaler_server::config::defaults;
pub use kubescaler_testkit::{Forwarder, error_code, require_cassandra};
use kubescaler_testkit::{Running, common_args};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Keyspace shared by tests that only touch their own (random) ids.
pub const SHARED_KEYSPACE: &str = "kubescaler_test_api";

pub fn config(nodes: Vec<String>, keyspace: &str) -> Config {
    let mut config: Config = defaults().unwrap();
    config.port = 0;
    config.cassandra = CassandraConfig::new(nodes, keyspace).unwrap();
    config.redis =
        RedisArgs { urls: vec![kubescaler_testkit::shared_redis_url()], timeout: Duration::from_millis(500) };
    config.common = common_args();
    config
}

/// base running in-process. Starting, serving and stopping are testkit's [`Running`], as for
/// the other services; what is base's own is its configuration and the users and profiles
/// most tests begin with.
pub struct TestApp(Running);

impl Deref for TestApp {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.0
    }
}

impl TestApp {
    /// base on the shared test keyspace, ready.
    pub async fn spawn() -> Self {
        Self::spawn_in(SHARED_KEYSPACE).await
    }

    /// base on its own keyspace, for tests that drop whole tables.
    pub async fn spawn_in(keyspace: &str) -> Self {
        let nodes = require_cassandra().await;
        let app = Self::start(config(nodes, keyspace)).await;
        app.wait_ready(Duration::from_secs(60)).await;
        app
    }

    /// base with the given config, not waiting for readiness.
    pub async fn start(config: Config) -> Self {
        let shutdown = CancellationToken::new();
        let service = kubescaler_base::build(config, shutdown.clone()).await.unwrap();
        Self(Running::start(service, shutdown))
    }

    pub async fn create_user(&self, name: &str) -> Value {
        let (status, body) = self.post("/users", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn create_profile(&self, users: &[&Value]) -> Value {
        let ids: Vec<_> = users.iter().map(|u| u["id"].clone()).collect();
        let (status, body) = self.post("/profiles", json!({ "users": ids })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

pub fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}
