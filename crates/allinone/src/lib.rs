//! The whole suite in one process: base, main and stream, wired as in the cluster, behind one
//! front door that routes like the Ingress (`/main/*` → main, everything else → stream; base
//! only on an internal loopback port). Backends are embedded by default — a `redb` file for
//! users and profiles, an in-process lock and launched registry — and real Cassandra or Redis
//! when `CASSANDRA_NODES` / `REDIS_URLS` are given. Every setting of the three services is a
//! flag (and variable) of the all-in-one too: see [`command`].

use std::collections::HashSet;
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::Uri;
use axum::routing::any;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches};
use kubescaler_base::cassandra::CassandraStore;
use kubescaler_base::changes::{Announce, RedisAnnouncer};
use kubescaler_base::embedded::EmbeddedStore;
use kubescaler_base::store::Store;
use kubescaler_main::Mount;
use kubescaler_main::launched::{InProcessLaunched, LaunchedReader, RedisLaunched};
use kubescaler_server::Service;
use kubescaler_server::config::{CommonArgs, LogFormat};
use kubescaler_stream::changes::BindingSource;
use kubescaler_stream::locks::{InProcessLocks, PairLocks, RedisLocks};
use prometheus::Registry;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Logging when `RUST_LOG` is not set: the services' `info`, without a line per request, which
/// would bury the banner under the demo's own requests and main's calls to base. `RUST_LOG=info`
/// brings them back.
pub const DEFAULT_LOG_FILTER: &str = "info,tower_http=warn";

/// How often the banner's wait asks whether the front door answers, and how many times: the
/// port is bound before serving starts, so it answers within milliseconds; five seconds at most.
const SERVING_POLL: Duration = Duration::from_millis(50);
const SERVING_POLLS: u32 = 100;
/// How long the demo waits for a real Cassandra to connect (it takes seconds), asking this often.
const STORE_WAIT: Duration = Duration::from_secs(60);
const STORE_POLL: Duration = Duration::from_millis(100);
/// Binding changes stream has not read yet before it counts as behind (and re-checks every
/// pair it holds): far more than a burst of writes makes between two reads.
const BINDING_CHANGES_BUFFERED: usize = 1_024;
/// How often the demo asks whether its test data are made (a few hundred requests to base).
const DEMO_POLL: Duration = Duration::from_millis(100);

/// The front door's own settings, and the choice of backends.
#[derive(Debug, Clone, Args)]
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

    /// A real Cassandra (comma-separated `host:port`) instead of the embedded store. On the
    /// command line this is base's `--cassandra-nodes`: given there (or as CASSANDRA_NODES),
    /// it selects Cassandra at those nodes; its default does not.
    #[arg(skip)]
    pub cassandra_nodes: Option<String>,

    /// Real Redis instances (comma-separated URLs) instead of the in-process registry; on the
    /// command line, `--redis-urls` / REDIS_URLS, as for `cassandra_nodes`.
    #[arg(skip)]
    pub redis_urls: Option<String>,

    /// On a first start (no users yet), create test data; then print a test agent link.
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
    pub log_format: LogFormat,
    pub base: kubescaler_base::Config,
    pub main: kubescaler_main::Config,
    pub stream: kubescaler_stream::Config,
}

