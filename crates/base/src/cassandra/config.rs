//! Where Cassandra is and how base talks to it: the flags, their defaults, and the checks of
//! the settings that go into DDL text.

use std::time::Duration;

use clap::Args;
use kubescaler_core::duration;

/// The settings' defaults: one definition for the flags and for [`CassandraConfig::new`].
pub mod defaults {
    use std::time::Duration;

    /// A single node on this machine, as `scripts/services.sh` runs it.
    pub const NODES: &str = "127.0.0.1:9042";
    pub const KEYSPACE: &str = "kubescaler";
    /// One copy: right for one node; a cluster of several names its own strategy.
    pub const REPLICATION: &str = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    /// Time to open a connection to a node, TLS-free and in-cluster: seconds mean it is down.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// A query with its retries; base answers 503 past it rather than hold the request.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
}

#[derive(Debug, Clone, Args)]
pub struct CassandraConfig {
    /// Cassandra contact points, comma-separated `host:port`.
    #[arg(
        id = "cassandra_nodes",
        long = "cassandra-nodes",
        env = "CASSANDRA_NODES",
        value_name = "CASSANDRA_NODES",
        value_delimiter = ',',
        default_value = defaults::NODES
    )]
    pub nodes: Vec<String>,

    /// Keyspace holding the `user` and `profile` tables; created when missing.
    #[arg(id = "cassandra_keyspace", long = "cassandra-keyspace", env = "CASSANDRA_KEYSPACE", value_name = "CASSANDRA_KEYSPACE", default_value = defaults::KEYSPACE, value_parser = keyspace_name)]
    pub keyspace: String,

    /// Replication of the keyspace when base creates it, as a CQL map.
    #[arg(
        id = "cassandra_replication",
        long = "cassandra-replication",
        env = "CASSANDRA_REPLICATION", value_name = "CASSANDRA_REPLICATION",
        default_value = defaults::REPLICATION,
        value_parser = replication_map
    )]
    pub replication: String,

    /// Time allowed to open a connection to a node.
    #[arg(id = "cassandra_connect_timeout", long = "cassandra-connect-timeout", env = "CASSANDRA_CONNECT_TIMEOUT", value_name = "CASSANDRA_CONNECT_TIMEOUT", value_parser = duration::parse, default_value = duration::text(defaults::CONNECT_TIMEOUT))]
    pub connect_timeout: Duration,

    /// Client-side timeout of one query (all its retries included).
    #[arg(id = "cassandra_request_timeout", long = "cassandra-request-timeout", env = "CASSANDRA_REQUEST_TIMEOUT", value_name = "CASSANDRA_REQUEST_TIMEOUT", value_parser = duration::parse, default_value = duration::text(defaults::REQUEST_TIMEOUT))]
    pub request_timeout: Duration,
}

impl CassandraConfig {
    /// Defaults, for tests and embedding: `nodes` and `keyspace` are the ones that vary.
    pub fn new(nodes: Vec<String>, keyspace: &str) -> Result<Self, InvalidSetting> {
        Ok(Self {
            nodes,
            keyspace: keyspace_name(keyspace)?,
            replication: defaults::REPLICATION.into(),
            connect_timeout: defaults::CONNECT_TIMEOUT,
            request_timeout: defaults::REQUEST_TIMEOUT,
        })
    }
}

/// A Cassandra setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSetting {
    #[error("`{0}` is not a keyspace name: 1-48 letters, digits or _, starting with a letter")]
    Keyspace(String),
    #[error(
        "`{0}` is not a CQL replication map such as {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )]
    Replication(String),
}

/// Keyspace names go into DDL text (they cannot be bound), so only Cassandra's unquoted
/// identifier form is accepted.
fn keyspace_name(name: &str) -> Result<String, InvalidSetting> {
    let valid = (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid { Ok(name.to_ascii_lowercase()) } else { Err(InvalidSetting::Keyspace(name.to_owned())) }
}

fn replication_map(map: &str) -> Result<String, InvalidSetting> {
    let trimmed = map.trim();
    let balanced = trimmed.starts_with('{') && trimmed.ends_with('}') && !trimmed.contains(';');
    if balanced && trimmed.contains("'class'") {
        Ok(trimmed.to_owned())
    } else {
        Err(InvalidSetting::Replication(map.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_names_are_plain_identifiers() {
        assert_eq!(keyspace_name("Kubescaler_1").unwrap(), "kubescaler_1");
        for bad in ["", "1ks", "ks-name", "ks;drop", &"k".repeat(49)] {
            assert!(keyspace_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_default_to_what_new_gives() {
        use clap::{CommandFactory, FromArgMatches, Parser};
        #[derive(Debug, Parser)]
        struct Flags {
            #[command(flatten)]
            cassandra: CassandraConfig,
        }
        if std::env::vars().any(|(name, _)| name.starts_with("CASSANDRA_")) {
            return; // the environment's settings, not the defaults
        }
        let matches =
            Flags::command().no_binary_name(true).try_get_matches_from(Vec::<String>::new()).unwrap();
        let flags = Flags::from_arg_matches(&matches).unwrap().cassandra;
        let new = CassandraConfig::new(vec![defaults::NODES.to_owned()], defaults::KEYSPACE).unwrap();
        assert_eq!(
            (flags.nodes, flags.keyspace, flags.replication, flags.connect_timeout, flags.request_timeout),
            (new.nodes, new.keyspace, new.replication, new.connect_timeout, new.request_timeout)
        );
    }

    #[test]
    fn replication_must_be_a_map() {
        assert!(replication_map("{'class': 'NetworkTopologyStrategy', 'dc1': 3}").is_ok());
        assert!(replication_map("SimpleStrategy").is_err());
        assert!(replication_map("{'class': 'X'}; DROP KEYSPACE x").is_err());
    }
}
