//! Talking to a service as its clients do: JSON over HTTP, and the error shape they rely on.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

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

    /// Posts raw bytes with the given content type, if any: for bodies a JSON value cannot be,
    /// malformed or mislabelled.
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
        Self::read(request).await
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
