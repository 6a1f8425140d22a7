//! The all-in-one's command line and the configuration it makes: the front door's own flags,
//! then every flag of base, main and stream, each once.

use std::collections::HashSet;
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches};
use kubescaler_server::config::LogFormat;

/// Logging when `RUST_LOG` is not set: the services' `info`, without a line per request, which
/// would bury the banner under the demo's own requests and main's calls to base. `RUST_LOG=info`
/// brings them back.
pub const DEFAULT_LOG_FILTER: &str = "info,tower_http=warn";

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
