//! The binding checks stream asks (a boolean, one or a thousand pairs at a time), and the
//! changes base announces on Redis after the writes that may unbind a pair.

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, id};

fn pair(user: &Value, profile: &Value) -> Value {
    json!({ "user": user["id"], "profile": profile["id"] })
}

#[tokio::test]
async fn one_binding_is_a_boolean_and_no_profile_is_404() {
    let app = TestApp::spawn().await;
    let (inside, outside) = (app.create_user("In").await, app.create_user("Out").await);
    let profile = app.create_profile(&[&inside]).await;
    let path = |profile: &str, user: &Value| format!("/bindings/{profile}/{}", id(user));

    assert_eq!(app.get(&path(id(&profile), &inside)).await, (StatusCode::OK, json!({ "bound": true })));
    assert_eq!(app.get(&path(id(&profile), &outside)).await, (StatusCode::OK, json!({ "bound": false })));
    let (status, error) = app.get(&path(&uuid::Uuid::new_v4().to_string(), &inside)).await;
    assert_eq!((status, error_code(&error)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, error) = app.get(&format!("/bindings/{}/nope", id(&profile))).await;
    assert_eq!((status, error_code(&error)), (StatusCode::BAD_REQUEST, "invalid_id"));
}

#[tokio::test]
async fn many_bindings_are_answered_in_the_order_asked() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.create_user("A").await, app.create_user("B").await);
    let (pa, pb) = (app.create_profile(&[&a]).await, app.create_profile(&[&a, &b]).await);
    let gone = json!({ "id": uuid::Uuid::new_v4() });
    let pairs = json!([pair(&a, &pa), pair(&b, &pa), pair(&b, &pb), pair(&a, &gone), pair(&a, &pb)]);
    let (status, answer) = app.post("/bindings/check", json!({ "pairs": pairs })).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({ "bound": [true, false, true, false, true] }));

    let (status, answer) = app.post("/bindings/check", json!({ "pairs": [] })).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "bound": [] })));
}

