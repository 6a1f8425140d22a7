//! base: the internal REST service that owns users and profiles.
//!
//! [`app`] is the HTTP surface over any store; [`build`] binds and wires; the `base` binary is a
//! thin shell around it, and tests start it in-process on port 0.
//!
//! What each module holds, how they work together and why: docs/ARCHITECTURE.md, section
//! "kubescaler-base".

pub mod cassandra;
pub mod changes;
pub mod config;
pub mod embedded;
pub mod paging;
pub mod routes;
pub mod store;

use std::sync::Arc;

use axum::Router;
use kubescaler_server::{HttpMetrics, Ping, Readiness, Service, service_router};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::cassandra::CassandraStore;
use crate::changes::{Announce, RedisAnnouncer};
use crate::store::Store;

pub use config::{Config, DEFAULT_PORT};

/// The full HTTP surface of base over any store: API plus `/livez`, `/readyz`, `/metrics`;
/// binding changes are announced to `changes`.
pub fn app(
    store: Arc<dyn Store>,
    changes: Arc<dyn Announce>,
    hostname: &str,
    shutdown: CancellationToken,
    registry: Registry,
) -> Result<Router, prometheus::Error> {
    let metrics = HttpMetrics::new(registry, "base")?;
    let readiness =
        Readiness::new(shutdown)
            .with_probe(Ping::probe(store.backend(), store.clone(), |store| store.ping()));
    let (api, _) =
        kubescaler_server::openapi::split(routes::router(store, changes, hostname), routes::describe);
    Ok(service_router(api, readiness, metrics))
}

/// base ready to serve. Binds the port and starts connecting to Cassandra in the background;
/// does not wait for Cassandra, so base is alive (and not ready) while it is unreachable.
pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Service> {
    let store: Arc<dyn Store> = Arc::new(CassandraStore::start(config.cassandra));
    let registry = Registry::new();
    let changes = Arc::new(RedisAnnouncer::start(&config.redis, &registry)?);
    let router = app(store, changes, &config.hostname, shutdown.clone(), registry)?;
    Ok(Service::bind("base", &config.common, config.port, router, shutdown).await?)
}
