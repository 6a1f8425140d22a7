//! Who gets a stream: validation, binding, capacity and the lock.

use std::time::Duration;

use kubescaler_core::{ProfileId, UserId, keys};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn lock_keys(redis: &RedisServer, user: &str, profile: &str) -> (bool, bool) {
    let (u, p) = (UserId::parse(user).unwrap(), ProfileId::parse(profile).unwrap());
    let lock: i64 = redis.command(&["EXISTS", &keys::lock(u, p)]).await.unwrap();
    let marker: i64 = redis.command(&["EXISTS", &keys::launched(u, p)]).await.unwrap();
    (lock == 1, marker == 1)
}

#[tokio::test]
async fn a_bound_pair_streams_messages() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let stream = spawn_stream(stream_config(&base, vec![redis.url()])).await;
    let (user, profile) = pair(&base).await;

    let mut sse = Sse::open(&stream, &user, &profile).await.unwrap();
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["cache-control"], "no-cache");
    assert_eq!(sse.headers["x-accel-buffering"], "no");
    let first = sse.next(Duration::from_secs(2)).await.unwrap();
    let second = sse.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(first.event, "message");
    assert_eq!(first.data["host"], "stream-test");
    assert_eq!(first.data["message"].as_str().unwrap().len(), 2_000);
    assert_eq!(first.id, first.data["seq"].as_u64(), "the SSE id is the seq");
    assert!(second.id > first.id);
    assert!(first.data["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lock_keys(&redis, &user, &profile).await, (true, true), "lock and launched marker held");
    assert_eq!(metric(&stream, "kubescaler_stream_active_connections").await, 1.0);
}

#[tokio::test]
async fn refusals_lock_nothing_and_count_nothing() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let stream = spawn_stream(stream_config(&base, vec![redis.url()])).await;
    let (user, profile) = pair(&base).await;
    let (stranger, _) = pair(&base).await;
    let unknown = uuid::Uuid::new_v4().to_string();

    for (u, p, status, code) in [
        ("nope", profile.as_str(), StatusCode::BAD_REQUEST, "invalid_id"),
        (user.as_str(), "nope", StatusCode::BAD_REQUEST, "invalid_id"),
        (user.as_str(), unknown.as_str(), StatusCode::NOT_FOUND, "not_found"),
        (stranger.as_str(), profile.as_str(), StatusCode::FORBIDDEN, "not_bound"),
    ] {
        let (got, _, body) = Sse::open(&stream, u, p).await.err().unwrap();
        assert_eq!((got, error_code(&body)), (status, code), "{u} {p}: {body}");
    }
    assert_eq!(lock_keys(&redis, &stranger, &profile).await, (false, false));
    assert_eq!(lock_keys(&redis, &user, &unknown).await, (false, false));
    // Nothing but the instance's own entry in the fleet.
    let mut keys: Vec<String> = redis.command(&["KEYS", "kubescaler:*"]).await.unwrap();
    keys.sort();
    assert_eq!(keys, ["kubescaler:instance:stream-test", "kubescaler:instances"]);
    assert_eq!(metric(&stream, "kubescaler_stream_active_connections").await, 0.0);
}

#[tokio::test]
async fn one_stream_per_pair_across_two_instances() {
    let redis = require_redis().await;
    let base = spawn_base().await;
    let one = spawn_stream(stream_config(&base, vec![redis.clone()])).await;
    let two = spawn_stream(stream_config(&base, vec![redis])).await;
    let (user, profile) = pair(&base).await;

    let attempts = (0..50).map(|i| {
        let target = if i % 2 == 0 { one.http.clone() } else { two.http.clone() };
        let (user, profile) = (user.clone(), profile.clone());
        async move { Sse::open(&target, &user, &profile).await }
    });
    let results = futures::future::join_all(attempts).await;
    let opened: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(opened.len(), 1, "exactly one stream");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        let (status, headers, body) = refused;
        assert_eq!(*status, StatusCode::CONFLICT, "{body}");
        assert_eq!(error_code(body), "locked");
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=3).contains(&retry), "Retry-After {retry} within the 3 s TTL");
    }
    let active = metric(&one, "kubescaler_stream_active_connections").await
        + metric(&two, "kubescaler_stream_active_connections").await;
    assert_eq!(active, 1.0);
}

#[tokio::test]
async fn quorum_of_three_redis_with_one_down() {
    let mut redis = [RedisServer::start().await, RedisServer::start().await, RedisServer::start().await];
    let base = spawn_base().await;
    let urls: Vec<String> = redis.iter().map(RedisServer::url).collect();
    let one = spawn_stream(stream_config(&base, urls.clone())).await;
    let two = spawn_stream(stream_config(&base, urls)).await;
    redis[2].stop().await;
    let (user, profile) = pair(&base).await;

    let attempts = (0..20).map(|i| {
        let target = if i % 2 == 0 { one.http.clone() } else { two.http.clone() };
        let (user, profile) = (user.clone(), profile.clone());
        async move { Sse::open(&target, &user, &profile).await }
    });
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|(s, _, _)| *s == StatusCode::CONFLICT));

    // Below the quorum: unavailable, not "locked".
    redis[1].stop().await;
    let (other_user, other_profile) = pair(&base).await;
    let (status, _, body) = Sse::open(&one, &other_user, &other_profile).await.err().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["dependency"], "redis");
}

