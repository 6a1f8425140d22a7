//! stream's OpenAPI document: served, complete, and true to what stream answers.

use std::sync::Arc;
use std::time::Duration;

use kubescaler_server::Service;
use kubescaler_stream::locks::{PairLocks, RedisLocks};
use prometheus::Registry;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Running, redis_bindings, require_redis, spawn_base, stream_config};

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_served() {
    let redis = require_redis().await;
    let base = spawn_base().await;
    let config = stream_config(&base, vec![redis]);
    let locks: Arc<dyn PairLocks> = Arc::new(RedisLocks::new(&config.redis).unwrap());
    let shutdown = CancellationToken::new();
    let app =
        kubescaler_stream::app(&config, locks, redis_bindings(&config), shutdown.clone(), Registry::new())
            .unwrap();
    let service = Service::bind("stream", &config.common, 0, app.router.clone(), shutdown.clone())
        .await
        .unwrap()
        .with_drain(app.refresher.drain());
    let stream = Running::start(service, shutdown);
    stream.wait_ready(Duration::from_secs(30)).await;

    let response = stream.client.get(stream.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, serde_json::to_value(kubescaler_stream::openapi()).unwrap());
    // Random ids name no profile, so no stream is opened and no lock taken.
    kubescaler_testkit::assert_routes_match_document(&stream, &app.router, &doc, &[""], &[]).await;
    stream.stop().await;
}

#[test]
fn the_stream_and_its_refusals_are_described_as_they_are_answered() {
    let doc = serde_json::to_value(kubescaler_stream::openapi()).unwrap();
    let (count, off) = kubescaler_testkit::error_answers_off_the_error_body(&doc);
    assert!(off.is_empty(), "{off:?}");
    assert!(count >= 10, "{count}");
    let stream = &doc["paths"]["/stream/{user_id}/{profile_id}"];
    let ok = &stream["get"]["responses"]["200"];
    assert!(ok["content"].get("text/event-stream").is_some(), "{ok}");
    assert!(ok["description"].as_str().unwrap().contains("event: refused"), "{ok}");
    for status in ["400", "403", "404", "409", "502", "503", "504"] {
        assert!(stream["get"]["responses"].get(status).is_some(), "GET /stream/… {status}");
    }
    assert!(stream["head"]["responses"]["200"]["content"].get("text/event-stream").is_some());
    for page in ["/", "/index/{user_id}/{profile_id}", "/index/{user_id}/{profile_id}/"] {
        let content = &doc["paths"][page]["get"]["responses"]["200"]["content"];
        assert!(content.get("text/html").is_some(), "{page}: {content}");
    }
    // Every schema a reference names is in the document.
    let text = doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1).filter_map(|rest| rest.split('"').next()) {
        assert!(doc["components"]["schemas"].get(reference).is_some(), "{reference} is not in the document");
    }
}
