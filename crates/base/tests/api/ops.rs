use reqwest::StatusCode;

use clap::Parser;
use kubescaler_base::Config;

use crate::helpers::{SHARED_KEYSPACE, TestApp, error_code, require_cassandra};

#[tokio::test]
async fn liveness_readiness_and_health() {
    let app = TestApp::spawn().await;
    for path in ["/livez", "/health"] {
        assert_eq!(app.get(path).await.0, StatusCode::OK, "{path}");
    }
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["checks"]["cassandra"], "ok");
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_status() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Counted").await;
    app.get(&format!("/users/{}", user["id"].as_str().unwrap())).await;
    app.get("/users/00000000-0000-4000-8000-00000000beef").await;
    app.get("/users/bad").await;

    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for series in [
        r#"http_requests_total{method="POST",route="/users",service="base",status="201"} 1"#,
        r#"http_requests_total{method="GET",route="/users/{id}",service="base",status="200"} 1"#,
        r#"http_requests_total{method="GET",route="/users/{id}",service="base",status="404"} 1"#,
        r#"http_requests_total{method="GET",route="/users/{id}",service="base",status="400"} 1"#,
        r#"http_request_duration_seconds_count{method="GET",route="/users/{id}",service="base",status="200"} 1"#,
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::spawn().await;
    let (status, error) = app.get("/nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&error), "no_route");
    let (status, error) = app.call(reqwest::Method::PATCH, "/users", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&error), "method_not_allowed");
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/livez")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response = app.client.get(app.url("/livez")).send().await.unwrap();
    assert!(!response.headers()["x-request-id"].is_empty(), "one is made when the client sends none");
}

/// `GET /` says which replica answered: `--hostname` / HOSTNAME.
#[tokio::test]
async fn root_answers_the_host_name() {
    let nodes = require_cassandra().await.join(",");
    let config = Config::try_parse_from([
        "base",
        "--port",
        "0",
        "--listen-address",
        "127.0.0.1",
        "--cassandra-nodes",
        &nodes,
        "--cassandra-keyspace",
        SHARED_KEYSPACE,
        "--hostname",
        "base-7",
    ])
    .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let service = kubescaler_base::build(config, shutdown.clone()).await.unwrap();
    let http = kubescaler_testkit::Http::new(std::net::SocketAddr::from(([127, 0, 0, 1], service.port())));
    let task = tokio::spawn(service.run_until_stopped());
    let response = http.client.get(http.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(response.text().await.unwrap(), "base-7");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
