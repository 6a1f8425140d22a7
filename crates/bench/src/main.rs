//! Load and measurement for the benchmark scripts. Every measurement of a pair (service vs
//! the backend it wraps) uses the same loop, concurrency and clock, so their ratio means
//! something; results are printed as one JSON object per line for the scripts to tabulate.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use hdrhistogram::Histogram;
use kubescaler_base::{cassandra, paging};
use kubescaler_core::duration;
use kubescaler_core::{ProfileId, UserId, keys, pairs};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use uuid::Uuid;

mod cql_ping;
mod fleet;
mod streaming;

/// Inserts in flight at once when seeding: enough to keep one Cassandra node busy, few enough
/// not to time out on it.
pub(crate) const SEED_IN_FLIGHT: usize = 128;
/// Launched markers written by `seed-login` outlive any measurement run.
const MARKER_TTL_SECS: u64 = 3600;

/// Latencies in microseconds, from 1 µs to a minute, to three significant digits.
fn latency_histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    const MAX_MICROS: u64 = 60_000_000;
    const SIGNIFICANT_DIGITS: u8 = 3;
    Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS)
}

#[derive(Debug, Parser)]
#[command(name = "kubescaler-bench", about = "Load and measurement for kubescaler's benchmark scripts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fill a keyspace (schema made by base) with profiles: `--holding` of them hold
    /// `--user`, the rest hold two random users each.
    SeedProfiles {
        #[command(flatten)]
        cql: CqlArgs,
        #[arg(long)]
        profiles: usize,
        #[arg(long)]
        user: Uuid,
        #[arg(long, default_value_t = 10)]
        holding: usize,
    },
    /// Measure the profiles-of-user CQL query, issued directly with a prepared statement.
    CqlProfilesOfUser {
        #[command(flatten)]
        cql: CqlArgs,
        #[arg(long)]
        user: Uuid,
        #[command(flatten)]
        load: Load,
    },
    /// Create a user in `--profiles` new profiles through base, and mark `--launched` of the
    /// pairs as launched in Redis (the key schema of kubescaler-core); prints the user id.
    SeedLogin {
        #[arg(long)]
        base_url: String,
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        #[arg(long, default_value_t = 50)]
        profiles: usize,
        #[arg(long, default_value_t = 10)]
        launched: usize,
    },
    /// Insert profiles holding one new user each; print `user profile` lines.
    SeedPairs {
        #[command(flatten)]
        cql: CqlArgs,
        #[arg(long)]
        count: usize,
    },
    /// Open many stream clients (or raw TCP clients with `--raw`) and report what they got.
    SseLoad {
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// File of `user profile` lines (from seed-pairs); not needed with --raw.
        #[arg(long)]
        pairs: Option<std::path::PathBuf>,
        #[arg(long)]
        raw: bool,
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, value_parser = duration::parse, default_value = "5s")]
        warmup: Duration,
        #[arg(long, value_parser = duration::parse, default_value = "20s")]
        duration: Duration,
        /// Bytes per second each client reads at most (slow readers).
        #[arg(long)]
        read_rate: Option<u64>,
        /// Client socket receive buffer, bytes.
        #[arg(long)]
        recv_buffer: Option<u32>,
        #[arg(long, default_value_t = 64)]
        connect_concurrency: usize,
    },
    /// Baseline for fan-out: shared frames broadcast to plain TCP clients, as fast as possible.
    RawFanoutServer {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 25_000)]
        message_bytes: usize,
        #[arg(long, value_enum, default_value = "watch")]
        channel: streaming::Channel,
    },
    /// Acquire + release cycles through stream's lock code.
    LockChurn {
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis: String,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        #[arg(long, value_parser = duration::parse, default_value = "10s")]
        duration: Duration,
    },
    /// Measure HTTP GETs of one URL.
    HttpGet {
        #[arg(long)]
        url: String,
        #[command(flatten)]
        load: Load,
    },
    /// Ask Cassandra for its release version: exit 0 once a CQL query answers.
    CqlPing(cql_ping::CqlPing),
    /// Reads served by this node per table of a keyspace, since it started (Cassandra's
    /// `system_views.local_read_latency`), as one JSON object.
    CqlReads {
        #[command(flatten)]
        cql: CqlArgs,
    },
    /// Seed profiles of many users (schema made by base); write their pairs to two files: the
    /// load's and the probes' (`--probes-per-profile` of each profile's users).
    SeedFleet {
        #[command(flatten)]
        cql: CqlArgs,
        #[arg(long)]
        profiles: usize,
        #[arg(long)]
        users_per_profile: usize,
        #[arg(long, default_value_t = 2)]
        probes_per_profile: usize,
        #[arg(long)]
        load_pairs: std::path::PathBuf,
        #[arg(long)]
        probe_pairs: std::path::PathBuf,
    },
    /// Open a stream per probe pair, take each pair's user out of its profile through base at
    /// `--rate` changes per second, and measure the time to each stream's `event: unbound`.
    UnbindLatency {
        /// Stream instances, comma-separated base URLs; streams are spread round robin.
        #[arg(long, value_delimiter = ',')]
        stream_urls: Vec<String>,
        #[arg(long)]
        base_url: String,
        #[arg(long)]
        pairs: std::path::PathBuf,
        #[arg(long, default_value_t = 4.0)]
        rate: f64,
        /// Longest wait for an `unbound`; a change not followed by one within it is missed.
        #[arg(long, value_parser = duration::parse, default_value = "30s")]
        patience: Duration,
    },
}

