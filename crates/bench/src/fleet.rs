//! Load for `scripts/bench-scale.sh`, the suite at a scale no single process fakes: profiles of
//! many users seeded straight into Cassandra, and the time from a profile change to the
//! `event: unbound` of the stream it unbinds, measured from the outside as a client sees it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use kubescaler_base::cassandra::cql;
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
    let insert_user = session.prepare(cql::insert_user(keyspace)).await?;
    let insert_profile = session.prepare(cql::insert_profile(keyspace)).await?;
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
            let (changed, written, _) = send_timed(change).await?;
            let seen = unbound.await??;
            anyhow::Ok(seen.map(|at| Timing {
                since_sent: at.saturating_duration_since(changed),
                write: written - changed,
                since_written: at.saturating_duration_since(written),
            }))
        }));
    }
    let mut timings = Vec::new();
    let mut missed = 0;
    for wait in waits {
        match wait.await?? {
            Some(timing) => timings.push(timing),
            None => missed += 1,
        }
    }
    let since_sent = Percentiles::of(timings.iter().map(|t| t.since_sent));
    Ok(serde_json::json!({
        "changes": timings.len() + missed,
        "unbound": timings.len(),
        "missed": missed,
        "p50_ms": since_sent.ms(0.5),
        "p99_ms": since_sent.ms(0.99),
        "max_ms": since_sent.ms(1.0),
        "write_ms": Percentiles::of(timings.iter().map(|t| t.write)).summary(),
        "after_write_ms": Percentiles::of(timings.iter().map(|t| t.since_written)).summary(),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// One change, timed from the outside.
struct Timing {
    /// From the write sent to base to the stream's `unbound`: what the report's p50/p99 say.
    since_sent: Duration,
    /// base's answer to the write (its Cassandra write and its announcement).
    write: Duration,
    /// From base's answer to the `unbound`: the announcement's way to stream and its re-check.
    since_written: Duration,
}

/// Sorted durations, read as percentiles in milliseconds.
struct Percentiles(Vec<Duration>);

impl Percentiles {
    fn of(durations: impl Iterator<Item = Duration>) -> Self {
        let mut sorted: Vec<Duration> = durations.collect();
        sorted.sort_unstable();
        Self(sorted)
    }

    fn ms(&self, p: f64) -> Option<f64> {
        kubescaler_core::percentile::percentile(&self.0, p).map(|d| d.as_secs_f64() * 1000.0)
    }

    fn summary(&self) -> serde_json::Value {
        serde_json::json!({ "p50": self.ms(0.5), "p99": self.ms(0.99), "max": self.ms(1.0) })
    }
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

/// Sends `request`, again while base answers that it is overloaded (502–504: its Cassandra
/// timed out, as a loaded machine makes it do) — a change the tool could not make is not a
/// change stream failed to see. Answers when the accepted attempt was sent and answered.
async fn send_timed(
    request: reqwest::RequestBuilder,
) -> anyhow::Result<(Instant, Instant, reqwest::Response)> {
    const ATTEMPTS: u64 = 5;
    let mut attempt = 1;
    loop {
        let this = request.try_clone().context("a request with a body that can be sent again")?;
        let sent = Instant::now();
        let response = this.send().await?;
        let answered = Instant::now();
        if attempt < ATTEMPTS && matches!(response.status().as_u16(), 502..=504) {
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            attempt += 1;
            continue;
        }
        return Ok((sent, answered, response.error_for_status()?));
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
    let current: serde_json::Value = send_timed(http.get(&url)).await?.2.json().await?;
    let users: Vec<&serde_json::Value> = current["users"]
        .as_array()
        .context("a profile has users")?
        .iter()
        .filter(|u| *u != &user.to_string())
        .collect();
    Ok(http.put(&url).json(&serde_json::json!({ "users": users })))
}
