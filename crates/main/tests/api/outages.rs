//! base or Redis away: clear errors and readiness, then recovery without a restart.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;

use crate::helpers::*;

#[tokio::test]
async fn base_down_is_503_then_recovers() {
    let redis = require_redis().await;
    let base = spawn_base(SHARED_KEYSPACE).await;
    let mut hop = Forwarder::reserve(&base.addr.to_string());
    hop.open().await;
    let main = spawn_main(main_config(&format!("http://{}", hop.addr), vec![redis])).await;
    main.wait_ready(Duration::from_secs(30)).await;
    let user = create_user(&base, "Through the hop").await;

    hop.close();
    for path in ["/users", "/profiles", "/suggested", &format!("/login/{}", id(&user))] {
        let (status, error) = main.get(path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {error}");
        assert_eq!(error_code(&error), "unavailable");
        assert_eq!(error["dependency"], "base");
    }
    let (status, error) = main.post("/testdata?profiles=2&users_per_profile=2", json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{error}");
    let progress = wait_generation(&main, Duration::from_secs(30)).await;
    assert_eq!(progress["state"], "failed", "{progress}");
    assert_eq!(progress["users_failed"], 4, "every failure is counted: {progress}");
    assert_eq!(progress["profiles_failed"], 2, "{progress}");
    assert!(progress["last_error"].as_str().unwrap().contains("unreachable"), "{progress}");
    let ready = main.wait_unready(Duration::from_secs(5)).await;
    assert_eq!(ready["failing"], json!(["base"]));

    hop.open().await;
    main.wait_ready(Duration::from_secs(10)).await;
    let (status, users) = main.get("/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(users.as_array().unwrap().contains(&user));
}

#[tokio::test]
async fn reads_are_retried_across_a_short_outage() {
    let redis = require_redis().await;
    let base = spawn_base(SHARED_KEYSPACE).await;
    let mut hop = Forwarder::reserve(&base.addr.to_string());
    let main = spawn_main(main_config(&format!("http://{}", hop.addr), vec![redis])).await;
    // base comes back 150 ms into the request: within main's retries (100 ms, then 200 ms).
    let reopen = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        hop.open().await;
        hop
    });
    let (status, body) = main.get("/profiles").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(reopen.await.unwrap());
}

#[tokio::test]
async fn a_base_that_does_not_answer_is_504() {
    let redis = require_redis().await;
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut config = main_config(&format!("http://{silent_addr}"), vec![redis]);
    config.base.timeout = Duration::from_millis(300);
    config.base.retries = 0;
    let main = spawn_main(config).await;
    let (status, error) = main.get("/users").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{error}");
    assert_eq!(error_code(&error), "gateway_timeout");
    assert_eq!(error["dependency"], "base");
    holder.abort();
}

#[tokio::test]
async fn a_failing_base_is_502_and_its_client_errors_pass_through() {
    let redis = require_redis().await;
    // A stand-in for base that fails every request in its own JSON format.
    let stub = axum::Router::new()
        .route(
            "/users",
            axum::routing::get(|| async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"error": "internal", "message": "boom"})),
                )
            }),
        )
        .route(
            "/profiles",
            axum::routing::get(|| async {
                (StatusCode::NOT_FOUND, axum::Json(json!({"error": "not_found", "message": "no such thing"})))
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, stub).await });
    let main = spawn_main(main_config(&format!("http://{stub_addr}"), vec![redis])).await;

    let (status, error) = main.get("/users").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{error}");
    assert_eq!(error_code(&error), "bad_gateway");
    assert!(error["message"].as_str().unwrap().contains("boom"), "{error}");
    let (status, error) = main.get("/profiles").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert_eq!(error, json!({"error": "not_found", "message": "no such thing"}));
}

#[tokio::test]
async fn redis_down_is_503_then_recovers() {
    let mut redis = RedisServer::start().await;
    let base = spawn_base(SHARED_KEYSPACE).await;
    let main = spawn_main(main_config(&base.base_url, vec![redis.url()])).await;
    main.wait_ready(Duration::from_secs(30)).await;
    let user = create_user(&base, "Redis outage").await;
    create_profile(&base, &[&user]).await;
    let login = format!("/login/{}", id(&user));
    assert_eq!(main.get(&login).await.0, StatusCode::OK);

    redis.stop().await;
    let (status, error) = main.get(&login).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error_code(&error), "unavailable");
    assert_eq!(error["dependency"], "redis");
    let ready = main.wait_unready(Duration::from_secs(5)).await;
    assert_eq!(ready["failing"], json!(["redis"]));
    assert_eq!(main.get("/users").await.0, StatusCode::OK, "what needs no Redis still works");

    redis.restart().await;
    main.wait_ready(Duration::from_secs(15)).await;
    let (status, body) = main.get(&login).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
}
