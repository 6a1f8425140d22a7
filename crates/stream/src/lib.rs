//! stream: Server-Sent Events of random data for a user–profile pair, one stream per pair
//! across every replica (Redlock), at about 2 Mbit/s per client, dropping messages for slow
//! readers instead of queueing them. Also serves the test agent page.
//!
//! [`app`] is the HTTP surface over any lock registry; [`build`] binds and wires.
//!
//! What each module holds, how they work together and why: docs/ARCHITECTURE.md, section
//! "kubescaler-stream".

pub mod changes;
pub mod config;
mod feed;
pub mod locks;
mod metrics;
mod pages;
mod rebalance;
mod routes;
pub mod sessions;

use std::sync::Arc;

use axum::Router;
use kubescaler_base_client::BaseClient;
use kubescaler_server::{HttpMetrics, Ping, Readiness, Service, service_router};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::changes::BindingSource;
use crate::locks::{PairLocks, RedisLocks};
use crate::metrics::StreamMetrics;
use crate::sessions::{Refresher, Sessions};

pub use config::{Config, DEFAULT_PORT};
pub use rebalance::Tolerance;
pub use routes::openapi;

/// stream over one lock registry: its HTTP surface, its open streams, and its refresher,
/// already running, whose drain is the shutdown work of whatever serves the router.
#[derive(Debug)]
pub struct App {
    pub router: Router,
    pub sessions: Arc<Sessions>,
    pub refresher: Refresher,
}

/// stream over any lock registry, hearing of binding changes from `bindings`; the refresher
/// starts here, so an instance never serves streams that nothing refreshes.
pub fn app(
    config: &Config,
    locks: Arc<dyn PairLocks>,
    bindings: BindingSource,
    shutdown: CancellationToken,
    registry: Registry,
) -> anyhow::Result<App> {
    config.check()?;
    let base = BaseClient::new(&config.base)?;
    let metrics = StreamMetrics::new(&registry)?;
    let feed = feed::start(
        config.hostname.clone(),
        config.stream_interval,
        config.stream_message_bytes,
        shutdown.clone(),
    );
    let notices = bindings.start(metrics.subscriptions.clone(), shutdown.clone())?;
    let sessions =
        Sessions::new(locks.clone(), base.clone(), feed, Arc::new(config.clone()), metrics, shutdown.clone());
    let refresher = Refresher::spawn(sessions.clone(), notices);
    let readiness = Readiness::new(shutdown)
        .with_probe(Ping::probe(locks.backend(), locks, |locks| locks.ping()))
        .with_probe(Ping::probe("base", Arc::new(base), |base| Box::pin(base.ready())))
        .with_probe(refresher.probe());
    let (api, _) = kubescaler_server::openapi::split(routes::router(sessions.clone()), routes::describe);
    let router = service_router(api, readiness, HttpMetrics::new(registry, "stream")?);
    Ok(App { router, sessions, refresher })
}

/// stream ready to serve; the refresher runs beside it and releases every lock on shutdown.
pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Service> {
    check_open_files(config.max_connections);
    let locks: Arc<dyn PairLocks> = Arc::new(RedisLocks::new(&config.redis)?);
    let bindings = BindingSource::Redis(config.redis.clone());
    let App { router, refresher, .. } = app(&config, locks, bindings, shutdown.clone(), Registry::new())?;
    Ok(Service::bind("stream", &config.common, config.port, router, shutdown)
        .await?
        .with_stream_buffers(config.stream_sndbuf)
        .with_drain(refresher.drain()))
}

/// Says so when `MAX_CONNECTIONS` streams cannot all be open under the process's limit on open
/// files: the streams past it would fail at accept, not be refused with a clear 503.
fn check_open_files(max_connections: usize) {
    let Some(limit) = kubescaler_server::limits::open_files() else { return };
    let room = limit.saturating_sub(kubescaler_server::limits::RESERVED_FILES);
    if max_connections as u64 > room {
        tracing::warn!(
            max_connections,
            open_files = limit,
            "MAX_CONNECTIONS is more than the open files limit leaves room for ({room}): raise the limit (docs/SCALE.md) or lower MAX_CONNECTIONS"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use clap::Parser;
    use kubescaler_core::{ProfileId, UserId};
    use tokio::time::Instant;
    use tower::ServiceExt;

    use super::*;
    use crate::locks::{AcquireError, ExtendError, Fleet, InProcessLocks, Lease, RegistryUnavailable};

    /// The in-process registry, but publishing the fleet panics: the refresher's first act.
    #[derive(Debug)]
    struct PanicsOnPublish(InProcessLocks);

    #[async_trait]
    impl PairLocks for PanicsOnPublish {
        fn backend(&self) -> &'static str {
            self.0.backend()
        }
        async fn ping(&self) -> Result<(), RegistryUnavailable> {
            self.0.ping().await
        }
        async fn acquire(
            &self,
            user: UserId,
            profile: ProfileId,
            ttl: Duration,
        ) -> Result<Lease, AcquireError> {
            self.0.acquire(user, profile, ttl).await
        }
        async fn extend(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Instant, ExtendError>> {
            self.0.extend(leases, ttl).await
        }
        async fn release(&self, leases: &[Lease]) {
            self.0.release(leases).await
        }
        async fn publish(&self, _: &str, _: u64, _: Duration) -> Result<Fleet, RegistryUnavailable> {
            panic!("a bug in the fleet's publication");
        }
        async fn withdraw(&self, host: &str) {
            self.0.withdraw(host).await
        }
    }

    async fn readyz(router: &Router) -> (StatusCode, serde_json::Value) {
        let request = Request::builder().uri("/readyz").body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_refresher_that_panics_makes_the_instance_unready_and_says_why() {
        // base is nowhere (a closed port), so it fails readiness too; the refresher is the point.
        let config = Config::try_parse_from(["stream", "--base-url", "http://127.0.0.1:1"]).unwrap();
        let shutdown = CancellationToken::new();
        let locks: Arc<dyn PairLocks> = Arc::new(PanicsOnPublish(InProcessLocks::start()));
        let (_changes, bindings) = tokio::sync::broadcast::channel(1);
        let bindings = BindingSource::InProcess(bindings);
        let App { router, refresher, .. } =
            app(&config, locks, bindings, shutdown.clone(), Registry::new()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let body = loop {
            let (status, body) = readyz(&router).await;
            if body["failing"].as_array().is_some_and(|failing| failing.contains(&"refresher".into())) {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                break body;
            }
            assert!(Instant::now() < deadline, "the refresher still counts as running: {body}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let why = body["checks"]["refresher"].as_str().unwrap();
        assert_eq!(why, "the refresher panicked: a bug in the fleet's publication", "{body}");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), refresher.drain()).await.expect("the drain ends");
    }
}
