//! Getting a session: connecting in the background with backoff until a node answers, then
//! creating the schema and preparing the statements.

use std::sync::Arc;
use std::time::Duration;

use kubescaler_core::sync::lock;
use kubescaler_server::error::chain;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::ExecutionError;
use scylla::statement::Consistency;
use tokio_util::sync::CancellationToken;

use super::config::CassandraConfig;
use super::statements::prepare;
use super::{Connected, Shared};

/// The pause after the first failed connection attempt, doubled after each next one up to
/// [`CONNECT_BACKOFF_MAX`]: a node that is starting answers within seconds, and a node that is
/// down is not asked more than every couple of seconds.
const CONNECT_BACKOFF: Duration = Duration::from_millis(200);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why an attempt to connect failed: the last one is the cause of every 503 until one succeeds.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("opening a session")]
    Session(#[from] scylla::errors::NewSessionError),
    #[error("creating the schema")]
    Schema(#[source] ExecutionError),
    #[error("preparing statements")]
    Prepare(#[source] scylla::errors::PrepareError),
}

pub(super) async fn connect_until_done(shared: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = CONNECT_BACKOFF;
    loop {
        let attempt = tokio::select! {
            () = stop.cancelled() => return,
            attempt = connect(&shared.config) => attempt,
        };
        match attempt {
            Ok(connected) => {
                tracing::info!(nodes = ?shared.config.nodes, keyspace = %shared.config.keyspace, "connected to Cassandra");
                let _ = shared.connected.set(connected);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %chain(&e), retry_in = ?backoff, "cannot connect to Cassandra yet");
                *lock(&shared.last_error) = Some(Arc::new(e));
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
    }
}

async fn connect(config: &CassandraConfig) -> Result<Connected, ConnectError> {
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .request_timeout(Some(config.request_timeout))
        .build();
    let session = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(config.connect_timeout)
        .default_execution_profile_handle(profile.into_handle())
        .build()
        .await?;
    create_schema(&session, config).await.map_err(ConnectError::Schema)?;
    let statements = prepare(&session, &config.keyspace).await.map_err(ConnectError::Prepare)?;
    Ok(Connected { session, statements })
}

/// The schema base reads and writes, as idempotent DDL (`IF NOT EXISTS`) in the order to run
/// it: the keyspace with `replication` (a CQL map), the `user` and `profile` tables, and the
/// index that serves "profiles of a user". base runs it on connecting; the benchmarks seed
/// keyspaces made by it.
pub fn schema(keyspace: &str, replication: &str) -> Vec<String> {
    let ks = keyspace;
    vec![
        format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"),
        format!("CREATE TABLE IF NOT EXISTS {ks}.user (id uuid PRIMARY KEY, name text)"),
        format!("CREATE TABLE IF NOT EXISTS {ks}.profile (id uuid PRIMARY KEY, users set<uuid>)"),
        // "Profiles of a user" is served by this index; a query that needed ALLOW FILTERING
        // would scan every profile.
        format!("CREATE INDEX IF NOT EXISTS profile_users_idx ON {ks}.profile (VALUES(users))"),
    ]
}

async fn create_schema(session: &Session, config: &CassandraConfig) -> Result<(), ExecutionError> {
    for statement in schema(&config.keyspace, &config.replication) {
        session.query_unpaged(statement, &[]).await?;
    }
    Ok(())
}
