use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, error_code, id};

const UNKNOWN: &str = "00000000-0000-4000-8000-00000000dead";

#[tokio::test]
async fn create_get_list_user() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Ada Lovelace").await;
    assert_eq!(user["name"], "Ada Lovelace");
    let uuid = uuid::Uuid::parse_str(id(&user)).unwrap();
    assert_eq!(uuid.get_version_num(), 4, "ids are made by the service");

    let (status, got) = app.get(&format!("/users/{}", id(&user))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, user);

    let (status, all) = app.get("/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(all.as_array().unwrap().contains(&user));
}

#[tokio::test]
async fn names_at_the_limit_are_kept_exactly() {
    let app = TestApp::spawn().await;
    let name = "ü".repeat(256);
    let user = app.create_user(&name).await;
    let (_, got) = app.get(&format!("/users/{}", id(&user))).await;
    assert_eq!(got["name"], name.as_str());
}

#[tokio::test]
async fn create_refuses_bad_bodies_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let (_, before) = app.get("/users").await;
    let cases = [
        (json!({ "name": "" }), "blank"),
        (json!({ "name": "x".repeat(257) }), "at most 256"),
        (json!({ "name": 5 }), "invalid type"),
        (json!({}), "missing field `name`"),
        (json!({ "name": "a", "nmae": "a" }), "unknown field `nmae`"),
        (json!({ "id": "x", "name": "a" }), "not a valid user id"),
    ];
    for (body, hint) in cases {
        let (status, error) = app.post("/users", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert_eq!(error_code(&error), "invalid_body");
        assert!(error["message"].as_str().unwrap().contains(hint), "{body}: {error}");
    }
    let (status, error) = app.post_raw("/users", Some("application/json"), "{\"name\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&error), "malformed_json");
    let (status, error) = app.post_raw("/users", None, "{\"name\": \"a\"}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(&error), "unsupported_media_type");
    let huge = format!("{{\"name\": \"{}\"}}", "a".repeat(1024 * 1024 + 1));
    let (status, error) = app.post_raw("/users", Some("application/json"), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&error), "body_too_large");

    let (_, after) = app.get("/users").await;
    // Other tests add users concurrently; none of these bodies may have become one.
    let names: Vec<_> = after
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| !before.as_array().unwrap().contains(u))
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!names.iter().any(|n| n == "a" || n.is_empty() || n.len() > 256), "{names:?}");
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let app = TestApp::spawn().await;
    let (status, error) = app.get(&format!("/users/{UNKNOWN}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&error), "not_found");
    for path in ["/users/42", "/users/not-a-uuid", "/users/00000000000040008000000000000001"] {
        for (status, error) in
            [app.get(path).await, app.put(path, json!({ "name": "a" })).await, app.delete(path).await]
        {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {error}");
            assert_eq!(error_code(&error), "invalid_id");
            assert!(error["message"].as_str().unwrap().contains("not a valid user id"), "{error}");
        }
    }
}

#[tokio::test]
async fn replace_user() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Before").await;
    let path = format!("/users/{}", id(&user));
    let (status, replaced) = app.put(&path, json!({ "name": "After" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replaced, json!({ "id": user["id"], "name": "After" }));
    assert_eq!(app.get(&path).await.1, replaced);

    let (status, error) = app.put(&path, json!({ "name": "" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&error), "invalid_body");
    assert_eq!(app.get(&path).await.1["name"], "After", "a refused replace changes nothing");
}

/// What a client that sends whole objects (a generated or Feign client) posts: `"id": null`.
#[tokio::test]
async fn create_takes_a_null_id_and_refuses_a_given_one() {
    let app = TestApp::spawn().await;
    let (status, user) = app.post("/users", json!({ "id": null, "name": "Null id" })).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["name"], "Null id");
    assert_eq!(app.get(&format!("/users/{}", id(&user))).await.1, user);

    let chosen = uuid::Uuid::new_v4().to_string();
    let (status, error) = app.post("/users", json!({ "id": chosen, "name": "Chosen id" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error_code(&error), "id_not_allowed");
    assert!(error["message"].as_str().unwrap().contains("assigned by the service"), "{error}");
    assert_eq!(app.get(&format!("/users/{chosen}")).await.0, StatusCode::NOT_FOUND, "nothing created");
}

#[tokio::test]
async fn replace_takes_its_own_id_and_refuses_another() {
    let app = TestApp::spawn().await;
    let user = app.create_user("Before").await;
    let path = format!("/users/{}", id(&user));
    for (body, name) in [
        (json!({ "id": user["id"], "name": "Same id" }), "Same id"),
        (json!({ "id": null, "name": "Null id" }), "Null id"),
    ] {
        let (status, replaced) = app.put(&path, body).await;
        assert_eq!(status, StatusCode::OK, "{replaced}");
        assert_eq!(replaced, json!({ "id": user["id"], "name": name }));
    }

    let other = uuid::Uuid::new_v4().to_string();
    let (status, error) = app.put(&path, json!({ "id": other, "name": "Elsewhere" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error_code(&error), "id_mismatch");
    assert!(error["message"].as_str().unwrap().contains(&other), "{error}");
    assert_eq!(app.get(&path).await.1["name"], "Null id", "a refused replace changes nothing");
    assert_eq!(app.get(&format!("/users/{other}")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn replacing_an_unknown_user_is_404_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let path = format!("/users/{}", uuid::Uuid::new_v4());
    let (status, error) = app.put(&path, json!({ "name": "Ghost" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&error), "not_found");
    assert_eq!(app.get(&path).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_user_is_idempotent_and_leaves_its_profiles() {
    let app = TestApp::spawn().await;
    let gone = app.create_user("Leaving").await;
    let stays = app.create_user("Staying").await;
    let profile = app.create_profile(&[&gone, &stays]).await;

    let path = format!("/users/{}", id(&gone));
    let (status, body) = app.delete(&path).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, serde_json::Value::Null));
    assert_eq!(app.get(&path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&path).await.0, StatusCode::NO_CONTENT, "deleting twice is fine");

    let (_, profile) = app.get(&format!("/profiles/{}", id(&profile))).await;
    assert_eq!(profile["users"], json!([stays["id"]]), "a deleted user leaves its profiles");
    let (_, of_gone) = app.get(&format!("/profiles/user/{}", id(&gone))).await;
    assert_eq!(of_gone, json!([]));
}

#[tokio::test]
async fn delete_all_users_empties_the_table() {
    let app = TestApp::spawn_in("kubescaler_test_drop_users").await;
    app.create_user("One").await;
    app.create_user("Two").await;
    let (status, _) = app.delete("/users").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/users").await.1, json!([]));
}