/// The all-in-one's command line: the front door's flags, then every flag of base, main and
/// stream, each once, under a heading that says which services read it. A setting the front
/// door has itself (`--port`, `--listen-address`, `--log-format`) is the front door's; one that
/// several services read (`--hostname`, `--redis-urls`, `--shutdown-grace`) takes one value
/// for all of them, as they run in one process. Built from the services' own definitions, so a
/// setting added to a service is a flag here without further work.
pub fn command() -> clap::Command {
    let front = Options::augment_args(clap::Command::new("kubescaler"))
        .version(env!("CARGO_PKG_VERSION"))
        .about("The whole kubescaler suite in one process (base, main, stream) behind one front door")
        .after_help(
            "Logging: RUST_LOG (default: info without a line per request; RUST_LOG=info shows them).",
        );
    let taken: HashSet<clap::Id> = front.get_arguments().map(|a| a.get_id().clone()).collect();
    let services = [
        ("base", kubescaler_base::Config::command()),
        ("main", kubescaler_main::Config::command()),
        ("stream", kubescaler_stream::Config::command()),
    ];
    let mut settings: Vec<(clap::Arg, Vec<&'static str>)> = Vec::new();
    for (service, command) in &services {
        for arg in command.get_arguments() {
            let id = arg.get_id();
            if taken.contains(id) || id == "help" || id == "version" {
                continue;
            }
            match settings.iter_mut().find(|(known, _)| known.get_id() == id) {
                Some((_, readers)) => readers.push(service),
                None => settings.push((arg.clone(), vec![service])),
            }
        }
    }
    settings.into_iter().fold(front, |command, (arg, readers)| {
        let heading = match readers.as_slice() {
            ["base"] => "base",
            ["main"] => "main",
            ["stream"] => "stream",
            ["main", "stream"] => "main and stream",
            _ => "All services",
        };
        // base answers on an internal port here; main and stream are pointed at it.
        let internal = arg.get_id() == "base_url";
        command.arg(arg.help_heading(heading).hide(internal))
    })
}

/// A value the user gave (flag or variable), not a default; lists joined with commas.
fn given(matches: &ArgMatches, id: &str) -> Option<String> {
    match matches.value_source(id) {
        Some(ValueSource::DefaultValue) | None => None,
        Some(_) => matches.get_many::<String>(id).map(|values| values.cloned().collect::<Vec<_>>().join(",")),
    }
}

fn list(values: &str) -> Vec<String> {
    values.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

impl Config {
    /// From the process's command line and environment; prints clap's message and exits on an
    /// error, as any clap program does.
    pub fn parse() -> Self {
        let mut command = command();
        let matches = command.get_matches_mut();
        Self::from_matches(&matches).unwrap_or_else(|e| -> Self { e.format(&mut command).exit() })
    }

    /// From `args` (the program's name first) and the environment.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = command();
        let matches = command.try_get_matches_from_mut(args)?;
        Self::from_matches(&matches).map_err(|e| e.format(&mut command))
    }

    fn from_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let options = Options {
            cassandra_nodes: given(matches, "cassandra_nodes"),
            redis_urls: given(matches, "redis_urls"),
            ..Options::from_arg_matches(matches)?
        };
        let (base, main, stream) = services(matches)?;
        Ok(options.assemble(base, main, stream))
    }
}

type Services = (kubescaler_base::Config, kubescaler_main::Config, kubescaler_stream::Config);

fn services(matches: &ArgMatches) -> Result<Services, clap::Error> {
    Ok((
        kubescaler_base::Config::from_arg_matches(matches)?,
        kubescaler_main::Config::from_arg_matches(matches)?,
        kubescaler_stream::Config::from_arg_matches(matches)?,
    ))
}

impl Options {
    /// The suite with these front door settings and backends, and the services' settings
    /// from the environment (and their defaults). For embedding and tests; the binary reads
    /// its command line with [`Config::parse`].
    pub fn into_config(self) -> anyhow::Result<Config> {
        let matches = command().try_get_matches_from(["kubescaler"])?;
        let (base, main, stream) = services(&matches)?;
        Ok(self.assemble(base, main, stream))
    }

    fn assemble(
        self,
        mut base: kubescaler_base::Config,
        mut main: kubescaler_main::Config,
        mut stream: kubescaler_stream::Config,
    ) -> Config {
        if let Some(nodes) = &self.cassandra_nodes {
            base.cassandra.nodes = list(nodes);
        }
        if let Some(urls) = &self.redis_urls {
            base.redis.urls = list(urls);
            main.redis.urls = list(urls);
            stream.redis.urls = list(urls);
        }
        base.common.log_format = self.log_format;
        main.common.log_format = self.log_format;
        stream.common.log_format = self.log_format;
        Config {
            front: SocketAddr::new(self.listen_address, self.port),
            data_dir: self.data_dir,
            real_cassandra: self.cassandra_nodes.is_some(),
            real_redis: self.redis_urls.is_some(),
            demo: self.demo,
            log_format: self.log_format,
            base,
            main,
            stream,
        }
    }
}