#[tokio::test]
async fn max_connections_refuses_before_locking() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let mut config = stream_config(&base, vec![redis.url()]);
    config.max_connections = 2;
    let stream = spawn_stream(config).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let (u, p) = pair(&base).await;
        open.push(Sse::open(&stream, &u, &p).await.unwrap());
    }
    let (u, p) = pair(&base).await;
    let (status, headers, body) = Sse::open(&stream, &u, &p).await.err().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "too_many_streams");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(lock_keys(&redis, &u, &p).await, (false, false), "refused before any lock");
    assert_eq!(metric(&stream, "kubescaler_stream_active_connections").await, 2.0);
    drop(open.pop());
    wait_metric(&stream, "kubescaler_stream_active_connections", 1.0, Duration::from_secs(2)).await;
    let _third = Sse::open(&stream, &u, &p).await.unwrap();
}

#[tokio::test]
async fn pages_are_served() {
    let redis = require_redis().await;
    let base = spawn_base().await;
    let stream = spawn_stream(stream_config(&base, vec![redis])).await;
    let (user, profile) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let page = stream.client.get(stream.url(&format!("/index/{user}/{profile}"))).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("../../static/agent.js"), "relative URLs, no CDN");
    assert!(!html.contains("https://"), "nothing fetched from elsewhere");
    let js = stream.client.get(stream.url("/static/agent.js")).send().await.unwrap().text().await.unwrap();
    assert!(js.contains("../../stream/"), "the stream by relative URL");
    let usage = stream.client.get(stream.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(usage.contains("/index/{userId}/{profileId}"));
    assert_eq!(stream.get("/index/x/y").await.0, StatusCode::BAD_REQUEST);
    let _ = json!(null);
}

#[tokio::test]
async fn head_describes_the_stream_without_taking_its_lock() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let stream = spawn_stream(stream_config(&base, vec![redis.url()])).await;
    let (user, profile) = pair(&base).await;

    let head = stream.client.head(stream.url(&format!("/stream/{user}/{profile}"))).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-type"], "text/event-stream");
    assert_eq!(head.headers()["cache-control"], "no-cache");
    assert!(head.bytes().await.unwrap().is_empty(), "no body");
    assert_eq!(lock_keys(&redis, &user, &profile).await, (false, false), "no lock, no launched marker");
    assert_eq!(metric(&stream, "kubescaler_stream_active_connections").await, 0.0);

    let mut sse = Sse::open(&stream, &user, &profile).await.expect("a GET after the HEAD streams");
    assert!(sse.next(Duration::from_secs(2)).await.is_some());
    let invalid = stream.client.head(stream.url(&format!("/stream/nope/{profile}"))).send().await.unwrap();
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST, "ids are checked as for a GET");
}

#[tokio::test]
async fn ping_answers_the_host_name() {
    let redis = require_redis().await;
    let base = spawn_base().await;
    let stream = spawn_stream(stream_config(&base, vec![redis])).await;
    let ping = stream.client.get(stream.url("/ping")).send().await.unwrap();
    assert_eq!(ping.status(), StatusCode::OK);
    assert!(ping.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(ping.text().await.unwrap(), "stream-test");
}

/// The URLs a browser would load from the agent page at `page`: its script and its stream,
/// resolved against the page's `<base href>` when it has one.
async fn agent_page_urls(stream: &Http, page: &str) -> (reqwest::Url, reqwest::Url) {
    let page_url = reqwest::Url::parse(&stream.url(page)).unwrap();
    let response = stream.client.get(page_url.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{page}");
    let html = response.text().await.unwrap();
    let attribute = |tag: &str, name: &str| -> Option<String> {
        let at = html.find(tag)?;
        let rest = &html[at..];
        let value = &rest[rest.find(&format!("{name}=\""))? + name.len() + 2..];
        Some(value[..value.find('"')?].to_owned())
    };
    let base = match attribute("<base", "href") {
        Some(href) => page_url.join(&href).unwrap(),
        None => page_url,
    };
    let script = base.join(&attribute("<script", "src").expect("a script")).unwrap();
    // agent.js connects to `../../stream/{user}/{profile}`, relative to the same base.
    let segments: Vec<&str> = page.split('/').filter(|s| !s.is_empty()).collect();
    let stream_url = base.join(&format!("../../stream/{}/{}", segments[1], segments[2])).unwrap();
    (script, stream_url)
}

#[tokio::test]
async fn the_agent_page_works_with_and_without_a_trailing_slash() {
    let redis = require_redis().await;
    let base = spawn_base().await;
    let stream = spawn_stream(stream_config(&base, vec![redis])).await;
    let (user, profile) = pair(&base).await;
    let js = stream.client.get(stream.url("/static/agent.js")).send().await.unwrap().text().await.unwrap();
    assert!(js.contains("`../../stream/${user}/${profile}`"), "the stream URL the test resolves");

    for page in [format!("/index/{user}/{profile}"), format!("/index/{user}/{profile}/")] {
        let (script, stream_url) = agent_page_urls(&stream, &page).await;
        assert_eq!(script.path(), "/static/agent.js", "from {page}");
        assert_eq!(stream_url.path(), format!("/stream/{user}/{profile}"), "from {page}");
        let loaded = stream.client.get(script).send().await.unwrap();
        assert_eq!(loaded.status(), StatusCode::OK);
    }
    assert_eq!(stream.get("/index/x/y/").await.0, StatusCode::BAD_REQUEST);
}
