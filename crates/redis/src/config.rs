//! Where the Redis instances are: the `REDIS_URLS` and `REDIS_TIMEOUT` settings base, main and
//! stream share.

use std::time::Duration;

use clap::Args;
use kubescaler_core::duration;

/// Where the Redis instances are. Several independent instances (not a cluster) make the
/// lock a Redlock with a quorum of them ([`quorum`](crate::instances::quorum)).
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
    #[arg(id = "redis_timeout", long = "redis-timeout", env = "REDIS_TIMEOUT", value_name = "REDIS_TIMEOUT", value_parser = duration::parse, default_value = "1s")]
    pub timeout: Duration,
}
