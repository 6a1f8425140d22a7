use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, id};

fn sorted(mut ids: Vec<Value>) -> Vec<Value> {
    ids.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    ids
}

#[tokio::test]
async fn create_get_list_profile() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.create_user("A").await, app.create_user("B").await);
    let (status, profile) = app.post("/profiles", json!({ "users": [a["id"], b["id"], a["id"]] })).await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    assert_eq!(
        profile["users"].as_array().unwrap().clone(),
        sorted(vec![a["id"].clone(), b["id"].clone()]),
        "users are a set, listed in id order"
    );
    let (status, got) = app.get(&format!("/profiles/{}", id(&profile))).await;
    assert_eq!((status, &got), (StatusCode::OK, &profile));
    let (_, all) = app.get("/profiles").await;
    assert!(all.as_array().unwrap().contains(&profile));
}

#[tokio::test]
async fn a_profile_may_be_empty() {
    let app = TestApp::spawn().await;
    let (status, profile) = app.post("/profiles", json!({ "users": [] })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, got) = app.get(&format!("/profiles/{}", id(&profile))).await;
    assert_eq!(got["users"], json!([]));
}

#[tokio::test]
async fn profile_limit_is_ten_thousand_users() {
    let app = TestApp::spawn().await;
    let users: Vec<String> = (0..10_000).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let (status, profile) = app.post("/profiles", json!({ "users": users })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, got) = app.get(&format!("/profiles/{}", id(&profile))).await;
    assert_eq!(got["users"].as_array().unwrap().len(), 10_000);

    let mut too_many = users.clone();
    too_many.push(uuid::Uuid::new_v4().to_string());
    let (status, error) = app.post("/profiles", json!({ "users": too_many })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error["message"].as_str().unwrap().contains("at most 10000"), "{error}");
    let (status, _) = app.put(&format!("/profiles/{}", id(&profile)), json!({ "users": too_many })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, got) = app.get(&format!("/profiles/{}", id(&profile))).await;
    assert_eq!(got["users"].as_array().unwrap().len(), 10_000, "a refused replace changes nothing");

    // The limit counts the list as sent, as the published `maxItems` does: 10,001 copies of one
    // id are refused too (found by the API fuzzer; they used to collapse to one user).
    let copies = vec![users[0].clone(); 10_001];
    let (status, error) = app.post("/profiles", json!({ "users": copies })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(error["message"].as_str().unwrap().contains("got 10001"), "{error}");
}

#[tokio::test]
async fn create_refuses_bad_bodies() {
    let app = TestApp::spawn().await;
    for (body, hint) in [
        (json!({ "users": ["nope"] }), "not a valid user id"),
        (json!({ "users": "x" }), "invalid type"),
        (json!({ "users": [1] }), "invalid type"),
        (json!({}), "missing field `users`"),
        (json!({ "users": [], "id": "x" }), "not a valid profile id"),
        (json!({ "users": [], "owner": 1 }), "unknown field `owner`"),
    ] {
        let (status, error) = app.post("/profiles", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_code(&error), "invalid_body");
        assert!(error["message"].as_str().unwrap().contains(hint), "{body}: {error}");
    }
    let (status, error) = app.post_raw("/profiles", Some("application/json"), "{\"users\": [").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&error), "malformed_json");
}

#[tokio::test]
async fn replace_profile_moves_the_index() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.create_user("A").await, app.create_user("B").await);
    let profile = app.create_profile(&[&a]).await;
    let path = format!("/profiles/{}", id(&profile));
    let (status, replaced) = app.put(&path, json!({ "users": [b["id"]] })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replaced, json!({ "id": profile["id"], "users": [b["id"]] }));
    assert_eq!(app.get(&format!("/profiles/user/{}", id(&a))).await.1, json!([]));
    assert_eq!(app.get(&format!("/profiles/user/{}", id(&b))).await.1, json!([replaced]));
}

