//! Load for `scripts/bench-scale.sh`, the suite at a scale no single process fakes: profiles of
//! many users seeded straight into Cassandra, and the time from a profile change to the
//! `event: unbound` of the stream it unbinds, measured from the outside as a client sees it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use kubescaler_core::{ProfileId, UserId};
use uuid::Uuid;

/// Writes `profiles` profiles of `users_per_profile` new users each (users and profiles, as
/// base would have them); the pairs go to two files: `probes_per_profile` of each profile's
/// users to `probe_file` (the streams `unbind-latency` watches), the others to `load_file`.
pub async fn seed(
    session: &scylla::client::session::Session,
    keyspace: &str,
    profiles: usize,
    users_per_profile: usize,
    probes_per_profile: usize,
    load_file: &Path,
    probe_file: &Path,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(probes_per_profile <= users_per_profile, "more probes than users in a profile");
    let started = Instant::now();
    let insert_user =
        session.prepare(format!("INSERT INTO {keyspace}.user (id, name) VALUES (?, ?)")).await?;
    let insert_profile =
        session.prepare(format!("INSERT INTO {keyspace}.profile (id, users) VALUES (?, ?)")).await?;
    let plan: Vec<(Uuid, Vec<Uuid>)> = (0..profiles)
        .map(|_| (Uuid::new_v4(), (0..users_per_profile).map(|_| Uuid::new_v4()).collect()))
        .collect();
    let users = plan.iter().flat_map(|(_, users)| users.iter().copied());
    let inserted = futures::stream::iter(users)
        .map(|user| {
            let insert = &insert_user;
            async move { session.execute_unpaged(insert, (user, "Fleet member")).await }
        })
        .buffer_unordered(crate::SEED_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    anyhow::ensure!(inserted.iter().all(Result::is_ok), "some user inserts failed");
    let inserted = futures::stream::iter(&plan)
        .map(|(profile, users)| {
            let insert = &insert_profile;
            let users: BTreeSet<Uuid> = users.iter().copied().collect();
            async move { session.execute_unpaged(insert, (*profile, users)).await }
        })
        .buffer_unordered(crate::SEED_IN_FLIGHT / 8)
        .collect::<Vec<_>>()
        .await;
    anyhow::ensure!(inserted.iter().all(Result::is_ok), "some profile inserts failed");
    let (mut load, mut probes) = (String::new(), String::new());
    for (profile, users) in &plan {
        for (i, user) in users.iter().enumerate() {
            let file = if i < probes_per_profile { &mut probes } else { &mut load };
            file.push_str(&format!("{user} {profile}\n"));
        }
    }
    std::fs::write(load_file, load).with_context(|| format!("writing {}", load_file.display()))?;
    std::fs::write(probe_file, probes).with_context(|| format!("writing {}", probe_file.display()))?;
    Ok(serde_json::json!({
        "profiles": profiles,
        "users": profiles * users_per_profile,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// Reads served per table of `keyspace` since the node started, `{"profile": n, "user": n}`.
pub async fn reads(
    session: &scylla::client::session::Session,
    keyspace: &str,
) -> anyhow::Result<serde_json::Value> {
    let rows = session
        .query_unpaged(
            "SELECT table_name, count FROM system_views.local_read_latency WHERE keyspace_name = ? ALLOW FILTERING",
            (keyspace,),
        )
        .await?
        .into_rows_result()?;
    let mut reads = serde_json::Map::new();
    for row in rows.rows::<(String, i64)>()? {
        let (table, count) = row?;
        reads.insert(table, count.into());
    }
    Ok(reads.into())
}

/// How `unbind-latency` runs.
#[derive(Debug)]
pub struct UnbindLatency {
    pub stream_urls: Vec<String>,
    pub base_url: String,
    pub pairs: Vec<(UserId, ProfileId)>,
    /// Profile changes per second.
    pub rate: f64,
    /// Longest wait for an `unbound` before the change counts as missed.
    pub patience: Duration,
}

/// Opens a stream on every pair (round robin over the stream URLs), then takes each pair's user
/// out of its profile through base, one change every 1/rate s, each profile at most once at a
/// time, and measures from the moment the change is sent to the moment its stream's
/// `event: unbound` arrives.
pub async fn unbind_latency(run: UnbindLatency) -> anyhow::Result<serde_json::Value> {
    let http = reqwest::Client::builder().http1_only().build()?;
    let mut streams = Vec::new();
    for (i, (user, profile)) in run.pairs.iter().enumerate() {
        let url = format!("{}/stream/{user}/{profile}", run.stream_urls[i % run.stream_urls.len()]);
        let response = http.get(&url).header("accept", "text/event-stream, application/json").send().await?;
        if !response.status().is_success() {
            bail!("{url} answered {}", response.status());
        }
        streams.push(response);
    }
    // The pairs come grouped by profile (as `seed-fleet` writes them); they are changed one
    // profile after the other, round robin, so that a profile's changes are far apart: a change
    // reads the profile and writes it back without one user, and two at once on one profile
    // would put back each other's user.
    let per_profile = (run.pairs.len() / distinct_profiles(&run.pairs).max(1)).max(1);
    let mut order: Vec<usize> = (0..run.pairs.len()).collect();
    order.sort_by_key(|&i| (i % per_profile, i / per_profile));
    let run = Arc::new(run);
    let mut waits = Vec::new();
    let mut streams: Vec<Option<reqwest::Response>> = streams.into_iter().map(Some).collect();
    let every = Duration::from_secs_f64(1.0 / run.rate.max(0.001));
    let mut ticks = tokio::time::interval(every);
    let started = Instant::now();
    for i in order {
        ticks.tick().await;
        let Some(stream) = streams[i].take() else { continue };
        let run = run.clone();
        let http = http.clone();
        waits.push(tokio::spawn(async move {
            let (user, profile) = run.pairs[i];
            let unbound = tokio::spawn(wait_unbound(stream, run.patience));
            let change = without_user(&http, &run.base_url, profile, user).await?;
            // From the moment the write is sent: the read before it is the tool's, not the change.
            let changed = Instant::now();
            change.send().await?.error_for_status()?;
            let seen = unbound.await??;
            anyhow::Ok(seen.map(|at| at.saturating_duration_since(changed)))
        }));
    }
    let mut latencies = Vec::new();
    let mut missed = 0;
    for wait in waits {
        match wait.await?? {
            Some(latency) => latencies.push(latency),
            None => missed += 1,
        }
    }
    latencies.sort_unstable();
    let ms = |p: f64| {
        let at = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(at).map(|d| d.as_secs_f64() * 1000.0)
    };
    Ok(serde_json::json!({
        "changes": latencies.len() + missed,
        "unbound": latencies.len(),
        "missed": missed,
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "max_ms": ms(1.0),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

fn distinct_profiles(pairs: &[(UserId, ProfileId)]) -> usize {
    pairs.iter().map(|(_, profile)| *profile).collect::<BTreeSet<_>>().len()
}

/// When the stream's `unbound` event arrived; `None` if it did not within `patience`.
async fn wait_unbound(mut stream: reqwest::Response, patience: Duration) -> anyhow::Result<Option<Instant>> {
    let mut events = kubescaler_sse::Parser::new();
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Ok(chunk) => match chunk? {
                Some(chunk) => chunk,
                None => bail!("the stream ended without an event"),
            },
            Err(_) => return Ok(None),
        };
        events.push(&chunk);
        while let Some(event) = events.next_event() {
            match event.event.as_deref() {
                None => {}
                Some("unbound") => return Ok(Some(Instant::now())),
                Some(other) => bail!("the stream ended with `{other}`, not `unbound`"),
            }
        }
    }
}

/// The replace of `profile` without `user`, ready to send.
async fn without_user(
    http: &reqwest::Client,
    base: &str,
    profile: ProfileId,
    user: UserId,
) -> anyhow::Result<reqwest::RequestBuilder> {
    let url = format!("{base}/profiles/{profile}");
    let current: serde_json::Value = http.get(&url).send().await?.error_for_status()?.json().await?;
    let users: Vec<&serde_json::Value> = current["users"]
        .as_array()
        .context("a profile has users")?
        .iter()
        .filter(|u| *u != &user.to_string())
        .collect();
    Ok(http.put(&url).json(&serde_json::json!({ "users": users })))
}
