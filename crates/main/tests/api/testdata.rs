use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn ids(values: &Value) -> BTreeSet<String> {
    values.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn fixed_sizes_give_the_promised_shape() {
    let (base, main) = spawn_suite("kubescaler_test_main_shape").await;
    assert_eq!(main.delete("/testdata").await.0, StatusCode::NO_CONTENT);
    assert_eq!(main.get("/testdata").await.1["state"], "idle");

    let (status, started) =
        main.post("/main/testdata?profiles=6&users_per_profile=4&seed=42", json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["state"], "running");
    assert_eq!(started["seed"], 42);
    let progress = wait_generation(&main, Duration::from_secs(60)).await;
    assert_eq!(progress["state"], "done", "{progress}");
    assert_eq!(progress["profiles_created"], 6);
    assert_eq!(progress["users_created"], 24);
    assert_eq!(progress["users_failed"], 0);
    assert_eq!(progress["base_requests"], 30, "one request per user and per profile");

    let (_, users) = base.get("/users").await;
    let (_, profiles) = base.get("/profiles").await;
    assert_eq!(users.as_array().unwrap().len(), 24);
    let profiles = profiles.as_array().unwrap();
    assert_eq!(profiles.len(), 6);
    assert!(
        users.as_array().unwrap().iter().all(|u| u["name"].as_str().unwrap().contains(' ')),
        "human names"
    );

    // The shared users are those in every profile; every other user is in exactly one.
    let mut memberships: HashMap<String, usize> = HashMap::new();
    for profile in profiles {
        for user in ids(&profile["users"]) {
            *memberships.entry(user).or_default() += 1;
        }
    }
    let shared: BTreeSet<String> =
        memberships.iter().filter(|(_, n)| **n == 6).map(|(u, _)| u.clone()).collect();
    assert_eq!(shared.len(), 4, "{memberships:?}");
    assert!(memberships.values().all(|n| *n == 1 || *n == 6));
    let sizes: Vec<usize> = profiles.iter().map(|p| p["users"].as_array().unwrap().len()).collect();
    assert_eq!(sizes.iter().filter(|n| **n == 4).count(), 1, "the first profile: its 4 users only");
    assert_eq!(sizes.iter().filter(|n| **n == 8).count(), 5, "later ones: 4 own + 4 shared");

    let (status, suggested) = main.get("/suggested").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&suggested), shared, "suggested = the shared users");

    assert_eq!(main.delete("/main/testdata").await.0, StatusCode::NO_CONTENT);
    assert_eq!(base.get("/users").await.1, json!([]));
    assert_eq!(base.get("/profiles").await.1, json!([]));
}

#[tokio::test]
async fn one_generation_at_a_time() {
    let (_base, main) = spawn_suite("kubescaler_test_main_busy").await;
    let (status, _) = main.post("/testdata?profiles=100&users_per_profile=100", json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, error) = main.post("/testdata?profiles=2&users_per_profile=2", json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&error), "generation_running");
    let (status, error) = main.delete("/testdata").await;
    assert_eq!(status, StatusCode::CONFLICT, "no drop under a running generation");
    assert_eq!(error_code(&error), "generation_running");
    let progress = wait_generation(&main, Duration::from_secs(120)).await;
    assert_eq!(progress["state"], "done", "{progress}");
    assert_eq!(progress["users_created"], 10_000);
    assert_eq!(main.delete("/testdata").await.0, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn sizes_are_checked() {
    let (_base, main) = spawn_suite(SHARED_KEYSPACE).await;
    for (query, hint) in [
        ("profiles=1", "between 2 and 100"),
        ("profiles=101", "between 2 and 100"),
        ("users_per_profile=0", "between 2 and 100"),
        ("users_per_profile=-3", "users_per_profile"),
        ("profiles=ten", "profiles"),
        ("seed=x", "seed"),
        ("profile=3", "unknown field `profile`"),
    ] {
        let (status, error) = main.post(&format!("/testdata?{query}"), json!(null)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {error}");
        assert_eq!(error_code(&error), "invalid_parameter");
        assert!(error["message"].as_str().unwrap().contains(hint), "{query}: {error}");
    }
    assert_ne!(main.get("/testdata").await.1["state"], "running", "nothing started");
}

#[tokio::test]
async fn admin_token_guards_changes() {
    let redis = require_redis().await;
    let base = spawn_base("kubescaler_test_main_admin").await;
    let mut config = main_config(&base.base_url, vec![redis]);
    config.admin_token = Some("s3cret-token".into());
    let main = spawn_main(config).await;
    main.wait_ready(Duration::from_secs(30)).await;

    for (method, path) in [
        (reqwest::Method::POST, "/testdata?profiles=2&users_per_profile=2"),
        (reqwest::Method::DELETE, "/main/testdata"),
    ] {
        for auth in [None, Some("Bearer wrong"), Some("s3cret-token"), Some("Bearer s3cret-token-and-more")] {
            let mut request = main.client.request(method.clone(), main.url(path));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path} with {auth:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: Value = response.json().await.unwrap();
            assert_eq!(error_code(&body), "unauthorized");
        }
    }
    assert_eq!(main.get("/testdata").await.0, StatusCode::OK, "progress stays readable");

    let authorized = |method: reqwest::Method, path: &str| {
        main.client.request(method, main.url(path)).header("authorization", "Bearer s3cret-token")
    };
    let response =
        authorized(reqwest::Method::POST, "/testdata?profiles=2&users_per_profile=2").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(wait_generation(&main, Duration::from_secs(30)).await["state"], "done");
    let response = authorized(reqwest::Method::DELETE, "/testdata").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}
