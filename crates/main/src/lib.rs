//! main: the public helper service — listings, test data, and which of a user's profiles are
//! streaming right now.
//!
//! - [`routes`]: the API, at `/x` and at `/main/x` (or at `/x` only, see [`Mount`]).
//! - [`launched`]: the launched-marker reader over Redis (one `MGET` per request).
//! - [`testdata`]: the background generator of random users and profiles.

pub mod launched;
pub mod routes;
pub mod testdata;

use std::sync::Arc;

use axum::Router;
use clap::Parser;
use kubescaler_redis::RedisArgs;
use kubescaler_server::config::{CommonArgs, DEFAULT_HOSTNAME};
use kubescaler_server::http::{HttpMetrics, Ping, Readiness, Service, service_router};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::launched::{LaunchedReader, RedisLaunched};
use crate::routes::AppState;
use crate::testdata::TestData;
use kubescaler_base_client::{BaseClient, BaseClientConfig};

/// Port main listens on when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 8082;

/// main's configuration: every flag is also an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(name = "main", version, about = "kubescaler main: test data, listings and launched profiles")]
pub struct Config {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    #[command(flatten)]
    pub base: BaseClientConfig,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// When set, POST and DELETE /testdata need `Authorization: Bearer <token>`; unset, they
    /// are open (local development).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Requests to base in flight at once while generating test data.
    #[arg(long, env = "TESTDATA_CONCURRENCY", default_value_t = 32)]
    pub testdata_concurrency: usize,

    /// This instance's name, which `GET /` answers: the pod name under Kubernetes.
    #[arg(long, env = "HOSTNAME", default_value = DEFAULT_HOSTNAME)]
    pub hostname: String,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Where main's API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// At `/x` and at `/main/x`: main on its own, behind the Ingress (which passes `/main/x` on
    /// unchanged) or reached directly.
    RootAndPrefix,
    /// At `/x` only, for a front door that nests the whole of main under `/main` itself.
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
