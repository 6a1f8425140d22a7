//! Refusals as EventSource sees them: a client that accepts only `text/event-stream` gets a 200
//! event stream with `retry:` and one `refused` event (the JSON answer), so that EventSource
//! retries by itself instead of giving up on a non-200 status; other clients keep the statuses.

use std::time::Duration;

use kubescaler_base_client::BaseClientConfig;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// A request for `path` as EventSource makes it; asserts the answer is one `refused` event
/// and the end of the stream, and returns its `retry:` and its data.
async fn refused(http: &Http, path: &str) -> (Duration, Value) {
    let response =
        http.client.get(http.url(path)).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let text = tokio::time::timeout(Duration::from_secs(5), response.text())
        .await
        .expect("the stream ends after the refusal")
        .unwrap();
    let lines: Vec<&str> = text.strip_suffix("\n\n").expect("one complete event").split('\n').collect();
    let [retry, event, data] = lines[..] else { panic!("not one retry and one event: {text:?}") };
    assert_eq!(event, "event: refused", "{text:?}");
    let retry = Duration::from_millis(retry.strip_prefix("retry: ").unwrap().parse().unwrap());
    let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
    error_code(&data);
    (retry, data)
}

/// The same request as a client that reads statuses: no Accept header.
async fn answered(http: &Http, path: &str) -> (StatusCode, Value) {
    http.get(path).await
}

#[tokio::test]
async fn refusals_reach_an_event_source_as_refused_events_with_their_retry() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let mut config = stream_config(&base, vec![redis.url()]);
    config.max_connections = 2;
    let stream = spawn_stream(config).await;
    let (user, profile) = pair(&base).await;
    let (stranger, _) = pair(&base).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let _held = Sse::open(&stream, &user, &profile).await.unwrap();

    // Permanent refusals: the same answer as JSON, and a long retry.
    for (path, code, retry) in [
        (format!("/stream/nope/{profile}"), "invalid_id", Duration::from_secs(3600)),
        (format!("/stream/{user}/{unknown}"), "not_found", TTL),
        (format!("/stream/{stranger}/{profile}"), "not_bound", TTL),
    ] {
        let (got_retry, data) = refused(&stream, &path).await;
        let (status, json) = answered(&stream, &path).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert_eq!((data["error"].as_str(), got_retry), (Some(code), retry), "{path}: {data}");
        assert_eq!(data, json, "{path}: the event carries the JSON answer");
    }

    // Locked: retry when the lock can expire, which is what the answer says too.
    let path = format!("/stream/{user}/{profile}");
    let (retry, data) = refused(&stream, &path).await;
    assert_eq!(data["error"], "locked", "{data}");
    assert_eq!(data["retry_after_ms"].as_u64(), Some(retry.as_millis() as u64));
    assert!(retry > Duration::ZERO && retry <= TTL, "{retry:?}");
    let (status, json) = answered(&stream, &path).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::CONFLICT, Some("locked")));

    // A client that also accepts JSON reads statuses; so does one that accepts anything.
    for accept in ["text/event-stream, application/json", "*/*", "text/event-stream;q=0, */*"] {
        let response = stream
            .client
            .get(stream.url(&format!("/stream/{user}/{profile}")))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CONFLICT, "Accept: {accept}");
    }
    // Full: the Retry-After of the 503, in milliseconds.
    let (other_user, other_profile) = pair(&base).await;
    let _second = Sse::open(&stream, &other_user, &other_profile).await.unwrap();
    let (third_user, third_profile) = pair(&base).await;
    let path = format!("/stream/{third_user}/{third_profile}");
    let (retry, data) = refused(&stream, &path).await;
    assert_eq!((data["error"].as_str(), retry), (Some("too_many_streams"), Duration::from_secs(1)));
    let (status, json) = answered(&stream, &path).await;
    assert_eq!((status, json), (StatusCode::SERVICE_UNAVAILABLE, data));

    assert_eq!(metric(&stream, "kubescaler_stream_active_connections").await, 2.0, "refusals count nothing");
}

#[tokio::test]
async fn outages_reach_an_event_source_as_refused_events() {
    let mut redis = RedisServer::start().await;
    let base = spawn_base().await;

    // Redis away.
    let stream = spawn_stream(stream_config(&base, vec![redis.url()])).await;
    redis.stop().await;
    let (user, profile) = pair(&base).await;
    let (retry, data) = refused(&stream, &format!("/stream/{user}/{profile}")).await;
    assert_eq!((data["error"].as_str(), data["dependency"].as_str()), (Some("unavailable"), Some("redis")));
    assert_eq!(retry, Duration::from_secs(3), "a dependency outage: the browsers' own default pace");

    // base away.
    let mut config = stream_config(&base, vec![require_redis().await]);
    config.base = BaseClientConfig::new(&format!("http://127.0.0.1:{}", free_port()));
    let shutdown = CancellationToken::new();
    let without_base =
        Running::start(kubescaler_stream::build(config, shutdown.clone()).await.unwrap(), shutdown);
    let (retry, data) = refused(&without_base, &format!("/stream/{user}/{profile}")).await;
    assert_eq!((data["error"].as_str(), data["dependency"].as_str()), (Some("unavailable"), Some("base")));
    assert_eq!(retry, Duration::from_secs(3));
    let (status, _) = answered(&without_base, &format!("/stream/{user}/{profile}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_stopping_instance_refuses_an_event_source_with_a_refused_event() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let config = stream_config(&base, vec![redis.url()]);
    let shutdown = CancellationToken::new();
    let locks = std::sync::Arc::new(kubescaler_stream::locks::RedisLocks::new(&config.redis).unwrap());
    let kubescaler_stream::App { router, .. } = kubescaler_stream::app(
        &config,
        locks,
        redis_bindings(&config),
        shutdown.clone(),
        prometheus::Registry::new(),
    )
    .unwrap();
    // Served apart from the token, so requests still arrive after it is cancelled.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = Http::new(listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let (user, profile) = pair(&base).await;

    shutdown.cancel();
    let (retry, data) = refused(&http, &format!("/stream/{user}/{profile}")).await;
    assert_eq!((data["error"].as_str(), retry), (Some("shutting_down"), Duration::from_secs(1)));
    server.abort();
}