/// The running suite.
pub struct Suite {
    base: Service,
    front: Service,
    url: String,
    demo: bool,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
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
        log_format: config.log_format,
        shutdown_grace: config.stream.common.shutdown_grace,
    };

    let store: Arc<dyn Store> = if config.real_cassandra {
        Arc::new(CassandraStore::start(config.base.cassandra.clone()))
    } else {
        Arc::new(EmbeddedStore::open(&config.data_dir)?)
    };
    // base announces binding changes where stream listens: on Redis with the real registry,
    // in this process with the in-process one.
    let (changes, bindings): (Arc<dyn Announce>, BindingSource) = if config.real_redis {
        let announcer = RedisAnnouncer::start(&config.base.redis, &registry)?;
        (Arc::new(announcer), BindingSource::Redis(config.stream.redis.clone()))
    } else {
        let (changes, bindings) = broadcast::channel(BINDING_CHANGES_BUFFERED);
        (Arc::new(changes), BindingSource::InProcess(bindings))
    };
    let base_router = kubescaler_base::app(
        store.clone(),
        changes,
        &config.base.hostname,
        shutdown.clone(),
        registry.clone(),
    )?;
    let base = Service::bind("base", &internal, 0, base_router, shutdown.clone()).await?;
    let base_url = format!("http://127.0.0.1:{}", base.port());
    config.main.base.url = base_url.clone();
    config.stream.base.url = base_url;

    let (locks, launched): (Arc<dyn PairLocks>, Arc<dyn LaunchedReader>) = if config.real_redis {
        (Arc::new(RedisLocks::new(&config.stream.redis)?), Arc::new(RedisLaunched::new(&config.main.redis)?))
    } else {
        let locks = Arc::new(InProcessLocks::start());
        // main reads it as launched while the pair's lock is held.
        let launched = InProcessLaunched::new({
            let locks = locks.clone();
            move |user, profile| locks.is_launched(user, profile)
        });
        (locks, Arc::new(launched))
    };
    let main = kubescaler_main::app(&config.main, launched, Mount::Root, shutdown.clone(), registry.clone())?;
    let kubescaler_stream::App { router: stream, refresher, .. } =
        kubescaler_stream::app(&config.stream, locks, bindings, shutdown.clone(), registry)?;

    // Like the Ingress: /main and below to main, mounted here once, the rest to stream.
    // `/main/` is main's root too, as `/main` is; nesting gives only the latter.
    let main_root = main.clone();
    let front_router = Router::new()
        .nest("/main", main)
        .route(
            "/main/",
            any(move |mut request: Request| {
                *request.uri_mut() = Uri::from_static("/");
                // main matches `/` afresh; the front door's match would be prefixed to its route.
                request.extensions_mut().remove::<MatchedPath>();
                main_root.clone().oneshot(request)
            }),
        )
        .merge(stream);
    let front_args = CommonArgs { listen_address: config.front.ip(), ..internal };
    let front = Service::bind("kubescaler", &front_args, config.front.port(), front_router, shutdown.clone())
        .await?
        .with_stream_buffers(config.stream.stream_sndbuf)
        .with_drain(refresher.drain());
    let shown =
        if config.front.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { config.front.ip() };
    let url = format!("http://{}", SocketAddr::new(shown, front.port()));
    Ok(Suite { base, front, url, demo: config.demo, store, shutdown })
}

impl Suite {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.front.port()
    }

    /// Serves until the shutdown token fires. Prints where to go first once the front door
    /// answers (after the demo data, with `--demo`), so that it is the last thing on the screen.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let (url, shutdown) = (self.url.clone(), self.shutdown.clone());
        let demo = self.demo.then(|| self.store.clone());
        tokio::spawn(async move {
            tokio::select! {
                text = banner(&url, demo) => println!("{text}"),
                () = shutdown.cancelled() => {}
            }
        });
        let (base, front) = tokio::join!(self.base.run_until_stopped(), self.front.run_until_stopped());
        base?;
        front?;
        Ok(())
    }
}