/// What a client that sends whole objects (a generated or Feign client) posts: `"id": null`.
#[tokio::test]
async fn create_takes_a_null_id_and_refuses_a_given_one() {
    let app = TestApp::spawn().await;
    let a = app.create_user("A").await;
    let (status, profile) = app.post("/profiles", json!({ "id": null, "users": [a["id"]] })).await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    assert_eq!(profile["users"], json!([a["id"]]));
    assert_eq!(app.get(&format!("/profiles/{}", id(&profile))).await.1, profile);

    let chosen = uuid::Uuid::new_v4().to_string();
    let (status, error) = app.post("/profiles", json!({ "id": chosen, "users": [a["id"]] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error_code(&error), "id_not_allowed");
    assert_eq!(app.get(&format!("/profiles/{chosen}")).await.0, StatusCode::NOT_FOUND, "nothing created");
    assert_eq!(app.get(&format!("/profiles/user/{}", id(&a))).await.1, json!([profile]));
}

#[tokio::test]
async fn replace_takes_its_own_id_and_refuses_another() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.create_user("A").await, app.create_user("B").await);
    let profile = app.create_profile(&[&a]).await;
    let path = format!("/profiles/{}", id(&profile));
    let (status, replaced) = app.put(&path, json!({ "id": profile["id"], "users": [b["id"]] })).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced, json!({ "id": profile["id"], "users": [b["id"]] }));
    let (status, replaced) = app.put(&path, json!({ "id": null, "users": [a["id"]] })).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");

    let other = uuid::Uuid::new_v4().to_string();
    let (status, error) = app.put(&path, json!({ "id": other, "users": [b["id"]] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error_code(&error), "id_mismatch");
    assert_eq!(app.get(&path).await.1, replaced, "a refused replace changes nothing");
    assert_eq!(app.get(&format!("/profiles/{other}")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_profile_is_404_everywhere_and_put_creates_nothing() {
    let app = TestApp::spawn().await;
    let path = format!("/profiles/{}", uuid::Uuid::new_v4());
    for (status, error) in [app.get(&path).await, app.put(&path, json!({ "users": [] })).await] {
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&error), "not_found");
    }
    assert_eq!(app.get(&path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&path).await.0, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn malformed_profile_ids_are_400() {
    let app = TestApp::spawn().await;
    for (status, error) in [
        app.get("/profiles/xyz").await,
        app.put("/profiles/xyz", json!({ "users": [] })).await,
        app.delete("/profiles/xyz").await,
        app.get("/profiles/user/xyz").await,
        app.get(&format!("/profiles/xyz/users/{}", uuid::Uuid::new_v4())).await,
        app.get(&format!("/profiles/{}/users/xyz", uuid::Uuid::new_v4())).await,
    ] {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert_eq!(error_code(&error), "invalid_id");
    }
}

#[tokio::test]
async fn delete_profile() {
    let app = TestApp::spawn().await;
    let a = app.create_user("A").await;
    let profile = app.create_profile(&[&a]).await;
    let path = format!("/profiles/{}", id(&profile));
    assert_eq!(app.delete(&path).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/profiles/user/{}", id(&a))).await.1, json!([]));
    assert_eq!(app.get(&format!("/users/{}", id(&a))).await.0, StatusCode::OK, "users outlive profiles");
}

#[tokio::test]
async fn profiles_of_a_user_are_exactly_those_holding_it() {
    let app = TestApp::spawn().await;
    let (me, other) = (app.create_user("Me").await, app.create_user("Other").await);
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(app.create_profile(&[&me, &other]).await);
    }
    mine.push(app.create_profile(&[&me]).await);
    app.create_profile(&[&other]).await;
    app.create_profile(&[]).await;

    let (status, found) = app.get(&format!("/profiles/user/{}", id(&me))).await;
    assert_eq!(status, StatusCode::OK);
    let mut expected = mine.clone();
    expected.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    assert_eq!(found, json!(expected));

    let (status, none) = app.get(&format!("/profiles/user/{}", uuid::Uuid::new_v4())).await;
    assert_eq!((status, none), (StatusCode::OK, json!([])), "an unknown user has no profiles");
}

#[tokio::test]
async fn binding_check() {
    let app = TestApp::spawn().await;
    let (inside, outside) = (app.create_user("In").await, app.create_user("Out").await);
    let profile = app.create_profile(&[&inside]).await;
    let bound = |user: &Value| format!("/profiles/{}/users/{}", id(&profile), id(user));

    let (status, body) = app.get(&bound(&inside)).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));

    let (status, error) = app.get(&bound(&outside)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&error), "not_bound");

    let (status, error) = app.get(&format!("/profiles/{}/users/{}", uuid::Uuid::new_v4(), id(&inside))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&error), "not_found");
}

#[tokio::test]
async fn delete_all_profiles_empties_the_table_but_keeps_users() {
    let app = TestApp::spawn_in("kubescaler_test_drop_profiles").await;
    let a = app.create_user("A").await;
    app.create_profile(&[&a]).await;
    assert_eq!(app.delete("/profiles").await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/profiles").await.1, json!([]));
    assert_eq!(app.get(&format!("/profiles/user/{}", id(&a))).await.1, json!([]));
    assert_eq!(app.get(&format!("/users/{}", id(&a))).await.0, StatusCode::OK);
}
