//! base's settings: every flag is also an environment variable, because that is how
//! Kubernetes (ConfigMaps, Secrets) hands configuration to a container.

use clap::Parser;
use kubescaler_redis::RedisArgs;
use kubescaler_server::config::{CommonArgs, DEFAULT_HOSTNAME};

use crate::cassandra::CassandraConfig;

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

    /// Where base announces each change that may unbind a user from a profile (stream listens
    /// there and ends such streams at once). Not a dependency of base's readiness: a change
    /// Redis does not take is caught by stream's sweep.
    #[command(flatten)]
    pub redis: RedisArgs,

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
