use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn listings_at_the_root_and_under_main() {
    let (base, main) = spawn_suite(SHARED_KEYSPACE).await;
    let user = create_user(&base, "Listed").await;
    let profile = create_profile(&base, &[&user]).await;
    for prefix in ["", "/main"] {
        let (status, users) = main.get(&format!("{prefix}/users")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(users.as_array().unwrap().contains(&user), "{prefix}/users");
        let (status, profiles) = main.get(&format!("{prefix}/profiles")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(profiles.as_array().unwrap().contains(&profile), "{prefix}/profiles");
    }
}

#[tokio::test]
async fn agent_page_redirect() {
    let (_base, main) = spawn_suite(SHARED_KEYSPACE).await;
    let (user, profile) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for prefix in ["", "/main"] {
        let response = main.client.get(main.url(&format!("{prefix}/{user}/{profile}"))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(response.headers()["location"], format!("/index/{user}/{profile}").as_str());
    }
    let (status, error) = main.get(&format!("/{user}/nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&error), "invalid_id");
}

#[tokio::test]
async fn operational_endpoints() {
    let (_base, main) = spawn_suite(SHARED_KEYSPACE).await;
    assert_eq!(main.get("/livez").await.0, StatusCode::OK);
    assert_eq!(main.get("/health").await.0, StatusCode::OK);
    let (status, ready) = main.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["checks"], json!({ "base": "ok", "redis": "ok" }));
    main.get("/main/users").await;
    let text = main.client.get(main.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/main/users",service="main",status="200"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn two_instances_suggest_the_same_users() {
    let (base, first) = spawn_suite("kubescaler_test_main_suggested").await;
    let redis = require_redis().await;
    let second = spawn_main(main_config(&base.base_url, vec![redis])).await;
    second.wait_ready(Duration::from_secs(30)).await;
    let (shared, single) = (create_user(&base, "In two").await, create_user(&base, "In one").await);
    create_profile(&base, &[&shared, &single]).await;
    create_profile(&base, &[&shared]).await;

    let (status, from_first) = first.get("/suggested").await;
    assert_eq!(status, StatusCode::OK);
    let (_, from_second) = second.get("/main/suggested").await;
    assert_eq!(from_first, from_second);
    let suggested: BTreeSet<&str> =
        from_first.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(suggested.contains(id(&shared)));
    assert!(!suggested.contains(id(&single)));
}
