//! base: the internal REST service that owns users and profiles.
//!
//! - [`routes`]: the API (see the README's table); every error is a JSON [`ApiError`].
//! - [`store`]: the [`Store`] trait the API runs on, so backends are interchangeable.
//! - [`cassandra`]: the Cassandra store (schema, prepared statements, lazy connection).
//!
//! [`build`] binds and wires; the `base` binary is a thin shell around it, and
//! tests start it in-process on port 0.
//!
//! [`ApiError`]: kubescaler_server::ApiError
//! [`Store`]: store::Store

pub mod cassandra;
pub mod embedded;
pub mod routes;
pub mod store;

use std::sync::Arc;

use axum::Router;
use clap::Parser;
use kubescaler_server::config::{CommonArgs, DEFAULT_HOSTNAME};
use kubescaler_server::http::{HttpMetrics, Ping, Readiness, Service, service_router};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::cassandra::{CassandraConfig, CassandraStore};
use crate::store::Store;

/// Port base listens on when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 8081;

/// base's configuration: every flag is also an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(name = "base", version, about = "kubescaler base: REST CRUD for users and profiles over Cassandra")]
pub struct Config {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    #[command(flatten)]
    pub cassandra: CassandraConfig,

    /// This instance's name, which `GET /` answers: the pod name under Kubernetes.
    #[arg(long, env = "HOSTNAME", default_value = DEFAULT_HOSTNAME)]
    pub hostname: String,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// The full HTTP surface of base over any store: API plus `/livez`, `/readyz`, `/metrics`.
pub fn app(
    store: Arc<dyn Store>,
    hostname: &str,
    shutdown: CancellationToken,
    registry: Registry,
) -> Result<Router, prometheus::Error> {
    let metrics = HttpMetrics::new(registry, "base")?;
    let readiness =
        Readiness::new(shutdown)
            .with_probe(Ping::probe(store.backend(), store.clone(), |store| store.ping()));
    Ok(service_router(routes::router(store, hostname), readiness, metrics))
}

/// base ready to serve. Binds the port and starts connecting to Cassandra in the background;
/// does not wait for Cassandra, so base is alive (and not ready) while it is unreachable.
pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Service> {
    let store: Arc<dyn Store> = Arc::new(CassandraStore::start(config.cassandra));
    let router = app(store, &config.hostname, shutdown.clone(), Registry::new())?;
    Ok(Service::bind("base", &config.common, config.port, router, shutdown).await?)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        // clap checks its definitions only when a command line is parsed; do it here, not at
        // a user's first start.
        super::Config::command().debug_assert();
    }
}
