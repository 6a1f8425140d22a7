//! Support for kubescaler's integration tests, which run against real servers:
//!
//! - [`require_cassandra`] / [`require_redis`]: the servers `scripts/services.sh up` starts,
//!   or a failure that says how to start them — never a silent skip.
//! - [`RedisServer`]: a dedicated `redis-server` on a free port, for tests that stop it or
//!   count its commands without disturbing anything else.
//! - [`Forwarder`]: a TCP hop in front of a real server that can refuse, forward, and cut
//!   every connection — an outage and a recovery without touching the server.
//! - [`Nginx`]: nginx balancing round robin over several instances, as an Ingress would.
//! - [`Http`]: a small JSON client with one method per verb.
//! - [`Running`]: a service started in-process on port 0, stopped when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_debug_implementations)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use kubescaler_server::Service;
use kubescaler_server::config::{CommonArgs, LogFormat};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Cassandra contact points (`CASSANDRA_NODES`), after checking the first one answers.
pub async fn require_cassandra() -> Vec<String> {
    let nodes: Vec<String> =
        env_or("CASSANDRA_NODES", "127.0.0.1:9042").split(',').map(str::to_owned).collect();
    if TcpStream::connect(&nodes[0]).await.is_err() {
        panic!(
            "Cassandra is not reachable at {} (CASSANDRA_NODES). Start it with `scripts/services.sh up`.",
            nodes[0]
        );
    }
    nodes
}

/// The shared Redis's URL (`REDIS_URL`, default `redis://127.0.0.1:6379`), unchecked: where a
/// service that only announces (base) is pointed.
pub fn shared_redis_url() -> String {
    env_or("REDIS_URL", "redis://127.0.0.1:6379")
}

/// The shared Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`), after checking it answers.
pub async fn require_redis() -> String {
    let url = shared_redis_url();
    let addr = url.trim_start_matches("redis://").trim_end_matches('/');
    if TcpStream::connect(addr).await.is_err() {
        panic!("Redis is not reachable at {addr} (REDIS_URL). Start it with `scripts/services.sh up`.");
    }
    url
}

/// A free TCP port on 127.0.0.1 that nothing listens on (connections are refused).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A dedicated `redis-server` (installed by `scripts/services.sh`), killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let mut server = Self { port: free_port(), child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install it with `scripts/services.sh up`")
            });
        self.child = Some(child);
        for _ in 0..100 {
            if self.command::<String>(&["PING"]).await.is_ok_and(|reply| reply == "PONG") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Freezes the server (SIGSTOP): its connections stay open and nothing is answered, as
    /// with a server too busy to reply — unlike [`stop`](Self::stop), after which connections
    /// are refused at once.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [`pause`](Self::pause)d server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().and_then(Child::id).expect("redis-server is running");
        let status = std::process::Command::new("kill").args([name, &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill {name} {pid} failed");
    }

    /// Runs one command on a fresh connection and returns the reply.
    pub async fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query_async(&mut connection).await
    }

    /// Calls per command since start (`INFO commandstats`), e.g. `{"mget": 3}`.
    pub async fn command_calls(&self) -> HashMap<String, u64> {
        let info: String = self.command(&["INFO", "commandstats"]).await.unwrap();
        info.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }
}

/// A TCP forwarder that can be taken down and brought back on the same port, standing in for
/// a server that becomes unreachable and then returns.
pub struct Forwarder {
    pub addr: SocketAddr,
    target: String,
    stop: Option<CancellationToken>,
}