#[tokio::test]
async fn a_check_of_a_thousand_pairs_is_answered_and_more_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Many").await;
    let profile = app.create_profile(&[&user]).await;
    let thousand = vec![pair(&user, &profile); 1_000];
    let (status, answer) = app.post("/bindings/check", json!({ "pairs": thousand })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["bound"].as_array().unwrap().len(), 1_000);
    assert!(answer["bound"].as_array().unwrap().iter().all(|bound| bound == true));

    let over = vec![pair(&user, &profile); 1_001];
    let (status, error) = app.post("/bindings/check", json!({ "pairs": over })).await;
    assert_eq!((status, error_code(&error)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"), "{error}");
    assert!(error["message"].as_str().unwrap().contains("at most 1000 pairs"), "{error}");
}

#[tokio::test]
async fn malformed_checks_are_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    let (status, error) =
        app.post("/bindings/check", json!({ "pairs": [{ "user": "x", "profile": "y" }] })).await;
    assert_eq!((status, error_code(&error)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"), "{error}");
    let (status, error) =
        app.post("/bindings/check", json!({ "pairs": [{ "user": uuid::Uuid::new_v4() }] })).await;
    assert_eq!((status, error_code(&error)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"), "{error}");
    let (status, error) = app.post_raw("/bindings/check", Some("application/json"), "{").await;
    assert_eq!((status, error_code(&error)), (StatusCode::BAD_REQUEST, "malformed_json"), "{error}");
    let (status, error) = app.post_raw("/bindings/check", Some("text/plain"), "{}").await;
    assert_eq!((status, error_code(&error)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
}

/// Messages on the binding channel of the shared Redis, as stream hears them.
async fn listen() -> impl futures::Stream<Item = String> {
    let url = kubescaler_testkit::require_redis().await;
    let mut pubsub = redis::Client::open(url).unwrap().get_async_pubsub().await.unwrap();
    pubsub.subscribe(kubescaler_core::keys::BINDINGS).await.unwrap();
    pubsub.into_on_message().map(|message| message.get_payload::<String>().unwrap())
}

/// Waits for `wanted` among the messages (other tests announce on the same channel).
async fn heard(messages: &mut (impl futures::Stream<Item = String> + Unpin), wanted: &str) {
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = messages.next().await {
            if message == wanted {
                return;
            }
        }
    });
    found.await.unwrap_or_else(|_| panic!("`{wanted}` was not announced"));
}

#[tokio::test]
async fn writes_that_may_unbind_are_announced_and_others_are_not() {
    let mut messages = Box::pin(listen().await);
    let app = TestApp::spawn().await;
    let (a, b) = (app.create_user("A").await, app.create_user("B").await);
    let profile = app.create_profile(&[&a, &b]).await;
    let other = app.create_profile(&[&b]).await;

    let (status, _) = app.put(&format!("/profiles/{}", id(&profile)), json!({ "users": [a["id"]] })).await;
    assert_eq!(status, StatusCode::OK);
    heard(&mut messages, &format!("left {} {}", id(&b), id(&profile))).await;
    assert_eq!(app.delete(&format!("/users/{}", id(&a))).await.0, StatusCode::NO_CONTENT);
    heard(&mut messages, &format!("user {}", id(&a))).await;
    assert_eq!(app.delete(&format!("/profiles/{}", id(&other))).await.0, StatusCode::NO_CONTENT);
    heard(&mut messages, &format!("profile {}", id(&other))).await;

    // Creates, renames and replaces that only add unbind nobody: nothing about them is
    // announced.
    let c = app.create_user("C").await;
    app.put(&format!("/users/{}", id(&c)), json!({ "name": "C2" })).await;
    let created = app.create_profile(&[&c]).await;
    app.put(&format!("/profiles/{}", id(&created)), json!({ "users": [c["id"], b["id"]] })).await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(message) = messages.next().await {
            assert!(!message.contains(id(&c)) && !message.contains(id(&created)), "announced: {message}");
        }
    });
    let _ = quiet.await;
}

#[tokio::test]
async fn a_replace_that_takes_out_many_users_announces_the_profile() {
    let mut messages = Box::pin(listen().await);
    let app = TestApp::spawn().await;
    let many: Vec<String> = (0..100).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let (status, profile) = app.post("/profiles", json!({ "users": many })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app.put(&format!("/profiles/{}", id(&profile)), json!({ "users": [many[0]] })).await;
    assert_eq!(status, StatusCode::OK);
    // One message for the profile, not 99 for its pairs.
    heard(&mut messages, &format!("profile {}", id(&profile))).await;
}

#[tokio::test]
async fn dropping_every_profile_is_announced_as_all() {
    let mut messages = Box::pin(listen().await);
    let app = TestApp::spawn_in("kubescaler_test_announce_all").await;
    assert_eq!(app.delete("/profiles").await.0, StatusCode::NO_CONTENT);
    heard(&mut messages, "all").await;
}

#[tokio::test]
async fn base_writes_while_redis_is_away_and_counts_what_it_could_not_announce() {
    let nodes = kubescaler_testkit::require_cassandra().await;
    let mut config = crate::helpers::config(nodes, crate::helpers::SHARED_KEYSPACE);
    config.redis.urls = vec![format!("redis://127.0.0.1:{}", kubescaler_testkit::free_port())];
    let app = TestApp::start(config).await;
    app.wait_ready(Duration::from_secs(60)).await;
    let user = app.create_user("Alone").await;
    let profile = app.create_profile(&[&user]).await;
    let (status, _) = app.put(&format!("/profiles/{}", id(&profile)), json!({ "users": [] })).await;
    assert_eq!(status, StatusCode::OK, "the write does not wait for Redis");
    let lost = r#"kubescaler_base_binding_changes_total{result="lost"} 1"#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
        if metrics.contains(lost) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not counted as lost:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
