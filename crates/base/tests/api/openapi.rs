//! base's OpenAPI document: served, complete, and faithful to the types' limits.

use std::sync::Arc;
use std::time::Duration;

use kubescaler_base::cassandra::CassandraStore;
use kubescaler_base::changes::RedisAnnouncer;
use kubescaler_base::store::Store;
use kubescaler_server::Service;
use kubescaler_testkit::Running;
use prometheus::Registry;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, require_cassandra};

async fn document(app: &TestApp) -> Value {
    let response = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_served() {
    // Its own keyspace: the check sends every operation once, the deletes of everything too.
    let config = crate::helpers::config(require_cassandra().await, "openapi_routes");
    let registry = Registry::new();
    let store: Arc<dyn Store> = Arc::new(CassandraStore::start(config.cassandra));
    let changes = Arc::new(RedisAnnouncer::start(&config.redis, &registry).unwrap());
    let shutdown = CancellationToken::new();
    let router = kubescaler_base::app(store, changes, &config.hostname, shutdown.clone(), registry).unwrap();
    let service = Service::bind("base", &config.common, 0, router.clone(), shutdown.clone()).await.unwrap();
    let app = Running::start(service, shutdown);
    app.wait_ready(Duration::from_secs(60)).await;
    let response = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    kubescaler_testkit::assert_routes_match_document(&app, &router, &doc, &[""], &[]).await;
    app.stop().await;
}

#[tokio::test]
async fn the_document_matches_the_code_that_serves_it() {
    let app = TestApp::spawn().await;
    let served = document(&app).await;
    let built = serde_json::to_value(kubescaler_base::routes::openapi()).unwrap();
    assert_eq!(served, built);
}

#[tokio::test]
async fn schemas_carry_the_limits_the_types_enforce() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["UserName"]["maxLength"], 256);
    assert_eq!(schemas["UserName"]["minLength"], 1);
    assert_eq!(schemas["ProfileUsers"]["maxItems"], 10_000);
    assert_eq!(schemas["UserId"]["format"], "uuid");
    assert_eq!(schemas["UserBody"]["additionalProperties"], false, "unknown fields are refused");
    let codes: Vec<&str> = schemas["ErrorBody"]["properties"]["error"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(codes.contains(&"not_bound") && codes.contains(&"invalid_id"), "{codes:?}");
    // Every error status of an operation has the error body.
    let create = &doc["paths"]["/users"]["post"]["responses"];
    for status in ["400", "413", "415", "422", "503", "500"] {
        assert_eq!(
            create[status]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
            "POST /users {status}"
        );
    }
}