/// The banner: the suite's main URLs and, with the demo's store, a link to the test agent for
/// a user of the demo data (created first on an empty store).
async fn banner(url: &str, demo: Option<Arc<dyn Store>>) -> String {
    let mut text = format!(
        "\nkubescaler is running at {url}\n  usage page      {url}/\n  users           {url}/main/users\n  \
         test data       curl -X POST '{url}/main/testdata?profiles=5&users_per_profile=3'\n  \
         suggested users {url}/main/suggested\n"
    );
    // A proxy from the environment has no business between the suite and itself.
    let http = reqwest::Client::builder().no_proxy().build().unwrap_or_default();
    wait_serving(&http, url).await;
    let link = if let Some(store) = demo {
        // A real Cassandra takes a moment to connect to; the demo data would fail before.
        wait_store(&*store, STORE_WAIT).await;
        match demo_data(&http, url).await {
            Ok(created) => {
                text.push_str(if created {
                    "\ndemo data created: 5 profiles of 3 users\n"
                } else {
                    "\ndata already present; the demo data was not created again\n"
                });
                agent_link(&http, url).await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "no user to show the test agent with");
                    None
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "demo data not created");
                None
            }
        }
    } else {
        None
    };
    match link {
        Some(link) => text.push_str(&format!("  open the test agent: {link}\n")),
        None => text.push_str(&format!("  test agent      {url}/index/<userId>/<profileId>\n")),
    }
    text
}

/// Returns once the front door answers: its listener is bound before serving starts.
async fn wait_serving(http: &reqwest::Client, url: &str) {
    for _ in 0..SERVING_POLLS {
        if http.get(format!("{url}/livez")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(SERVING_POLL).await;
    }
}

/// Returns once the store answers, or after `within`. Asked directly rather than through
/// `/readyz`, whose every refusal meanwhile would be logged as a failed request.
async fn wait_store(store: &dyn Store, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while store.ping().await.is_err() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(STORE_POLL).await;
    }
}

/// On an empty store, test data; `true` when it was created.
async fn demo_data(http: &reqwest::Client, url: &str) -> anyhow::Result<bool> {
    let users: Vec<serde_json::Value> =
        http.get(format!("{url}/main/users")).send().await?.error_for_status()?.json().await?;
    if !users.is_empty() {
        return Ok(false);
    }
    http.post(format!("{url}/main/testdata?profiles=5&users_per_profile=3"))
        .send()
        .await?
        .error_for_status()?;
    loop {
        let progress: serde_json::Value =
            http.get(format!("{url}/main/testdata")).send().await?.json().await?;
        match progress["state"].as_str() {
            Some("running") => tokio::time::sleep(DEMO_POLL).await,
            Some("done") => return Ok(true),
            _ => anyhow::bail!("test data generation ended {progress}"),
        }
    }
}

