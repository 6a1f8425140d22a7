//! Where the Redis instances are: the `REDIS_URLS` and `REDIS_TIMEOUT` settings base, main and
//! stream share.

use std::time::Duration;

use clap::Args;
use kubescaler_core::duration;

/// The settings' defaults, typed: the one definition the flags render and code reads.
pub mod defaults {
    use std::time::Duration;

    /// One instance on this machine, as `scripts/services.sh` runs it.
    pub const URL: &str = "redis://127.0.0.1:6379";
    /// A Redis answers in well under a millisecond in the cluster; a second means it is away,
    /// and a lock refresh must learn that long before `LOCK_TTL` runs out.
    pub const TIMEOUT: Duration = Duration::from_secs(1);
}

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
        default_value = defaults::URL
    )]
    pub urls: Vec<String>,

    /// Time allowed to connect to, and to hear back from, one Redis instance.
    #[arg(id = "redis_timeout", long = "redis-timeout", env = "REDIS_TIMEOUT", value_name = "REDIS_TIMEOUT", value_parser = duration::parse, default_value = duration::text(defaults::TIMEOUT))]
    pub timeout: Duration,
}