#[derive(Debug, Args)]
struct CqlArgs {
    #[arg(long, env = "CASSANDRA_NODES", default_value = "127.0.0.1:9042")]
    nodes: String,
    #[arg(long)]
    keyspace: String,
}

#[derive(Debug, Clone, Args)]
struct Load {
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Measured time (after the warm-up).
    #[arg(long, value_parser = duration::parse, default_value = "10s")]
    duration: Duration,
    /// Unmeasured time first, to fill pools and caches.
    #[arg(long, value_parser = duration::parse, default_value = "2s")]
    warmup: Duration,
    /// Label printed with the result.
    #[arg(long, default_value = "run")]
    label: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::SeedProfiles { cql, profiles, user, holding } => seed(&cql, profiles, user, holding).await,
        Command::CqlProfilesOfUser { cql, user, load } => {
            let session = Arc::new(connect(&cql).await?);
            let mut statement = session.prepare(cassandra::cql::profiles_of_user(&cql.keyspace)).await?;
            statement.set_page_size(paging::PAGE_SIZE);
            let expected = count_rows(&session, &statement, user).await?;
            run(&load, expected, move || {
                let (session, statement) = (session.clone(), statement.clone());
                async move { count_rows(&session, &statement, user).await }
            })
            .await
        }
        Command::SeedLogin { base_url, redis_url, profiles, launched } => {
            seed_login(&base_url, &redis_url, profiles, launched).await
        }
        Command::SeedPairs { cql, count } => {
            streaming::seed_pairs(&connect(&cql).await?, &cql.keyspace, count).await
        }
        Command::SseLoad {
            addr,
            pairs,
            raw,
            clients,
            warmup,
            duration,
            read_rate,
            recv_buffer,
            connect_concurrency,
        } => {
            let pairs = match (raw, pairs) {
                (true, _) => None,
                (false, Some(path)) => Some(
                    pairs::parse(&std::fs::read_to_string(&path)?)
                        .with_context(|| format!("reading {}", path.display()))?,
                ),
                (false, None) => bail!("--pairs is needed unless --raw"),
            };
            let report = streaming::sse_load(streaming::SseLoad {
                addr,
                pairs,
                clients,
                warmup,
                duration,
                read_rate,
                recv_buffer,
                connect_concurrency,
            })
            .await?;
            println!("{report}");
            Ok(())
        }
        Command::RawFanoutServer { port, message_bytes, channel } => {
            streaming::raw_fanout_server(port, message_bytes, channel).await
        }
        Command::LockChurn { redis, concurrency, duration } => {
            println!("{}", streaming::lock_churn(&redis, concurrency, duration).await?);
            Ok(())
        }
        Command::HttpGet { url, load } => {
            let client = reqwest::Client::builder().pool_max_idle_per_host(load.concurrency).build()?;
            let expected = http_get(&client, &url).await?;
            run(&load, expected, move || {
                let (client, url) = (client.clone(), url.clone());
                async move { http_get(&client, &url).await }
            })
            .await
        }
        Command::CqlPing(args) => cql_ping::run(args).await,
        Command::CqlReads { cql } => {
            let session = connect(&cql).await?;
            println!("{}", fleet::reads(&session, &cql.keyspace).await?);
            Ok(())
        }
        Command::SeedFleet {
            cql,
            profiles,
            users_per_profile,
            probes_per_profile,
            load_pairs,
            probe_pairs,
        } => {
            let session = connect(&cql).await?;
            let report = fleet::seed(
                &session,
                &cql.keyspace,
                profiles,
                users_per_profile,
                probes_per_profile,
                &load_pairs,
                &probe_pairs,
            )
            .await?;
            println!("{report}");
            Ok(())
        }
        Command::UnbindLatency { stream_urls, base_url, pairs, rate, patience } => {
            let text =
                std::fs::read_to_string(&pairs).with_context(|| format!("reading {}", pairs.display()))?;
            let pairs = kubescaler_core::pairs::parse(&text)
                .with_context(|| format!("reading {}", pairs.display()))?;
            anyhow::ensure!(!stream_urls.is_empty(), "--stream-urls names no instance");
            let run = fleet::UnbindLatency { stream_urls, base_url, pairs, rate, patience };
            println!("{}", fleet::unbind_latency(run).await?);
            Ok(())
        }
    }
}

