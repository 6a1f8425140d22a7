//! A pair that is no longer bound ends with `event: unbound` within a moment of the change,
//! because base announces it; a held stream costs base nothing while nothing changes; and an
//! announcement that never arrives is caught — at once when the subscription was lost, by the
//! sweep otherwise.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::time::Instant;

use crate::helpers::*;

/// Requests base answered on its binding routes (admissions and re-checks), from its metrics.
async fn binding_requests(base: &Http) -> u64 {
    let text = base.client.get(base.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| line.starts_with("http_requests_total{") && line.contains(r#"route="/bindings"#))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A profile of `users` new users, and their ids.
async fn profile_of(base: &Http, users: usize) -> (String, Vec<String>) {
    let mut ids = Vec::new();
    for i in 0..users {
        let (status, user) = base.post("/users", json!({ "name": format!("Member {i}") })).await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(user["id"].as_str().unwrap().to_owned());
    }
    let (status, profile) = base.post("/profiles", json!({ "users": ids })).await;
    assert_eq!(status, StatusCode::CREATED);
    (profile["id"].as_str().unwrap().to_owned(), ids)
}

/// The stream ends with `unbound`; how long after `since`.
async fn ends_unbound(sse: &mut Sse, since: Instant, within: Duration) -> Duration {
    let end = sse.next_control(within).await.expect("the stream must end");
    assert_eq!(end.event, "unbound", "{end:?}");
    since.elapsed()
}

async fn still_streaming(sse: &mut Sse) {
    let (messages, end) = sse.read_for(Duration::from_millis(300)).await;
    assert!(matches!(end, Read::Quiet) && messages > 0, "{messages} messages, then {end:?}");
}

#[tokio::test]
async fn a_change_ends_only_the_pairs_it_unbinds_within_a_second_and_nothing_is_asked_meanwhile() {
    let redis = RedisServer::start().await;
    let base = spawn_base_announcing(vec![redis.url()]).await;
    let stream = spawn_stream(stream_config(&base, vec![redis.url()])).await;
    wait_metric(&stream, "kubescaler_stream_binding_subscriptions", 1.0, Duration::from_secs(5)).await;
    let (p, members) = profile_of(&base, 3).await;
    let (q, loner) = profile_of(&base, 1).await;
    let mut on_p = Vec::new();
    for user in &members {
        on_p.push(Sse::open(&stream, user, &p).await.unwrap());
    }
    let mut on_q = Sse::open(&stream, &loner[0], &q).await.unwrap();

    // Twelve refreshes of four held streams and a ping of the subscription (every 5 s): not one
    // question to base.
    let asked = binding_requests(&base).await;
    tokio::time::sleep(REFRESH * 12 + Duration::from_millis(500)).await;
    assert_eq!(binding_requests(&base).await, asked, "held streams asked base about their bindings");

    let changed = Instant::now();
    let (status, _) = base.put(&format!("/profiles/{p}"), json!({ "users": members[1..] })).await;
    assert_eq!(status, StatusCode::OK);
    let took = ends_unbound(&mut on_p[0], changed, Duration::from_secs(1)).await;
    for sse in &mut on_p[1..] {
        still_streaming(sse).await;
    }
    still_streaming(&mut on_q).await;

    let changed = Instant::now();
    assert_eq!(base.delete(&format!("/users/{}", members[1])).await.0, StatusCode::NO_CONTENT);
    ends_unbound(&mut on_p[1], changed, Duration::from_secs(1)).await;
    let changed = Instant::now();
    assert_eq!(base.delete(&format!("/profiles/{q}")).await.0, StatusCode::NO_CONTENT);
    ends_unbound(&mut on_q, changed, Duration::from_secs(1)).await;
    still_streaming(&mut on_p[2]).await;
    wait_metric(&stream, "kubescaler_stream_active_connections", 1.0, Duration::from_secs(2)).await;
    eprintln!("unbound {took:?} after the change");
}

#[tokio::test]
async fn an_announcement_that_never_comes_is_caught_by_the_sweep() {
    // base announces on the shared Redis; this stream listens on its own.
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let mut config = stream_config(&base, vec![redis.url()]);
    config.binding_sweep = Duration::from_secs(2);
    let stream = spawn_stream(config).await;
    let (p, members) = profile_of(&base, 2).await;
    let mut gone = Sse::open(&stream, &members[0], &p).await.unwrap();
    let mut stays = Sse::open(&stream, &members[1], &p).await.unwrap();

    let changed = Instant::now();
    base.put(&format!("/profiles/{p}"), json!({ "users": [members[1]] })).await;
    let took = ends_unbound(&mut gone, changed, Duration::from_secs(5)).await;
    // Its last check was at admission: due one sweep later, found on the next tick (a tenth).
    assert!(took <= Duration::from_millis(2_500), "{took:?}");
    still_streaming(&mut stays).await;
}

#[tokio::test]
async fn a_lost_subscription_is_made_again_and_every_held_pair_checked() {
    let redis = RedisServer::start().await;
    let base = spawn_base().await;
    let stream = spawn_stream(stream_config(&base, vec![redis.url()])).await;
    wait_metric(&stream, "kubescaler_stream_binding_subscriptions", 1.0, Duration::from_secs(5)).await;
    let (p, members) = profile_of(&base, 2).await;
    let mut gone = Sse::open(&stream, &members[0], &p).await.unwrap();
    let mut stays = Sse::open(&stream, &members[1], &p).await.unwrap();

    // Announced where this stream does not listen: missed, as if said while it reconnected.
    base.put(&format!("/profiles/{p}"), json!({ "users": [members[1]] })).await;
    still_streaming(&mut gone).await;
    let killed = Instant::now();
    let clients: i64 = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await.unwrap();
    assert_eq!(clients, 1);
    let took = ends_unbound(&mut gone, killed, Duration::from_secs(3)).await;
    wait_metric(&stream, "kubescaler_stream_binding_subscriptions", 1.0, Duration::from_secs(2)).await;
    still_streaming(&mut stays).await;
    eprintln!("unbound {took:?} after the subscription was cut");
}
