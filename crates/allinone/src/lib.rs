//! The whole suite in one process: base, main and stream, wired as in the cluster, behind one
//! front door that routes like the Ingress (`/main/*` → main, everything else → stream; base
//! only on an internal loopback port). Backends are embedded by default — a `redb` file for
//! users and profiles, an in-process lock and launched registry — and real Cassandra or Redis
//! when `CASSANDRA_NODES` / `REDIS_URLS` are given. The three services' own variables
//! (`LOCK_TTL`, `STREAM_INTERVAL`, `ADMIN_TOKEN`, …) apply unchanged.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use clap::Parser;
use kubescaler_base::cassandra::CassandraStore;
use kubescaler_base::embedded::EmbeddedStore;
use kubescaler_base::store::Store;
use kubescaler_main::launched::{LaunchedReader, RedisLaunched, RegistryError};
use kubescaler_shared::config::{CommonArgs, LogFormat};
use kubescaler_shared::http::Service;
use kubescaler_shared::{ProfileId, UserId};
use kubescaler_stream::locks::{InProcessLocks, PairLocks, RedisLocks};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

/// The front door's own flags; the services' variables are read as each service reads them.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kubescaler",
    version,
    about = "The whole kubescaler suite in one process (base, main, stream) behind one front door",
    after_help = "The services' own variables apply too: LOCK_TTL, LOCK_REFRESH, RELEASE_ON_DISCONNECT, \
STREAM_INTERVAL, STREAM_MESSAGE_BYTES, STREAM_SNDBUF, MAX_CONNECTIONS, HOSTNAME, ADMIN_TOKEN, \
TESTDATA_CONCURRENCY, CASSANDRA_KEYSPACE, SHUTDOWN_GRACE, RUST_LOG (see each service's --help)."
)]
pub struct Options {
    /// Port of the front door.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address of the front door (0.0.0.0 to be reachable from other machines).
    #[arg(long, env = "LISTEN_ADDRESS", default_value = "127.0.0.1")]
    pub listen_address: IpAddr,

    /// Directory of the embedded store (users and profiles survive restarts there).
    #[arg(long, env = "DATA_DIR", default_value = ".kubescaler-data")]
    pub data_dir: PathBuf,

    /// Use a real Cassandra (comma-separated `host:port`) instead of the embedded store.
    #[arg(long, env = "CASSANDRA_NODES")]
    pub cassandra_nodes: Option<String>,

    /// Use real Redis instances (comma-separated URLs) instead of the in-process registry.
    #[arg(long, env = "REDIS_URLS")]
    pub redis_urls: Option<String>,

    /// On a first start (no users yet), create test data and print a test agent link.
    #[arg(long, env = "DEMO")]
    pub demo: bool,

    /// `json` or `pretty`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// Everything `start` needs: the front door, and each service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub front: SocketAddr,
    pub data_dir: PathBuf,
    pub real_cassandra: bool,
    pub real_redis: bool,
    pub demo: bool,
    pub base: kubescaler_base::Config,
    pub main: kubescaler_main::Config,
    pub stream: kubescaler_stream::Config,
}

/// Parses a service's configuration from the environment, as its own binary would.
fn from_env<T: Parser>(name: &str) -> anyhow::Result<T> {
    let matches = T::command().no_binary_name(true).try_get_matches_from(Vec::<String>::new())?;
    T::from_arg_matches(&matches).map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

impl Options {
    pub fn into_config(self) -> anyhow::Result<Config> {
        let base: kubescaler_base::Config = from_env("base")?;
        let main: kubescaler_main::Config = from_env("main")?;
        let stream: kubescaler_stream::Config = from_env("stream")?;
        Ok(Config {
            front: SocketAddr::new(self.listen_address, self.port),
            data_dir: self.data_dir,
            real_cassandra: self.cassandra_nodes.is_some(),
            real_redis: self.redis_urls.is_some(),
            demo: self.demo,
            base,
            main,
            stream,
        })
    }
}

/// main's view of the in-process registry: a pair is launched while its lock is held.
struct InProcessLaunched(Arc<InProcessLocks>);

#[async_trait]
impl LaunchedReader for InProcessLaunched {
    fn backend(&self) -> &'static str {
        "in-process"
    }

    async fn ping(&self) -> Result<(), RegistryError> {
        Ok(())
    }

    async fn launched(&self, user: UserId, profiles: &[ProfileId]) -> Result<Vec<bool>, RegistryError> {
        Ok(profiles.iter().map(|p| self.0.is_launched(user, *p)).collect())
    }
}

