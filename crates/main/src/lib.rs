//! main: the public helper service — listings, test data, and which of a user's profiles are
//! streaming right now.
//!
//! [`app`] is the HTTP surface over any launched registry; [`build`] binds and wires.
//!
//! What each module holds, how they work together and why: docs/ARCHITECTURE.md, section
//! "kubescaler-main".

pub mod config;
pub mod launched;
pub mod routes;
pub mod testdata;

use std::sync::Arc;

use axum::Router;
use kubescaler_base_client::BaseClient;
use kubescaler_server::{HttpMetrics, Ping, Readiness, Service, service_router};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::launched::{LaunchedReader, RedisLaunched};
use crate::routes::AppState;
use crate::testdata::TestData;

pub use config::{Config, DEFAULT_PORT};

/// Where main's API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// At `/x` and at `/main/x`: main on its own, behind the Ingress (which passes `/main/x` on
    /// unchanged) or reached directly.
    RootAndPrefix,
    /// At `/x` only, for a front door that mounts the whole of main under `/main` itself
    /// ([`routes::under_prefix`]).
    Root,
}

/// The full HTTP surface of main over any launched registry.
pub fn app(
    config: &Config,
    launched: Arc<dyn LaunchedReader>,
    mount: Mount,
    shutdown: CancellationToken,
    registry: Registry,
) -> anyhow::Result<Router> {
    let base = BaseClient::new(&config.base)?;
    let readiness = Readiness::new(shutdown.clone())
        .with_probe(Ping::probe("base", Arc::new(base.clone()), |base| Box::pin(base.ready())))
        .with_probe(Ping::probe(launched.backend(), launched.clone(), |launched| launched.ping()));
    let state = AppState {
        testdata: TestData::new(base.clone(), config.testdata_concurrency, shutdown),
        base,
        launched,
        admin_token: config.admin_token.as_deref().filter(|t| !t.is_empty()).map(Arc::from),
        hostname: Arc::from(config.hostname.as_str()),
    };
    let api = match mount {
        Mount::RootAndPrefix => routes::router(state),
        Mount::Root => routes::api(state),
    };
    Ok(service_router(api, readiness, HttpMetrics::new(registry, "main")?))
}

/// main ready to serve. Redis and base are reached lazily, so main starts while they are down.
pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Service> {
    let launched: Arc<dyn LaunchedReader> = Arc::new(RedisLaunched::new(&config.redis)?);
    let router = app(&config, launched, Mount::RootAndPrefix, shutdown.clone(), Registry::new())?;
    Ok(Service::bind("main", &config.common, config.port, router, shutdown).await?)
}
