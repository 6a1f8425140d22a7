//! Starts base in-process on port 0 against the real Cassandra that `scripts/services.sh up`
//! runs, and talks to it over HTTP like any client.

use std::net::SocketAddr;
use std::time::Duration;

use kubescaler_base::cassandra::CassandraConfig;
use kubescaler_base::{Application, Config};
use kubescaler_shared::config::{CommonArgs, LogFormat};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Keyspace shared by tests that only touch their own (random) ids.
pub const SHARED_KEYSPACE: &str = "kubescaler_test_api";

pub fn cassandra_nodes() -> Vec<String> {
    std::env::var("CASSANDRA_NODES")
        .unwrap_or_else(|_| "127.0.0.1:9042".into())
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Fails the test at once, with what to do, when no Cassandra answers.
pub async fn require_cassandra() -> Vec<String> {
    let nodes = cassandra_nodes();
    if TcpStream::connect(&nodes[0]).await.is_err() {
        panic!(
            "Cassandra is not reachable at {} (CASSANDRA_NODES). Start it with `scripts/services.sh up`.",
            nodes[0]
        );
    }
    nodes
}

pub fn config(nodes: Vec<String>, keyspace: &str) -> Config {
    Config {
        port: 0,
        cassandra: CassandraConfig::new(nodes, keyspace).unwrap(),
        common: CommonArgs {
            listen_address: "127.0.0.1".parse().unwrap(),
            log_format: LogFormat::Pretty,
            shutdown_grace: Duration::from_secs(5),
        },
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
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
        kubescaler_shared::telemetry::init_for_tests();
        let shutdown = CancellationToken::new();
        let app = Application::build(config, shutdown.clone()).await.unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
        let task = tokio::spawn(app.run_until_stopped());
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Self { addr, client, shutdown, task }
    }

    pub async fn wait_ready(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, body) = self.get("/readyz").await;
            if status == StatusCode::OK {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "base not ready within {within:?}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// Status and parsed JSON body (`Null` for an empty body).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let response = self.send(method, path, body).await;
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Sends raw bytes as a JSON body (for malformed bodies).
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
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
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

/// Asserts the JSON error shape every failure must have, and returns the code.
pub fn error_code(body: &Value) -> &str {
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "error without message: {body}");
    body["error"].as_str().unwrap_or_else(|| panic!("error without code: {body}"))
}

pub fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}

/// A TCP forwarder that can be taken down and brought back on the same port, standing in for
/// a Cassandra node that is unreachable and then returns.
pub struct Forwarder {
    pub addr: SocketAddr,
    target: String,
    stop: Option<CancellationToken>,
}

impl Forwarder {
    /// A free port on which nothing listens yet: connections are refused.
    pub async fn reserve(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        Self { addr, target: target.to_owned(), stop: None }
    }

    /// Starts forwarding to the target.
    pub async fn open(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let stop = CancellationToken::new();
        let target = self.target.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => return },
                };
                let target = target.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        self.stop = Some(stop);
    }

    /// Stops listening and cuts every forwarded connection.
    pub fn close(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.close();
    }
}
