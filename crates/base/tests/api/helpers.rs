//! Starts base in-process on port 0 against the real Cassandra that `scripts/services.sh up`
//! runs, and talks to it over HTTP like any client.

use std::net::SocketAddr;
use std::ops::Deref;
use std::time::Duration;

use kubescaler_base::Config;
use kubescaler_base::cassandra::CassandraConfig;
use kubescaler_redis::RedisArgs;
use kubescaler_server::config::{CommonArgs, LogFormat};
pub use kubescaler_testkit::{Forwarder, Http, error_code, require_cassandra};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Keyspace shared by tests that only touch their own (random) ids.
pub const SHARED_KEYSPACE: &str = "kubescaler_test_api";

pub fn config(nodes: Vec<String>, keyspace: &str) -> Config {
    Config {
        port: 0,
        cassandra: CassandraConfig::new(nodes, keyspace).unwrap(),
        redis: RedisArgs {
            urls: vec![kubescaler_testkit::shared_redis_url()],
            timeout: Duration::from_millis(500),
        },
        hostname: "localhost".to_owned(),
        common: CommonArgs {
            listen_address: "127.0.0.1".parse().unwrap(),
            log_format: LogFormat::Pretty,
            shutdown_grace: Duration::from_secs(5),
        },
    }
}

pub struct TestApp {
    pub http: Http,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Deref for TestApp {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
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
        kubescaler_server::telemetry::init_for_tests();
        let shutdown = CancellationToken::new();
        let app = kubescaler_base::build(config, shutdown.clone()).await.unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
        let task = tokio::spawn(app.run_until_stopped());
        Self { http: Http::new(addr), addr, shutdown, task }
    }

    /// Sends raw bytes as the body (for malformed bodies).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        Http::read(request).await
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
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

pub fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}
