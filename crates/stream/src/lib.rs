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

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use kubescaler_base_client::{BaseClient, BaseClientConfig};
use kubescaler_core::{ProfileId, UserId};
use kubescaler_core::{codes, duration};
use kubescaler_redis::RedisArgs;
use kubescaler_server::ApiError;
use kubescaler_server::config::CommonArgs;
use kubescaler_server::error::ApiPath;
use kubescaler_server::http::{HttpMetrics, Ping, Readiness, Service, service_router};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::locks::{AcquireError, PairLocks, RedisLocks};
use crate::rebalance::Tolerance;
use crate::sessions::{Refusal, Sessions, Settings, StreamMetrics};

/// Port stream listens on when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 8083;

/// What an EventSource is told to wait after a refusal that names no time (Redis or base
/// away): an outage lasts seconds or more, and three seconds is what browsers wait by default.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(3);
/// What it is told to wait after a malformed address, which no retry can fix: EventSource
/// cannot be stopped by an answer it can read, so its retries are made rare instead.
const INVALID_RETRY: Duration = Duration::from_secs(3600);

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
    #[arg(long, env = "LOCK_TTL", value_parser = duration::parse, default_value = "60s")]
    pub lock_ttl: Duration,

    /// How often the refresher extends every held lock and marker (less than LOCK_TTL)
    /// [default: LOCK_TTL / 6, 10s for the default TTL: five refreshes may fail before a lock
    /// can expire].
    #[arg(long, env = "LOCK_REFRESH", value_parser = duration::parse)]
    pub lock_refresh: Option<Duration>,

    /// Release lock and marker as soon as a client disconnects, instead of letting them
    /// expire (which keeps the pair refused for up to LOCK_TTL, as the original did).
    #[arg(long, env = "RELEASE_ON_DISCONNECT", default_value_t = false, action = clap::ArgAction::Set)]
    pub release_on_disconnect: bool,

    /// Time between messages (0: as fast as possible, for benchmarks).
    #[arg(long, env = "STREAM_INTERVAL", value_parser = duration::parse, default_value = "100ms")]
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
    #[arg(long, env = "REBALANCE_PERIOD", value_parser = duration::parse)]
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
            self.lock_refresh() < self.lock_ttl,
            "LOCK_REFRESH ({:?}) must be shorter than LOCK_TTL ({:?}), or locks expire between refreshes",
            self.lock_refresh(),
            self.lock_ttl
        );
        anyhow::ensure!(self.max_connections > 0, "MAX_CONNECTIONS must be at least 1");
        anyhow::ensure!(
            self.rebalance_period() >= Duration::from_millis(10),
            "REBALANCE_PERIOD must be at least 10ms"
        );
        Ok(())
    }

    pub fn lock_refresh(&self) -> Duration {
        self.lock_refresh.unwrap_or(self.lock_ttl / 6)
    }

    pub fn rebalance_period(&self) -> Duration {
        self.rebalance_period.unwrap_or_else(|| self.lock_refresh())
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            Refusal::NoProfile(_) => ApiError::not_found(message),
            Refusal::NotBound(..) => ApiError::new(StatusCode::FORBIDDEN, codes::NOT_BOUND, message),
            Refusal::Full(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, codes::TOO_MANY_STREAMS, message)
                    .with_retry_after(1)
            }
            Refusal::Base(e) => e.into(),
            Refusal::Lock(AcquireError::Conflict { retry_after }) => {
                ApiError::new(StatusCode::CONFLICT, codes::LOCKED, message).with_retry_after_ms(retry_after)
            }
            Refusal::Lock(AcquireError::Unavailable(_)) => ApiError::unavailable("redis", message),
            Refusal::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, codes::SHUTTING_DOWN, message)
                    .with_retry_after(1)
            }
            Refusal::Rebalancing { retry_after } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, codes::REBALANCING, message)
                    .with_retry_after_ms(retry_after)
            }
        }
    }
}

async fn open_stream(
    State(sessions): State<Arc<Sessions>>,
    headers: HeaderMap,
    path: Result<ApiPath<(UserId, ProfileId)>, ApiError>,
) -> Response {
    let refusal: ApiError = match path {
        Ok(ApiPath((user, profile))) => match sessions.open(user, profile).await {
            Ok(stream) => return event_stream(Body::from_stream(stream.into_body())),
            Err(refusal) => refusal.into(),
        },
        Err(invalid) => invalid,
    };
    sessions.metrics().refused.with_label_values(&[refusal.code()]).inc();
    if wants_event_stream(&headers) {
        refusal.log();
        // For permanent refusals (not bound, no profile), the binding is worth asking again at
        // the pace the service re-checks held pairs' locks and bindings: once per lock TTL.
        refused_in_sse(&refusal, sessions.settings().lock_ttl)
    } else {
        refusal.into_response()
    }
}

