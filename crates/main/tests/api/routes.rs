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
    // Any other method is 405 and says which are allowed, as every 405 must (RFC 9110).
    for method in [reqwest::Method::POST, reqwest::Method::TRACE, reqwest::Method::DELETE] {
        let response = main
            .client
            .request(method.clone(), main.url(&format!("/{user}/{profile}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(response.headers()["allow"], "GET,HEAD", "{method}");
    }
}

/// `/{userId}/{profileId}` takes every path of two segments; only two ids are the agent page.
/// Anything else is no route of main's, said as such (not "`actuator` is not a valid user id").
#[tokio::test]
async fn paths_main_does_not_serve_are_404() {
    let (_base, main) = spawn_suite(SHARED_KEYSPACE).await;
    let user = uuid::Uuid::new_v4();
    let unserved = ["/actuator/health", &format!("/{user}/nope"), "/users/x", "/a/b/c", "/nope"];
    let paths = unserved.iter().flat_map(|path| [path.to_string(), format!("/main{path}")]);
    for path in paths.chain(["/main/main/users".to_owned()]) {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let (status, error) = main.call(method.clone(), &path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {error}");
            assert_eq!(error_code(&error), "no_route");
            assert_eq!(error["message"], format!("no route for {method} {path}"));
        }
    }
    let (status, error) = main.get("/login/nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a parameter of a real route is still checked");
    assert_eq!(error_code(&error), "invalid_id");
}

/// `GET /` says which replica answered; `/main` and `/main/` are the root
/// too, as they are through the Ingress.
#[tokio::test]
async fn root_answers_the_host_name() {
    let (_base, main) = spawn_suite(SHARED_KEYSPACE).await;
    for path in ["/", "/main", "/main/"] {
        let response = main.client.get(main.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        assert_eq!(response.text().await.unwrap(), "main-test", "{path}");
    }
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
