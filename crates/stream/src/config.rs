//! stream's settings: every flag is also an environment variable, because that is how
//! Kubernetes (ConfigMaps, Secrets) hands configuration to a container.

use std::time::Duration;

use clap::Parser;
use kubescaler_base_client::BaseClientConfig;
use kubescaler_core::duration;
use kubescaler_redis::RedisArgs;
use kubescaler_server::config::{CommonArgs, DEFAULT_HOSTNAME};

use crate::rebalance::Tolerance;

/// The shortest `REBALANCE_PERIOD`: each period publishes to every Redis instance, and the
/// fleet's view needs a few round trips per period to be worth deciding on.
const MIN_REBALANCE_PERIOD: Duration = Duration::from_millis(10);

/// The shortest `BINDING_SWEEP`: a sweep asks base about every held pair, and more than once
/// a second would make it the polling that announced changes replace.
const MIN_BINDING_SWEEP: Duration = Duration::from_secs(1);

/// Port stream listens on when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 8083;

/// The settings' defaults, typed: the one definition the flags render (`--help`) and code reads.
pub mod defaults {
    use std::time::Duration;

    /// Long enough that a stream survives a Redis failover or a few lost refreshes; short
    /// enough that a pair whose instance died is free again within a minute.
    pub const LOCK_TTL: Duration = Duration::from_secs(60);
    /// Ten messages a second of [`STREAM_MESSAGE_BYTES`]: about 2 Mbit/s per client.
    pub const STREAM_INTERVAL: Duration = Duration::from_millis(100);
    pub const STREAM_MESSAGE_BYTES: usize = 25_000;
    /// Small, so a slow reader makes the service skip messages rather than the kernel queue
    /// them: a few messages' worth.
    pub const STREAM_SNDBUF: usize = 65_536;
    /// The safety net only: announced changes end an unbound stream within a moment.
    pub const BINDING_SWEEP: Duration = Duration::from_secs(300);
    pub const MAX_CONNECTIONS: usize = 10_000;
}

/// stream's configuration: every flag is also an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(name = "stream", version, about = "kubescaler stream: Redlock-guarded SSE and the test agent page")]
pub struct Config {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    #[command(flatten)]
    pub base: BaseClientConfig,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// Lifetime of a pair's lock and launched marker after their last refresh.
    #[arg(long, env = "LOCK_TTL", value_parser = duration::parse, default_value = duration::text(defaults::LOCK_TTL))]
    pub lock_ttl: Duration,

    /// How often the refresher extends every held lock and marker (less than LOCK_TTL)
    /// [default: LOCK_TTL / 6, 10s for the default TTL: five refreshes may fail before a lock
    /// can expire].
    #[arg(long, env = "LOCK_REFRESH", value_parser = duration::parse)]
    pub lock_refresh: Option<Duration>,

    /// Release lock and marker as soon as a client disconnects, instead of letting them
    /// expire (which keeps the pair refused for up to LOCK_TTL, so a client that reconnects
    /// elsewhere at once is refused until then).
    #[arg(long, env = "RELEASE_ON_DISCONNECT", default_value_t = false, action = clap::ArgAction::Set)]
    pub release_on_disconnect: bool,

    /// Time between messages (0: as fast as possible, for benchmarks).
    #[arg(long, env = "STREAM_INTERVAL", value_parser = duration::parse, default_value = duration::text(defaults::STREAM_INTERVAL))]
    pub stream_interval: Duration,

    /// Random data per message, in bytes.
    #[arg(long, env = "STREAM_MESSAGE_BYTES", default_value_t = defaults::STREAM_MESSAGE_BYTES)]
    pub stream_message_bytes: usize,

    /// Kernel send buffer of each connection, in bytes: small, so a slow reader makes the
    /// service skip messages instead of the kernel hoarding stale ones.
    #[arg(long, env = "STREAM_SNDBUF", default_value_t = defaults::STREAM_SNDBUF)]
    pub stream_sndbuf: usize,

    /// How often every held pair's binding is checked again with base, in batches, whatever
    /// base announced: the safety net for a change whose announcement was lost (base announces
    /// each change on Redis, and a pair that is no longer bound ends within a moment of it).
    #[arg(long, env = "BINDING_SWEEP", value_parser = duration::parse, default_value = duration::text(defaults::BINDING_SWEEP))]
    pub binding_sweep: Duration,

    /// Streams this instance serves at once; more are refused with 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Name put in every message (`host`), and this instance's name in the fleet: the pod name
    /// under Kubernetes; unique per instance.
    #[arg(long, env = "HOSTNAME", default_value = DEFAULT_HOSTNAME)]
    pub hostname: String,

    /// Hand streams off to other instances while this one holds more than its share of the
    /// fleet's (after a scale-up, a new instance gets only new connections otherwise).
    #[arg(long, env = "REBALANCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub rebalance: bool,

    /// How often the instance publishes its open streams and decides whether to hand some off
    /// [default: LOCK_REFRESH].
    #[arg(long, env = "REBALANCE_PERIOD", value_parser = duration::parse)]
    pub rebalance_period: Option<Duration>,

    /// Streams an instance may hold over its fair share before it hands any off: a number of
    /// streams (3) or a percentage of the share (10%, at least one stream).
    #[arg(long, env = "REBALANCE_TOLERANCE", default_value_t = Tolerance::default())]
    pub rebalance_tolerance: Tolerance,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl Config {
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.lock_refresh() < self.lock_ttl,
            "LOCK_REFRESH ({:?}) must be shorter than LOCK_TTL ({:?}), or locks expire between refreshes",
            self.lock_refresh(),
            self.lock_ttl
        );
        anyhow::ensure!(self.max_connections > 0, "MAX_CONNECTIONS must be at least 1");
        anyhow::ensure!(
            self.binding_sweep >= MIN_BINDING_SWEEP,
            "BINDING_SWEEP must be at least {MIN_BINDING_SWEEP:?}"
        );
        anyhow::ensure!(
            self.rebalance_period() >= MIN_REBALANCE_PERIOD,
            "REBALANCE_PERIOD must be at least {MIN_REBALANCE_PERIOD:?}"
        );
        Ok(())
    }

    pub fn lock_refresh(&self) -> Duration {
        self.lock_refresh.unwrap_or(self.lock_ttl / 6)
    }

    pub fn rebalance_period(&self) -> Duration {
        self.rebalance_period.unwrap_or_else(|| self.lock_refresh())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        super::Config::command().debug_assert();
    }

    #[test]
    fn the_flags_defaults_are_the_typed_ones() {
        let config: super::Config = kubescaler_server::config::defaults().unwrap();
        assert_eq!(config.lock_ttl, super::defaults::LOCK_TTL);
        assert_eq!(config.lock_refresh(), std::time::Duration::from_secs(10), "a sixth of the TTL");
        assert_eq!(config.stream_interval, super::defaults::STREAM_INTERVAL);
        assert_eq!(config.binding_sweep, super::defaults::BINDING_SWEEP);
        assert_eq!(config.max_connections, super::defaults::MAX_CONNECTIONS);
    }
}