async fn connect(cql: &CqlArgs) -> anyhow::Result<Session> {
    SessionBuilder::new().known_node(&cql.nodes).build().await.context("connecting to Cassandra")
}

/// Rows the query returns, read through all pages the way base reads them.
async fn count_rows(
    session: &Session,
    statement: &scylla::statement::prepared::PreparedStatement,
    user: Uuid,
) -> anyhow::Result<usize> {
    let mut n = 0;
    paging::for_each_row(session, statement, (user,), |_: (Uuid, Option<BTreeSet<Uuid>>)| {
        n += 1;
        anyhow::Ok(())
    })
    .await?;
    Ok(n)
}

/// Profiles in the JSON array the URL answers (or 0 for any other 2xx body).
async fn http_get(client: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    let response = client.get(url).send().await?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    let body = response.bytes().await?;
    Ok(serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&body).map_or(0, |items| items.len()))
}

async fn seed_login(base_url: &str, redis_url: &str, profiles: usize, launched: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        let request = client.post(format!("{base_url}{path}")).json(&body);
        async move {
            let response = request.send().await?.error_for_status()?;
            anyhow::Ok(response.json::<serde_json::Value>().await?)
        }
    };
    let user = post("/users", serde_json::json!({ "name": "Bench User" })).await?;
    let user_id = UserId::parse(user["id"].as_str().unwrap_or_default())?;
    let mut redis = redis::Client::open(redis_url)?.get_multiplexed_async_connection().await?;
    for i in 0..profiles {
        let profile = post("/profiles", serde_json::json!({ "users": [user_id] })).await?;
        let profile_id = ProfileId::parse(profile["id"].as_str().unwrap_or_default())?;
        if i < launched {
            let _: () = redis::cmd("SET")
                .arg(keys::launched(user_id, profile_id))
                .arg("1")
                .arg("EX")
                .arg(MARKER_TTL_SECS)
                .query_async(&mut redis)
                .await?;
        }
    }
    println!("{user_id}");
    Ok(())
}

async fn seed(cql: &CqlArgs, profiles: usize, user: Uuid, holding: usize) -> anyhow::Result<()> {
    let session = Arc::new(connect(cql).await?);
    let insert = session.prepare(cassandra::cql::insert_profile(&cql.keyspace)).await?;
    let started = Instant::now();
    let results = futures::stream::iter(0..profiles)
        .map(|i| {
            let (session, insert) = (session.clone(), insert.clone());
            async move {
                let users: BTreeSet<Uuid> = if i < holding {
                    [user, Uuid::new_v4()].into()
                } else {
                    [Uuid::new_v4(), Uuid::new_v4()].into()
                };
                session.execute_unpaged(&insert, (Uuid::new_v4(), users)).await
            }
        })
        .buffer_unordered(SEED_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {profiles} inserts failed");
    }
    println!(
        "{}",
        serde_json::json!({ "seeded_profiles": profiles, "holding_user": holding, "seconds": started.elapsed().as_secs_f64() })
    );
    Ok(())
}

/// Runs `op` with `concurrency` workers for warm-up + duration; every answer must have the
/// `expected` size (a benchmark of wrong answers measures nothing).
async fn run<F, Fut>(load: &Load, expected: usize, op: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<usize>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let workers = (0..load.concurrency).map(|_| {
        let op = op.clone();
        tokio::spawn(async move {
            let mut hist = latency_histogram()?;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    return anyhow::Ok(hist);
                }
                let got = op().await?;
                if got != expected {
                    bail!("answer of size {got}, expected {expected}");
                }
                if t0 >= measure_from {
                    hist.record(t0.elapsed().as_micros().max(1) as u64)?;
                }
            }
        })
    });
    let mut total = latency_histogram()?;
    for worker in futures::future::join_all(workers).await {
        total.add(worker??)?;
    }
    let secs = load.duration.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "label": load.label,
            "requests": total.len(),
            "rps": total.len() as f64 / secs,
            "p50_ms": total.value_at_quantile(0.50) as f64 / 1000.0,
            "p99_ms": total.value_at_quantile(0.99) as f64 / 1000.0,
            "concurrency": load.concurrency,
            "rows": expected,
        })
    );
    Ok(())
}
