//! stream: Server-Sent Events of random data for a user–profile pair, one stream per pair
//! across every replica (Redlock), at about 2 Mbit/s per client, dropping messages for slow
//! readers instead of queueing them. Also serves the test agent page.
//!
//! - [`sessions`]: admission, the body of each stream, the guard that ends it on every path,
//!   and the instance's one refresher of locks and markers.
//! - [`locks`]: the [`PairLocks`](locks::PairLocks) trait and its Redlock implementation; the
//!   same registry holds each instance's number of open streams.
//! - [`rebalance`]: how many streams an instance holding more than its share hands off.
//! - [`feed`]: the instance's one message generator, frames encoded once and shared.
//! - [`pages`]: the test agent page and the usage page, embedded from `static/`.

pub mod feed;
pub mod locks;
pub mod pages;
pub mod rebalance;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use kubescaler_shared::base_client::{BaseClient, BaseClientConfig, BaseProbe};
use kubescaler_shared::config::{CommonArgs, RedisArgs, duration};
use kubescaler_shared::error::ApiPath;
use kubescaler_shared::http::{HttpMetrics, Probe, Readiness, Service, service_router};
use kubescaler_shared::{ApiError, ProfileId, UserId};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::locks::{AcquireError, PairLocks, RedisLocks};
use crate::rebalance::Tolerance;
use crate::sessions::{Refusal, Sessions, Settings, StreamMetrics};

/// Port stream listens on when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 8083;

/// stream's configuration: every flag is also an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(name = "stream", version, about = "kubescaler stream: Redlock-guarded SSE and the test agent page")]
pub struct Config {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    #[command(flatten)]
    pub base: BaseClientConfig,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// Lifetime of a pair's lock and launched marker after their last refresh.
    #[arg(long, env = "LOCK_TTL", value_parser = duration, default_value = "60s")]
    pub lock_ttl: Duration,

    /// How often the refresher extends every held lock and marker (less than LOCK_TTL).
    #[arg(long, env = "LOCK_REFRESH", value_parser = duration, default_value = "10s")]
    pub lock_refresh: Duration,

    /// Release lock and marker as soon as a client disconnects, instead of letting them
    /// expire (which keeps the pair refused for up to LOCK_TTL, as the original did).
    #[arg(long, env = "RELEASE_ON_DISCONNECT", default_value_t = false, action = clap::ArgAction::Set)]
    pub release_on_disconnect: bool,

    /// Time between messages (0: as fast as possible, for benchmarks).
    #[arg(long, env = "STREAM_INTERVAL", value_parser = duration, default_value = "100ms")]
    pub stream_interval: Duration,

    /// Random data per message, in bytes.
    #[arg(long, env = "STREAM_MESSAGE_BYTES", default_value_t = 25_000)]
    pub stream_message_bytes: usize,

    /// Kernel send buffer of each connection, in bytes: small, so a slow reader makes the
    /// service skip messages instead of the kernel hoarding stale ones.
    #[arg(long, env = "STREAM_SNDBUF", default_value_t = 65_536)]
    pub stream_sndbuf: usize,

    /// Streams this instance serves at once; more are refused with 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Name put in every message (`host`), and this instance's name in the fleet: the pod name
    /// under Kubernetes; unique per instance.
    #[arg(long, env = "HOSTNAME", default_value = "localhost")]
    pub hostname: String,

    /// Hand streams off to other instances while this one holds more than its share of the
    /// fleet's (after a scale-up, a new instance gets only new connections otherwise).
    #[arg(long, env = "REBALANCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub rebalance: bool,

    /// How often the instance publishes its open streams and decides whether to hand some off
    /// [default: LOCK_REFRESH].
    #[arg(long, env = "REBALANCE_PERIOD", value_parser = duration)]
    pub rebalance_period: Option<Duration>,