/// A HEAD describes the stream a GET would open, and opens none: the ids are checked, nothing
/// is asked of base or Redis, no lock is taken (`get` alone would run the GET handler for it).
async fn describe_stream(ApiPath(_): ApiPath<(UserId, ProfileId)>) -> Response {
    // A body of unknown length, like the stream's, so the head matches the GET's.
    event_stream(
        Body::from_stream(futures::stream::empty::<Result<bytes::Bytes, std::convert::Infallible>>()),
    )
}

fn event_stream(body: Body) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx (the Ingress) must pass events through as they come, not buffer them.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Whether a refusal is answered as an event stream: the client accepts `text/event-stream`,
/// as EventSource always says, and does not also accept JSON — a client that lists both can
/// read statuses and gets the JSON answer.
fn wants_event_stream(headers: &HeaderMap) -> bool {
    let (mut stream, mut json) = (false, false);
    let ranges =
        headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    for range in ranges {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let refused = parts.any(|p| {
            p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0)
        });
        if refused {
            continue;
        }
        if media.eq_ignore_ascii_case("text/event-stream") {
            stream = true;
        } else if media.eq_ignore_ascii_case("application/json") {
            json = true;
        }
    }
    stream && !json
}

/// A refusal as EventSource can act on it: 200, `retry:` the time until the request may
/// succeed, one `refused` event carrying the JSON answer, end of stream — EventSource then
/// reconnects by itself after `retry`, where a non-200 answer would make it give up for good.
fn refused_in_sse(refusal: &ApiError, permanent_retry: Duration) -> Response {
    let retry = refusal.retry_after().unwrap_or(match refusal.status() {
        s if s.is_server_error() => UNAVAILABLE_RETRY,
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => permanent_retry,
        _ => INVALID_RETRY,
    });
    // The JSON answer is one line (serde_json escapes newlines inside strings).
    let data = refusal.body();
    event_stream(Body::from(format!("retry: {}\nevent: refused\ndata: {data}\n\n", retry.as_millis())))
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
        lock_refresh: config.lock_refresh(),
        release_on_disconnect: config.release_on_disconnect,
        max_connections: config.max_connections,
        host: config.hostname.clone(),
        rebalance: config.rebalance,
        rebalance_period: config.rebalance_period(),
        rebalance_tolerance: config.rebalance_tolerance,
    };
    let sessions = Sessions::new(locks.clone(), base.clone(), feed, settings, metrics, shutdown.clone());
    let readiness = Readiness::new(shutdown)
        .with_probe(Ping::probe(locks.backend(), locks, |locks| locks.ping()))
        .with_probe(Ping::probe("base", Arc::new(base), |base| Box::pin(base.ready())));
    let host = config.hostname.clone();
    let api = Router::new()
        .route("/stream/{user_id}/{profile_id}", get(open_stream).head(describe_stream))
        .with_state(sessions.clone())
        // Which instance answered, as the original's /ping said.
        .route("/ping", get(move || std::future::ready(host.clone())))
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
    use std::time::Duration;

    use axum::http::{HeaderMap, HeaderValue, header};
    use clap::CommandFactory;
    use kubescaler_server::ApiError;

    use super::{refused_in_sse, wants_event_stream};
    use crate::sessions::Refusal;

    #[test]
    fn flags_are_consistent() {
        super::Config::command().debug_assert();
    }

    #[test]
    fn only_clients_that_accept_an_event_stream_and_not_json_get_refusals_as_events() {
        let accepts = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            }
            wants_event_stream(&headers)
        };
        assert!(accepts(&["text/event-stream"]), "EventSource");
        assert!(accepts(&["Text/Event-Stream; charset=utf-8"]));
        assert!(accepts(&["text/html", "text/event-stream;q=0.5"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["*/*"]));
        assert!(!accepts(&["text/event-stream, application/json"]));
        assert!(!accepts(&["text/event-stream", "application/json;q=0.1"]));
        assert!(accepts(&["text/event-stream", "application/json;q=0"]));
        assert!(!accepts(&["text/event-stream;q=0"]));
    }

    async fn as_event(refusal: Refusal) -> String {
        let response = refused_in_sse(&ApiError::from(refusal), Duration::from_secs(60));
        assert_eq!(response.status(), 200);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_draining_or_stopping_instance_says_when_to_come_back() {
        let rebalancing = as_event(Refusal::Rebalancing { retry_after: Duration::from_millis(100) }).await;
        assert!(rebalancing.starts_with("retry: 100\nevent: refused\ndata: {"), "{rebalancing}");
        assert!(rebalancing.contains(r#""error":"rebalancing""#), "{rebalancing}");
        assert!(rebalancing.ends_with("}\n\n"), "{rebalancing}");
        let stopping = as_event(Refusal::ShuttingDown).await;
        assert!(stopping.starts_with("retry: 1000\nevent: refused\n"), "{stopping}");
        assert!(stopping.contains(r#""error":"shutting_down""#), "{stopping}");
    }
}
