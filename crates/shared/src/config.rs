//! Flags every service binary shares. Each is also an environment variable, because that is
//! how Kubernetes (ConfigMaps, Secrets) hands configuration to a container.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDRESS", default_value = "0.0.0.0")]
    pub listen_address: IpAddr,

    /// Log format: `json` (one object per line, for log collectors) or `pretty` (for people).
    /// Verbosity comes from RUST_LOG (default `info`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// How long in-flight requests may take to finish after SIGTERM/SIGINT before the
    /// process exits anyway.
    #[arg(long, env = "SHUTDOWN_GRACE", value_parser = duration, default_value = "10s")]
    pub shutdown_grace: Duration,
}

/// Where the Redis instances are. Several independent instances (not a cluster) make the
/// lock a Redlock with a quorum of N/2+1.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis instances, comma-separated URLs.
    #[arg(
        id = "redis_urls",
        long = "redis-urls",
        env = "REDIS_URLS",
        value_name = "REDIS_URLS",
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6379"
    )]
    pub urls: Vec<String>,

    /// Time allowed to connect to, and to hear back from, one Redis instance.
    #[arg(id = "redis_timeout", long = "redis-timeout", env = "REDIS_TIMEOUT", value_name = "REDIS_TIMEOUT", value_parser = duration, default_value = "1s")]
    pub timeout: Duration,
}

impl RedisArgs {
    /// How many instances must answer (or agree) for a result to count.
    pub fn quorum(&self) -> usize {
        self.urls.len() / 2 + 1
    }
}

/// An instance's name when `HOSTNAME` is not set (under Kubernetes it is the pod name).
pub const DEFAULT_HOSTNAME: &str = "localhost";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Parses a human duration such as `60s`, `100ms` or `1m 30s` (clap value parser).
pub fn duration(input: &str) -> Result<Duration, String> {
    humantime::parse_duration(input)
        .map_err(|e| format!("`{input}` is not a duration such as 10s or 250ms: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_human_form() {
        assert_eq!(duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(duration("100ms").unwrap(), Duration::from_millis(100));
        assert!(duration("60").unwrap_err().contains("not a duration"));
    }
}