    /// Streams an instance may hold over its fair share before it hands any off: a number of
    /// streams (3) or a percentage of the share (10%, at least one stream).
    #[arg(long, env = "REBALANCE_TOLERANCE", default_value_t = Tolerance::default())]
    pub rebalance_tolerance: Tolerance,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl Config {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.lock_refresh < self.lock_ttl,
            "LOCK_REFRESH ({:?}) must be shorter than LOCK_TTL ({:?}), or locks expire between refreshes",
            self.lock_refresh,
            self.lock_ttl
        );
        anyhow::ensure!(self.max_connections > 0, "MAX_CONNECTIONS must be at least 1");
        anyhow::ensure!(
            self.rebalance_period() >= Duration::from_millis(10),
            "REBALANCE_PERIOD must be at least 10ms"
        );
        Ok(())
    }

    pub fn rebalance_period(&self) -> Duration {
        self.rebalance_period.unwrap_or(self.lock_refresh)
    }
}

struct LocksProbe(Arc<dyn PairLocks>);

#[async_trait]
impl Probe for LocksProbe {
    fn name(&self) -> &'static str {
        self.0.backend()
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            Refusal::NoProfile(_) => ApiError::not_found(message),
            Refusal::NotBound(..) => ApiError::new(StatusCode::FORBIDDEN, "not_bound", message),
            Refusal::Full(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_streams", message)
                .with_retry_after(1),
            Refusal::Base(e) => e.into(),
            Refusal::Lock(AcquireError::Conflict { retry_after }) => {
                let secs = retry_after.as_millis().div_ceil(1000).max(1) as u64;
                ApiError::new(StatusCode::CONFLICT, "locked", message)
                    .with_retry_after(secs)
                    .with_field("retry_after_ms", retry_after.as_millis() as u64)
            }
            Refusal::Lock(AcquireError::Unavailable(_)) => ApiError::unavailable("redis", message),
            Refusal::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message).with_retry_after(1)
            }
            Refusal::Rebalancing { retry_after } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "rebalancing", message)
                    .with_retry_after(1)
                    .with_field("retry_after_ms", retry_after.as_millis() as u64)
            }
        }
    }
}

async fn open_stream(
    State(sessions): State<Arc<Sessions>>,
    ApiPath((user, profile)): ApiPath<(UserId, ProfileId)>,
) -> Result<Response, ApiError> {
    let stream = sessions.open(user, profile).await?;
    let mut response = Body::from_stream(stream.into_body()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx (the Ingress) must pass events through as they come, not buffer them.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The full HTTP surface of stream over any lock registry; also returns the refresher to run.
pub fn app(
    config: &Config,
    locks: Arc<dyn PairLocks>,
    shutdown: CancellationToken,
    registry: Registry,
) -> anyhow::Result<(Router, Arc<Sessions>)> {
    config.check()?;
    let base = BaseClient::new(&config.base)?;
    let metrics = StreamMetrics::new(&registry)?;
    let feed = feed::start(
        config.hostname.clone(),
        config.stream_interval,
        config.stream_message_bytes,
        shutdown.clone(),
    );
    let settings = Settings {
        stream_interval: config.stream_interval,
        lock_ttl: config.lock_ttl,
        lock_refresh: config.lock_refresh,
        release_on_disconnect: config.release_on_disconnect,
        max_connections: config.max_connections,
        host: config.hostname.clone(),
        rebalance: config.rebalance,
        rebalance_period: config.rebalance_period(),
        rebalance_tolerance: config.rebalance_tolerance,
    };
    let sessions = Sessions::new(locks.clone(), base.clone(), feed, settings, metrics, shutdown.clone());
    let readiness = Readiness::new(shutdown)
        .with_probe(Arc::new(LocksProbe(locks)))
        .with_probe(Arc::new(BaseProbe(base)));
    let api = Router::new()
        .route("/stream/{user_id}/{profile_id}", get(open_stream))
        .with_state(sessions.clone())
        .merge(pages::router());
    Ok((service_router(api, readiness, HttpMetrics::new(registry, "stream")?), sessions))
}

/// stream ready to serve; the refresher runs beside it and releases every lock on shutdown.
pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Service> {
    let locks: Arc<dyn PairLocks> = Arc::new(RedisLocks::new(&config.redis)?);
    let (router, sessions) = app(&config, locks, shutdown.clone(), Registry::new())?;
    let refresher = tokio::spawn(sessions.refresh_until_shutdown());
    Ok(Service::bind("stream", &config.common, config.port, router, shutdown)
        .await?
        .with_stream_buffers(config.stream_sndbuf)
        .with_drain(async move {
            let _ = refresher.await;
        }))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        super::Config::command().debug_assert();
    }
}
