use kubescaler_core::{ProfileId, UserId, keys};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn launch(redis: &RedisServer, user: &str, profile: &str) {
    let key = keys::launched(UserId::parse(user).unwrap(), ProfileId::parse(profile).unwrap());
    let reply: String = redis.command(&["SET", &key, "1", "PX", "60000"]).await.unwrap();
    assert_eq!(reply, "OK");
}

fn mgets_and_gets(calls: &std::collections::HashMap<String, u64>) -> (u64, u64) {
    (calls.get("mget").copied().unwrap_or(0), calls.get("get").copied().unwrap_or(0))
}

#[tokio::test]
async fn login_lists_exactly_the_launched_profiles_with_one_mget() {
    let redis = RedisServer::start().await;
    let base = spawn_base(SHARED_KEYSPACE).await;
    let main = spawn_main(main_config(&base.base_url, vec![redis.url()])).await;
    main.wait_ready(std::time::Duration::from_secs(30)).await;

    let user = create_user(&base, "Many profiles").await;
    let few_user = create_user(&base, "Few profiles").await;
    let mut profiles = Vec::new();
    for _ in 0..50 {
        profiles.push(create_profile(&base, &[&user]).await);
    }
    let few: Vec<Value> =
        vec![create_profile(&base, &[&few_user]).await, create_profile(&base, &[&few_user]).await];
    // Every fifth profile is streaming; one marker belongs to another user.
    let mut expected: Vec<String> = Vec::new();
    for profile in profiles.iter().step_by(5) {
        launch(&redis, id(&user), id(profile)).await;
        expected.push(id(profile).to_owned());
    }
    launch(&redis, id(&few_user), id(&profiles[1])).await;
    launch(&redis, id(&few_user), id(&few[0])).await;
    expected.sort();

    let before = mgets_and_gets(&redis.command_calls().await);
    let (status, launched) = main.get(&format!("/login/{}", id(&user))).await;
    let after_many = mgets_and_gets(&redis.command_calls().await);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(launched, json!(expected));
    assert_eq!(launched.as_array().unwrap().len(), 10);

    let (status, launched) = main.get(&format!("/main/login/{}", id(&few_user))).await;
    let after_few = mgets_and_gets(&redis.command_calls().await);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(launched, json!([id(&few[0])]));

    let per_request = |a: (u64, u64), b: (u64, u64)| (b.0 - a.0, b.1 - a.1);
    assert_eq!(per_request(before, after_many), (1, 0), "50 profiles: one MGET, no GET");
    assert_eq!(per_request(after_many, after_few), (1, 0), "2 profiles: the same one MGET");
}

#[tokio::test]
async fn login_of_a_user_without_profiles_is_empty_and_asks_redis_nothing() {
    let redis = RedisServer::start().await;
    let base = spawn_base(SHARED_KEYSPACE).await;
    let main = spawn_main(main_config(&base.base_url, vec![redis.url()])).await;
    main.wait_ready(std::time::Duration::from_secs(30)).await;
    let before = mgets_and_gets(&redis.command_calls().await);
    let (status, body) = main.get(&format!("/login/{}", uuid::Uuid::new_v4())).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
    assert_eq!(mgets_and_gets(&redis.command_calls().await), before);
}

#[tokio::test]
async fn login_needs_a_valid_user_id() {
    let (_base, main) = spawn_suite(SHARED_KEYSPACE).await;
    for path in ["/login/42", "/main/login/not-a-uuid"] {
        let (status, error) = main.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error_code(&error), "invalid_id");
    }
}

#[tokio::test]
async fn markers_count_when_a_quorum_of_instances_answers() {
    let (mut one, two, three) =
        (RedisServer::start().await, RedisServer::start().await, RedisServer::start().await);
    let base = spawn_base(SHARED_KEYSPACE).await;
    let main = spawn_main(main_config(&base.base_url, vec![one.url(), two.url(), three.url()])).await;
    main.wait_ready(std::time::Duration::from_secs(30)).await;
    let user = create_user(&base, "Quorum").await;
    let (p1, p2) = (create_profile(&base, &[&user]).await, create_profile(&base, &[&user]).await);
    // Markers are written where stream holds the lock: a majority, not necessarily all.
    launch(&two, id(&user), id(&p1)).await;
    launch(&three, id(&user), id(&p1)).await;
    launch(&three, id(&user), id(&p2)).await;

    let mut both = vec![id(&p1).to_owned(), id(&p2).to_owned()];
    both.sort();
    assert_eq!(main.get(&format!("/login/{}", id(&user))).await.1, json!(both));

    one.stop().await;
    assert_eq!(main.get(&format!("/login/{}", id(&user))).await.1, json!(both), "2 of 3 still answer");
}
