//! Start-up without Cassandra, recovery, restarts and graceful shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Forwarder, SHARED_KEYSPACE, TestApp, config, error_code, id, require_cassandra};

async fn assert_unavailable(app: &TestApp) {
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "not_ready");
    assert_eq!(body["failing"], json!(["cassandra"]));
    let (status, body) = app.get("/users").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "never an empty list in place of a failure: {body}");
    assert_eq!(error_code(&body), "unavailable");
    assert_eq!(body["dependency"], "cassandra");
    assert_eq!(app.get("/livez").await.0, StatusCode::OK, "alive while Cassandra is away");
}

#[tokio::test]
async fn starts_without_cassandra_and_becomes_ready_when_it_answers() {
    let nodes = require_cassandra().await;
    let mut node = Forwarder::reserve(&nodes[0]);
    let app = TestApp::start(config(vec![node.addr.to_string()], SHARED_KEYSPACE)).await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_unavailable(&app).await;

    node.open().await;
    app.wait_ready(Duration::from_secs(20)).await;
    let user = app.create_user("Arrived late").await;
    assert_eq!(app.get(&format!("/users/{}", id(&user))).await.0, StatusCode::OK);
}

#[tokio::test]
async fn recovers_without_restart_when_cassandra_returns() {
    let nodes = require_cassandra().await;
    let mut node = Forwarder::reserve(&nodes[0]);
    node.open().await;
    let app = TestApp::start(config(vec![node.addr.to_string()], SHARED_KEYSPACE)).await;
    app.wait_ready(Duration::from_secs(60)).await;

    node.close();
    app.wait_unready(Duration::from_secs(20)).await;
    assert_unavailable(&app).await;

    node.open().await;
    app.wait_ready(Duration::from_secs(30)).await;
    app.create_user("After the outage").await;
}

#[tokio::test]
async fn data_survives_a_restart_of_base() {
    let first = TestApp::spawn().await;
    let user = first.create_user("Persistent").await;
    let profile = first.create_profile(&[&user]).await;
    first.stop().await;

    let second = TestApp::spawn().await;
    assert_eq!(second.get(&format!("/users/{}", id(&user))).await.1, user);
    assert_eq!(second.get(&format!("/profiles/{}", id(&profile))).await.1, profile);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_ones() {
    let app = TestApp::spawn().await;
    let body = br#"{"name":"In flight"}"#;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /users HTTP/1.1\r\nhost: base\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    app.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(app.addr).await.is_err()
            || app.client.get(app.url("/livez")).send().await.is_err(),
        "no new requests once shutting down"
    );

    stream.write_all(&body[5..]).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    tokio::time::timeout(Duration::from_secs(5), app.stop()).await.unwrap();
}
