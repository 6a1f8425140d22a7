//! `cql-ping`: is Cassandra ready? Readiness means "a CQL query answers", not "the port is
//! open" — Cassandra opens the native port before it can serve queries. Prints the node's
//! release version and exits 0, or exits non-zero with the reason.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use kubescaler_core::duration;
use scylla::client::session_builder::SessionBuilder;

const QUERY: &str = "SELECT release_version FROM system.local";

#[derive(Debug, Args)]
pub struct CqlPing {
    /// Contact points, `host:port`, comma-separated.
    #[arg(long, env = "CASSANDRA_NODES", default_value = "127.0.0.1:9042")]
    nodes: String,
    /// Time allowed for connecting and the query together.
    #[arg(long, value_parser = duration::parse, default_value = "2s")]
    timeout: Duration,
}

/// Exits 1 with one line on stderr (the root cause, whatever `RUST_BACKTRACE` says) when
/// Cassandra does not answer.
pub async fn run(args: CqlPing) -> anyhow::Result<()> {
    let CqlPing { nodes, timeout } = args;
    let answer = tokio::time::timeout(timeout, release_version(&nodes, timeout))
        .await
        .unwrap_or_else(|_| Err(anyhow!("no answer within {}", humantime::format_duration(timeout))));
    match answer {
        Ok(version) => {
            println!("{version}");
            Ok(())
        }
        Err(e) => {
            eprintln!("cql-ping: Cassandra at {nodes} did not answer `{QUERY}`: {}", e.root_cause());
            std::process::exit(1)
        }
    }
}

async fn release_version(nodes: &str, timeout: Duration) -> anyhow::Result<String> {
    let session = SessionBuilder::new()
        .known_nodes(nodes.split(',').map(str::trim).filter(|n| !n.is_empty()))
        .connection_timeout(timeout)
        .fetch_schema_metadata(false)
        .build()
        .await?;
    let result = session.query_unpaged(QUERY, ()).await?;
    let (version,) = result.into_rows_result()?.single_row::<(String,)>()?;
    Ok(version)
}
