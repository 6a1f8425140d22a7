//! Flags every service binary shares. Each is also an environment variable, because that is
//! how Kubernetes (ConfigMaps, Secrets) hands configuration to a container.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use kubescaler_core::duration;

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
    #[arg(long, env = "SHUTDOWN_GRACE", value_parser = duration::parse, default_value = duration::text(DEFAULT_SHUTDOWN_GRACE))]
    pub shutdown_grace: Duration,
}

/// Within Kubernetes' default 30 s termination grace, with room for the drain of every lock
/// after the requests.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// An instance's name when `HOSTNAME` is not set (under Kubernetes it is the pod name).
pub const DEFAULT_HOSTNAME: &str = "localhost";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The settings `C` at their defaults, whatever the environment says: what a test or an
/// embedding starts from, setting only the fields it needs — so a new setting, with its
/// default, changes none of them.
pub fn defaults<C: clap::Parser>() -> Result<C, clap::Error> {
    let matches = C::command()
        .mut_args(|arg| arg.env(None::<&str>))
        .no_binary_name(true)
        .try_get_matches_from(std::iter::empty::<String>())?;
    C::from_arg_matches(&matches)
}