impl Forwarder {
    /// A free port on which nothing listens yet: connections are refused until [`open`].
    ///
    /// [`open`]: Forwarder::open
    pub fn reserve(target: &str) -> Self {
        Self { addr: SocketAddr::from(([127, 0, 0, 1], free_port())), target: target.to_owned(), stop: None }
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

/// nginx (installed by `scripts/services.sh`) balancing round robin over `upstreams` with the
/// stream Ingress's settings — no buffering, long reads — killed on drop. An upstream that is
/// not listening yet is skipped for that request only (`max_fails=0`), so an instance started
/// later gets its share of the next connections at once.
pub struct Nginx {
    pub http: Http,
    dir: std::path::PathBuf,
    _child: Child,
}

impl Nginx {
    pub async fn start(upstreams: &[SocketAddr]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("kubescaler-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let servers: String = upstreams.iter().map(|u| format!("server {u} max_fails=0; ")).collect();
        let d = dir.display();
        let config = format!(
            "master_process off; pid {d}/nginx.pid; error_log {d}/error.log; daemon off;
             events {{ worker_connections 1024; }}
             http {{
               access_log off;
               client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
               uwsgi_temp_path {d}; scgi_temp_path {d};
               upstream stream {{ {servers} }}
               server {{
                 listen 127.0.0.1:{port};
                 location / {{
                   proxy_pass http://stream;
                   proxy_http_version 1.1;
                   proxy_set_header Connection \"\";
                   proxy_buffering off;
                   proxy_read_timeout 3600s;
                 }}
               }}
             }}"
        );
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        let child = Command::new("nginx")
            .args(["-p", &d.to_string(), "-c", &dir.join("nginx.conf").display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nginx ({e}); install it with `scripts/services.sh up`"));
        let http = Http::new(SocketAddr::from(([127, 0, 0, 1], port)));
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { http, dir, _child: child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nginx did not listen on {port}: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }
}

impl std::ops::Deref for Nginx {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A JSON-over-HTTP client for one service.
#[derive(Clone)]
pub struct Http {
    pub base_url: String,
    pub client: reqwest::Client,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { base_url: format!("http://{addr}"), client }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Status and parsed JSON body (`Null` for an empty body).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::read(request).await
    }

    /// Sends a request built by the caller (headers, raw bodies) and reads it like [`call`].
    ///
    /// [`call`]: Http::call
    pub async fn read(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes)))
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

    /// Polls `/readyz` until it answers 200, or fails the test after `within`.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, body) = self.get("/readyz").await;
            if status == StatusCode::OK {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not ready within {within:?}: {body}",
                self.base_url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `/readyz` until it answers 503, or fails the test after `within`.
    pub async fn wait_unready(&self, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, body) = self.get("/readyz").await;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                return body;
            }
            assert!(tokio::time::Instant::now() < deadline, "{} still ready after {within:?}", self.base_url);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Asserts the JSON error shape every failure must have, and returns its code.
pub fn error_code(body: &Value) -> &str {
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "error without message: {body}");
    body["error"].as_str().unwrap_or_else(|| panic!("error without code: {body}"))
}

/// Flags shared by every service, as tests want them: loopback, quiet, a short grace.
pub fn common_args() -> CommonArgs {
    CommonArgs {
        listen_address: "127.0.0.1".parse().unwrap(),
        log_format: LogFormat::Pretty,
        shutdown_grace: Duration::from_secs(5),
    }
}

/// A service running in-process; dropping it shuts it down.
pub struct Running {
    pub http: Http,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Runs a service built with `shutdown` as its token.
    pub fn start(service: Service, shutdown: CancellationToken) -> Self {
        kubescaler_server::telemetry::init_for_tests();
        let addr = SocketAddr::from(([127, 0, 0, 1], service.port()));
        let task = tokio::spawn(service.run_until_stopped());
        Self { http: Http::new(addr), addr, shutdown, task: Some(task) }
    }
}

impl std::ops::Deref for Running {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The routes a service serves and the operations its OpenAPI document describes are the same
/// set. `doc` is the document as served; `prefix` is where the API is mounted (`""` or
/// `/main`); `sources` are the service's route-registering source files, whose `.route("…")`
/// literals must each be a documented path or one of `undocumented` (files that are not API).
///
/// Every documented operation is sent once (ids filled in at random, `{}` as a body), so run
/// it against a service whose data the test owns: it deletes.
pub async fn assert_routes_match_document(
    http: &Http,
    doc: &Value,
    prefix: &str,
    sources: &[&str],
    undocumented: &[&str],
) {
    const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];
    let paths = doc["paths"].as_object().expect("the document has paths");
    assert!(!paths.is_empty(), "the document describes no path");
    for (path, item) in paths {
        let concrete = fill_path_parameters(path);
        // A path item may say it is served elsewhere (the operational endpoints: at the root).
        let prefix = item["servers"][0]["url"].as_str().map_or(prefix, |url| url.trim_end_matches('/'));
        for method in METHODS {
            let documented = item.get(method).is_some();
            let mut request = http.client.request(
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                http.url(&format!("{prefix}{concrete}")),
            );
            if matches!(method, "post" | "put" | "patch") {
                request = request.json(&serde_json::json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            let code = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let fallback = (status == StatusCode::NOT_FOUND && code == "no_route")
                || (status == StatusCode::METHOD_NOT_ALLOWED && code == "method_not_allowed");
            if documented {
                assert!(
                    !fallback,
                    "{} {path} is documented but not served: {status} {text}",
                    method.to_uppercase()
                );
            } else {
                assert!(
                    status == StatusCode::METHOD_NOT_ALLOWED && code == "method_not_allowed",
                    "{} {path} is served ({status} {text}) but not documented",
                    method.to_uppercase()
                );
            }
        }
    }
    for source in sources {
        // The file's own tests may serve routes of their own.
        let source = source.split("#[cfg(test)]").next().unwrap_or(source);
        for literal in source.split(".route(\"").skip(1).filter_map(|rest| rest.split('"').next()) {
            assert!(
                paths.contains_key(literal) || undocumented.contains(&literal),
                "the route {literal} is registered but not in the document"
            );
        }
    }
}

/// `/users/{id}` → `/users/<random uuid>`.
fn fill_path_parameters(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                uuid::Uuid::new_v4().to_string()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every answer of 400 and above that `doc` describes is the one error body (`ErrorBody`):
/// how many there are, and the ones that are not (`METHOD path status`).
pub fn error_answers_off_the_error_body(doc: &Value) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut off = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("the document has paths") {
        // A path item's `servers` is not an operation.
        for (method, operation) in item.as_object().into_iter().flatten().filter(|(key, _)| *key != "servers")
        {
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                if status.as_str() >= "400" {
                    count += 1;
                    if response["content"]["application/json"]["schema"]["$ref"]
                        != "#/components/schemas/ErrorBody"
                    {
                        off.push(format!("{} {path} {status}", method.to_uppercase()));
                    }
                }
            }
        }
    }
    (count, off)
}