/// The test agent of a user in several profiles if there is one, else of any bound user.
async fn agent_link(http: &reqwest::Client, url: &str) -> anyhow::Result<Option<String>> {
    let suggested: Vec<String> =
        http.get(format!("{url}/main/suggested")).send().await?.error_for_status()?.json().await?;
    let profiles: Vec<serde_json::Value> =
        http.get(format!("{url}/main/profiles")).send().await?.error_for_status()?.json().await?;
    let users_of = |p: &serde_json::Value| -> Vec<String> {
        p["users"].as_array().map_or_else(Vec::new, |users| {
            users.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect()
        })
    };
    let pair = suggested
        .iter()
        .find_map(|user| {
            let profile = profiles.iter().find(|p| users_of(p).contains(user))?;
            Some((user.clone(), profile["id"].as_str()?.to_owned()))
        })
        .or_else(|| {
            profiles
                .iter()
                .find_map(|p| Some((users_of(p).into_iter().next()?, p["id"].as_str()?.to_owned())))
        });
    Ok(pair.map(|(user, profile)| format!("{url}/index/{user}/{profile}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::{Config, command};

    #[test]
    fn flags_are_consistent() {
        // clap checks its definitions only when a command line is parsed; do it here, not at
        // a user's first start.
        command().debug_assert();
    }

    #[test]
    fn service_settings_are_flags() {
        let config = Config::try_parse_from([
            "kubescaler",
            "--lock-ttl",
            "5s",
            "--lock-refresh",
            "1s",
            "--stream-interval",
            "250ms",
            "--admin-token",
            "secret",
            "--testdata-concurrency",
            "3",
            "--hostname",
            "box-1",
            "--shutdown-grace",
            "2s",
        ])
        .unwrap();
        assert_eq!(config.stream.lock_ttl, Duration::from_secs(5));
        assert_eq!(config.stream.lock_refresh(), Duration::from_secs(1));
        assert_eq!(config.stream.stream_interval, Duration::from_millis(250));
        assert_eq!(config.main.admin_token.as_deref(), Some("secret"));
        assert_eq!(config.main.testdata_concurrency, 3);
        let names = [&config.base.hostname, &config.main.hostname, &config.stream.hostname];
        assert_eq!(names, ["box-1"; 3], "one HOSTNAME for the three services");
        assert_eq!(config.stream.common.shutdown_grace, Duration::from_secs(2));
    }

    #[test]
    fn given_addresses_select_the_real_backends_and_are_used() {
        let config = Config::try_parse_from([
            "kubescaler",
            "--cassandra-nodes",
            "10.0.0.1:9042,10.0.0.2:9042",
            "--redis-urls",
            "redis://127.0.0.1:1",
        ])
        .unwrap();
        assert!(config.real_cassandra);
        assert_eq!(config.base.cassandra.nodes, ["10.0.0.1:9042", "10.0.0.2:9042"]);
        assert!(config.real_redis);
        assert_eq!(config.main.redis.urls, ["redis://127.0.0.1:1"]);
        assert_eq!(config.stream.redis.urls, ["redis://127.0.0.1:1"]);

        // The defaults of those flags are not a choice: without them (and without the
        // environment, which may set them), the embedded backends.
        let matches =
            command().mut_args(|arg| arg.env(None::<&str>)).try_get_matches_from(["kubescaler"]).unwrap();
        let config = Config::from_matches(&matches).unwrap();
        assert!(!config.real_cassandra);
        assert!(!config.real_redis);
    }

    #[test]
    fn bad_and_unknown_flags_are_named() {
        let error = Config::try_parse_from(["kubescaler", "--lock-ttl", "abc"]).unwrap_err().to_string();
        assert!(error.contains("--lock-ttl") && error.contains("not a duration"), "{error}");
        let error = Config::try_parse_from(["kubescaler", "--lock-tll", "5s"]).unwrap_err().to_string();
        assert!(error.contains("unexpected argument '--lock-tll'"), "{error}");
    }

    #[test]
    fn help_lists_every_setting_once() {
        let help = command().render_long_help().to_string();
        for variable in [
            "PORT",
            "DATA_DIR",
            "DEMO",
            "CASSANDRA_NODES",
            "CASSANDRA_KEYSPACE",
            "REDIS_URLS",
            "ADMIN_TOKEN",
            "TESTDATA_CONCURRENCY",
            "LOCK_TTL",
            "LOCK_REFRESH",
            "RELEASE_ON_DISCONNECT",
            "STREAM_INTERVAL",
            "STREAM_MESSAGE_BYTES",
            "MAX_CONNECTIONS",
            "REBALANCE",
            "HOSTNAME",
            "SHUTDOWN_GRACE",
        ] {
            assert!(help.contains(&format!("[env: {variable}")), "{variable} missing from\n{help}");
        }
        assert_eq!(help.matches("--hostname <").count(), 1, "{help}");
        assert!(!help.contains("BASE_URL"), "base is internal here: {help}");
    }
}
