//! main's settings: every flag is also an environment variable, because that is how
//! Kubernetes (ConfigMaps, Secrets) hands configuration to a container.

use clap::Parser;
use kubescaler_base_client::BaseClientConfig;
use kubescaler_redis::RedisArgs;
use kubescaler_server::config::{CommonArgs, DEFAULT_HOSTNAME};

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