/// The running suite.
pub struct Suite {
    base: Service,
    front: Service,
    url: String,
    demo: Option<CancellationToken>,
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Builds every part, binds the internal and the front door ports; `run_until_stopped` serves.
pub async fn start(mut config: Config, shutdown: CancellationToken) -> anyhow::Result<Suite> {
    let registry = Registry::new();
    let internal = CommonArgs {
        listen_address: IpAddr::from([127, 0, 0, 1]),
        log_format: config.base.common.log_format,
        shutdown_grace: config.stream.common.shutdown_grace,
    };

    let store: Arc<dyn Store> = if config.real_cassandra {
        Arc::new(CassandraStore::start(config.base.cassandra.clone()))
    } else {
        Arc::new(EmbeddedStore::open(&config.data_dir)?)
    };
    let base_router = kubescaler_base::app(store, shutdown.clone(), registry.clone())?;
    let base = Service::bind("base", &internal, 0, base_router, shutdown.clone()).await?;
    let base_url = format!("http://127.0.0.1:{}", base.port());
    config.main.base =
        kubescaler_shared::base_client::BaseClientConfig { url: base_url.clone(), ..config.main.base };
    config.stream.base =
        kubescaler_shared::base_client::BaseClientConfig { url: base_url, ..config.stream.base };

    let (locks, launched): (Arc<dyn PairLocks>, Arc<dyn LaunchedReader>) = if config.real_redis {
        (Arc::new(RedisLocks::new(&config.stream.redis)?), Arc::new(RedisLaunched::new(&config.main.redis)?))
    } else {
        let locks = Arc::new(InProcessLocks::new());
        (locks.clone(), Arc::new(InProcessLaunched(locks)))
    };
    let main = kubescaler_main::app(&config.main, launched, shutdown.clone(), registry.clone())?;
    let (stream, sessions) = kubescaler_stream::app(&config.stream, locks, shutdown.clone(), registry)?;
    let refresher = tokio::spawn(sessions.refresh_until_shutdown());

    // Like the Ingress: /main/* to main (which also answers with the prefix), the rest to stream.
    let front_router = Router::new().nest("/main", main).merge(stream);
    let front_args = CommonArgs { listen_address: config.front.ip(), ..internal };
    let front = Service::bind("kubescaler", &front_args, config.front.port(), front_router, shutdown.clone())
        .await?
        .with_stream_buffers(config.stream.stream_sndbuf)
        .with_drain(async move {
            let _ = refresher.await;
        });
    let shown =
        if config.front.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { config.front.ip() };
    let url = format!("http://{}", SocketAddr::new(shown, front.port()));
    Ok(Suite { base, front, url, demo: config.demo.then(|| shutdown.clone()) })
}

impl Suite {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.front.port()
    }

    /// Serves until the shutdown token fires; prints where to go first.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let url = self.url.clone();
        println!(
            "\nkubescaler is running at {url}\n  usage page      {url}/\n  users           {url}/main/users\n  \
             test data       curl -X POST '{url}/main/testdata?profiles=5&users_per_profile=3'\n  \
             suggested users {url}/main/suggested\n  test agent      {url}/index/<userId>/<profileId>\n"
        );
        if let Some(shutdown) = self.demo {
            tokio::spawn(async move {
                tokio::select! {
                    result = demo(&url) => match result {
                        Ok(Some(link)) => println!("demo data ready; open the test agent: {link}\n"),
                        Ok(None) => println!("data already present; the demo data was not created again\n"),
                        Err(e) => tracing::warn!(error = %e, "demo data not created"),
                    },
                    () = shutdown.cancelled() => {}
                }
            });
        }
        let (base, front) = tokio::join!(self.base.run_until_stopped(), self.front.run_until_stopped());
        base?;
        front?;
        Ok(())
    }
}

/// On an empty store: test data, then a link for a user in several profiles.
async fn demo(url: &str) -> anyhow::Result<Option<String>> {
    let http = reqwest::Client::new();
    let users: Vec<serde_json::Value> = http.get(format!("{url}/main/users")).send().await?.json().await?;
    if !users.is_empty() {
        return Ok(None);
    }
    http.post(format!("{url}/main/testdata?profiles=5&users_per_profile=3"))
        .send()
        .await?
        .error_for_status()?;
    loop {
        let progress: serde_json::Value =
            http.get(format!("{url}/main/testdata")).send().await?.json().await?;
        match progress["state"].as_str() {
            Some("running") => tokio::time::sleep(Duration::from_millis(100)).await,
            Some("done") => break,
            _ => anyhow::bail!("test data generation ended {progress}"),
        }
    }
    let suggested: Vec<String> = http.get(format!("{url}/main/suggested")).send().await?.json().await?;
    let profiles: Vec<serde_json::Value> =
        http.get(format!("{url}/main/profiles")).send().await?.json().await?;
    let user = suggested.first().ok_or_else(|| anyhow::anyhow!("no user in several profiles"))?;
    let profile = profiles
        .iter()
        .find(|p| p["users"].as_array().is_some_and(|users| users.iter().any(|u| u == user.as_str())))
        .and_then(|p| p["id"].as_str())
        .ok_or_else(|| anyhow::anyhow!("no profile of {user}"))?;
    Ok(Some(format!("{url}/index/{user}/{profile}")))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        super::Options::command().debug_assert();
    }
}
