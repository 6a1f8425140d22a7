//! The Cassandra store.
//!
//! The session is made in the background: base starts, serves `/livez` and answers 503 while
//! Cassandra is unreachable, and becomes ready by itself once a node answers — Kubernetes
//! starts pods in any order, and a restart loop helps nobody. Once connected, the driver keeps
//! its pools alive and reconnects on its own; a query that fails meanwhile answers 503.
//!
//! On connection the schema is created idempotently (`IF NOT EXISTS`) and every statement is
//! prepared once; requests only execute prepared statements.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use clap::Args;
use kubescaler_core::bindings::Binding;
use kubescaler_core::duration;
use kubescaler_core::model::{Profile, ProfileUsers, User, UserName};
use kubescaler_core::{ProfileId, UserId};
use kubescaler_server::error::chain;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::OnceCell;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::paging::{self, PAGE_SIZE, ReadError};
use crate::store::{Removed, Store, StoreError, StoreResult};

const BACKEND: &str = "cassandra";
/// The pause after the first failed connection attempt, doubled after each next one up to
/// [`CONNECT_BACKOFF_MAX`]: a node that is starting answers within seconds, and a node that is
/// down is not asked more than every couple of seconds.
const CONNECT_BACKOFF: Duration = Duration::from_millis(200);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often [`CassandraStore::wait_connected`] looks: fine-grained beside a connection's
/// seconds, and a cheap look (a flag).
const CONNECTED_POLL: Duration = Duration::from_millis(50);

/// The settings' defaults: one definition for the flags and for [`CassandraConfig::new`].
pub mod defaults {
    use std::sync::LazyLock;
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

    pub(crate) static CONNECT_TIMEOUT_TEXT: LazyLock<String> =
        LazyLock::new(|| kubescaler_core::duration::text(CONNECT_TIMEOUT));
    pub(crate) static REQUEST_TIMEOUT_TEXT: LazyLock<String> =
        LazyLock::new(|| kubescaler_core::duration::text(REQUEST_TIMEOUT));
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
    #[arg(id = "cassandra_connect_timeout", long = "cassandra-connect-timeout", env = "CASSANDRA_CONNECT_TIMEOUT", value_name = "CASSANDRA_CONNECT_TIMEOUT", value_parser = duration::parse, default_value = defaults::CONNECT_TIMEOUT_TEXT.as_str())]
    pub connect_timeout: Duration,

    /// Client-side timeout of one query (all its retries included).
    #[arg(id = "cassandra_request_timeout", long = "cassandra-request-timeout", env = "CASSANDRA_REQUEST_TIMEOUT", value_name = "CASSANDRA_REQUEST_TIMEOUT", value_parser = duration::parse, default_value = defaults::REQUEST_TIMEOUT_TEXT.as_str())]
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

/// Statements prepared once per session.
#[derive(Debug)]
struct Statements {
    ping: PreparedStatement,
    list_users: PreparedStatement,
    get_user: PreparedStatement,
    insert_user: PreparedStatement,
    update_user: PreparedStatement,
    delete_user: PreparedStatement,
    truncate_users: PreparedStatement,
    list_profiles: PreparedStatement,
    get_profile: PreparedStatement,
    insert_profile: PreparedStatement,
    update_profile: PreparedStatement,
    swap_profile: PreparedStatement,
    delete_profile: PreparedStatement,
    truncate_profiles: PreparedStatement,
    profiles_of_user: PreparedStatement,
    remove_user_from_profile: PreparedStatement,
    binding: PreparedStatement,
}

#[derive(Debug)]
struct Connected {
    session: Session,
    statements: Statements,
}

#[derive(Debug)]
struct Shared {
    config: CassandraConfig,
    connected: OnceCell<Connected>,
    /// Why the last connection attempt failed, for 503 answers and `/readyz`.
    last_error: Mutex<Option<Arc<ConnectError>>>,
}

/// The Cassandra-backed [`Store`].
#[derive(Debug)]
pub struct CassandraStore {
    shared: Arc<Shared>,
    /// Stops the background connector when the store is dropped.
    _connector: DropGuard,
}

impl CassandraStore {
    /// Returns at once; a background task connects (retrying with backoff until it succeeds),
    /// creates the schema and prepares the statements.
    pub fn start(config: CassandraConfig) -> Self {
        let shared = Arc::new(Shared { config, connected: OnceCell::new(), last_error: Mutex::new(None) });
        let stop = CancellationToken::new();
        tokio::spawn(connect_until_done(shared.clone(), stop.clone()));
        Self { shared, _connector: stop.drop_guard() }
    }

    /// Waits until connected (or `timeout`), for callers that prefer to start ready.
    pub async fn wait_connected(&self, timeout: Duration) -> StoreResult<()> {
        let poll = async {
            while !self.shared.connected.initialized() {
                tokio::time::sleep(CONNECTED_POLL).await;
            }
        };
        tokio::time::timeout(timeout, poll).await.map_err(|_| self.not_connected())
    }

    fn not_connected(&self) -> StoreError {
        let why = self.shared.last_error.lock().ok().and_then(|last| last.clone());
        match why {
            Some(why) => unavailable("not connected").because(why),
            None => unavailable("not connected yet"),
        }
    }

    fn connected(&self) -> StoreResult<&Connected> {
        self.shared.connected.get().ok_or_else(|| self.not_connected())
    }
}

async fn connect_until_done(shared: Arc<Shared>, stop: CancellationToken) {
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
                if let Ok(mut last) = shared.last_error.lock() {
                    *last = Some(Arc::new(e));
                }
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

async fn create_schema(session: &Session, config: &CassandraConfig) -> Result<(), ExecutionError> {
    let ks = &config.keyspace;
    let ddl = [
        format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {}", config.replication),
        format!("CREATE TABLE IF NOT EXISTS {ks}.user (id uuid PRIMARY KEY, name text)"),
        format!("CREATE TABLE IF NOT EXISTS {ks}.profile (id uuid PRIMARY KEY, users set<uuid>)"),
        // "Profiles of a user" is served by this index; a query that needed ALLOW FILTERING
        // would scan every profile.
        format!("CREATE INDEX IF NOT EXISTS profile_users_idx ON {ks}.profile (VALUES(users))"),
    ];
    for statement in ddl {
        session.query_unpaged(statement, &[]).await?;
    }
    Ok(())
}

async fn prepare(session: &Session, ks: &str) -> Result<Statements, scylla::errors::PrepareError> {
    let paged = |mut statement: PreparedStatement| {
        statement.set_page_size(PAGE_SIZE);
        statement
    };
    let mut lwt_update_user =
        session.prepare(format!("UPDATE {ks}.user SET name = ? WHERE id = ? IF EXISTS")).await?;
    let mut lwt_update_profile =
        session.prepare(format!("UPDATE {ks}.profile SET users = ? WHERE id = ? IF EXISTS")).await?;
    // A profile's members replaced only if they are still those read before: then who left is
    // known, and announced pair by pair.
    let mut lwt_swap_profile =
        session.prepare(format!("UPDATE {ks}.profile SET users = ? WHERE id = ? IF users = ?")).await?;
    // A replace must not resurrect a row deleted a moment before (a plain UPDATE would write
    // the row back), hence the conditional update.
    for lwt in [&mut lwt_update_user, &mut lwt_update_profile, &mut lwt_swap_profile] {
        lwt.set_serial_consistency(Some(scylla::statement::SerialConsistency::LocalSerial));
    }
    Ok(Statements {
        ping: session.prepare("SELECT release_version FROM system.local").await?,
        list_users: paged(session.prepare(format!("SELECT id, name FROM {ks}.user")).await?),
        get_user: session.prepare(format!("SELECT id, name FROM {ks}.user WHERE id = ?")).await?,
        insert_user: session.prepare(format!("INSERT INTO {ks}.user (id, name) VALUES (?, ?)")).await?,
        update_user: lwt_update_user,
        delete_user: session.prepare(format!("DELETE FROM {ks}.user WHERE id = ?")).await?,
        truncate_users: session.prepare(format!("TRUNCATE {ks}.user")).await?,
        list_profiles: paged(session.prepare(format!("SELECT id, users FROM {ks}.profile")).await?),
        get_profile: session.prepare(format!("SELECT id, users FROM {ks}.profile WHERE id = ?")).await?,
        insert_profile: session
            .prepare(format!("INSERT INTO {ks}.profile (id, users) VALUES (?, ?)"))
            .await?,
        update_profile: lwt_update_profile,
        swap_profile: lwt_swap_profile,
        delete_profile: session.prepare(format!("DELETE FROM {ks}.profile WHERE id = ?")).await?,
        truncate_profiles: session.prepare(format!("TRUNCATE {ks}.profile")).await?,
        profiles_of_user: paged(
            session.prepare(format!("SELECT id, users FROM {ks}.profile WHERE users CONTAINS ?")).await?,
        ),
        remove_user_from_profile: session
            .prepare(format!("UPDATE {ks}.profile SET users = users - ? WHERE id = ?"))
            .await?,
        // One element of the set (Cassandra 4.0+): the user's id when it is in the profile,
        // null when not, no row when there is no profile — never the other 9,999 ids.
        binding: session.prepare(format!("SELECT users[?] FROM {ks}.profile WHERE id = ?")).await?,
    })
}

fn unavailable(what: impl Into<String>) -> StoreError {
    StoreError::unavailable(BACKEND, what)
}

fn internal(what: impl Into<String>) -> StoreError {
    StoreError::internal(BACKEND, what)
}

/// The driver could not read an answer it was given: a schema that is not the one expected.
fn unreadable(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    internal("reading an answer").because(error)
}

impl From<ReadError> for StoreError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Execution(error) => execution_error(*error),
            rows @ ReadError::Rows(_) => unreadable(rows),
        }
    }
}

/// Driver errors are mostly about availability (connections, timeouts, a node overloaded);
/// only errors that mean the statement itself is wrong are internal.
fn execution_error(error: ExecutionError) -> StoreError {
    match &error {
        ExecutionError::BadQuery(_) | ExecutionError::PrepareError(_) => {
            internal("a statement the database refuses").because(error)
        }
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::SyntaxError | DbError::Invalid | DbError::Unauthorized | DbError::ConfigError,
            _,
        )) => internal("a statement the database refuses").because(error),
        _ => unavailable("a query did not complete").because(error),
    }
}

fn user_from_row((id, name): (Uuid, String)) -> StoreResult<User> {
    let name = UserName::parse(name)
        .map_err(|e| internal(format!("user {id} has an invalid name in the database")).because(e))?;
    Ok(User { id: id.into(), name })
}

fn profile_from_row((id, users): (Uuid, Option<BTreeSet<Uuid>>)) -> StoreResult<Profile> {
    // Cassandra stores an empty set as null.
    let users = ProfileUsers::new(users.unwrap_or_default().into_iter().map(UserId::from))
        .map_err(|e| internal(format!("profile {id} in the database breaks the model")).because(e))?;
    Ok(Profile { id: id.into(), users })
}

fn users_set(profile: &Profile) -> BTreeSet<Uuid> {
    profile.users.iter().map(|u| u.as_uuid()).collect()
}

impl CassandraStore {
    async fn execute(
        &self,
        statement: impl Fn(&Statements) -> &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> StoreResult<scylla::response::query_result::QueryResult> {
        let c = self.connected()?;
        c.session.execute_unpaged(statement(&c.statements), values).await.map_err(execution_error)
    }

    /// Reads every row of a paged query (see [`paging`](crate::paging)).
    async fn collect<R, T>(
        &self,
        statement: impl Fn(&Statements) -> &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        convert: impl Fn(R) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let c = self.connected()?;
        let mut out = Vec::new();
        paging::for_each_row(&c.session, statement(&c.statements), values, |row| {
            out.push(convert(row)?);
            StoreResult::Ok(())
        })
        .await?;
        Ok(out)
    }

    async fn single<R, T>(
        &self,
        statement: impl Fn(&Statements) -> &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        convert: impl Fn(R) -> StoreResult<T>,
    ) -> StoreResult<Option<T>>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let rows = self.execute(statement, values).await?.into_rows_result().map_err(unreadable)?;
        match rows.maybe_first_row::<R>().map_err(unreadable)? {
            Some(row) => convert(row).map(Some),
            None => Ok(None),
        }
    }

    /// Runs a conditional (`IF EXISTS`) statement; `true` when it applied.
    async fn conditional(
        &self,
        statement: impl Fn(&Statements) -> &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> StoreResult<bool> {
        let rows = self.execute(statement, values).await?.into_rows_result().map_err(unreadable)?;
        // The first column of an LWT answer is `[applied]`; the row's current values may
        // follow when it did not apply, so the row is read untyped.
        let row = rows
            .maybe_first_row::<scylla::value::Row>()
            .map_err(unreadable)?
            .ok_or_else(|| internal("conditional update answered no row"))?;
        match row.columns.first() {
            Some(Some(scylla::value::CqlValue::Boolean(applied))) => Ok(*applied),
            other => Err(internal(format!("unexpected [applied] value {other:?}"))),
        }
    }
}

#[async_trait]
impl Store for CassandraStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> StoreResult<()> {
        self.execute(|s| &s.ping, ()).await.map(drop)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let mut users = self.collect(|s| &s.list_users, (), user_from_row).await?;
        users.sort_by_key(|u| u.id);
        Ok(users)
    }

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.single(|s| &s.get_user, (id.as_uuid(),), user_from_row).await
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.execute(|s| &s.insert_user, (user.id.as_uuid(), user.name.as_str())).await.map(drop)
    }

    async fn replace_user(&self, user: &User) -> StoreResult<bool> {
        self.conditional(|s| &s.update_user, (user.name.as_str(), user.id.as_uuid())).await
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        // Profiles first: if this fails half-way the user still exists and a retry finishes
        // the job, instead of leaving profiles that point at a user nobody can see.
        let holders = self.profiles_of_user(id).await?;
        let removed: BTreeSet<Uuid> = [id.as_uuid()].into();
        for profile in holders {
            self.execute(|s| &s.remove_user_from_profile, (&removed, profile.id.as_uuid())).await?;
        }
        self.execute(|s| &s.delete_user, (id.as_uuid(),)).await.map(drop)
    }

    async fn delete_all_users(&self) -> StoreResult<()> {
        self.execute(|s| &s.truncate_users, ()).await.map(drop)
    }

    async fn list_profiles(&self) -> StoreResult<Vec<Profile>> {
        let mut profiles = self.collect(|s| &s.list_profiles, (), profile_from_row).await?;
        profiles.sort_by_key(|p| p.id);
        Ok(profiles)
    }

    async fn get_profile(&self, id: ProfileId) -> StoreResult<Option<Profile>> {
        self.single(|s| &s.get_profile, (id.as_uuid(),), profile_from_row).await
    }

    async fn create_profile(&self, profile: &Profile) -> StoreResult<()> {
        self.execute(|s| &s.insert_profile, (profile.id.as_uuid(), users_set(profile))).await.map(drop)
    }

    async fn replace_profile(&self, profile: &Profile) -> StoreResult<Option<Removed>> {
        let id = profile.id.as_uuid();
        let Some(before) = self.get_profile(profile.id).await? else { return Ok(None) };
        // An empty set is null in Cassandra, and `IF users = null` would also hold for a row
        // deleted meanwhile (and write it back): a profile without users takes the plain path.
        if !before.users.is_empty() {
            let swap = (users_set(profile), id, users_set(&before));
            if self.conditional(|s| &s.swap_profile, swap).await? {
                let removed = before.users.iter().filter(|&u| !profile.users.contains(u)).collect();
                return Ok(Some(Removed::Users(removed)));
            }
        }
        // The members changed since the read, or there were none: replaced all the same, and
        // who left is not known.
        let replaced = self.conditional(|s| &s.update_profile, (users_set(profile), id)).await?;
        Ok(replaced.then_some(Removed::Unknown))
    }

    async fn delete_profile(&self, id: ProfileId) -> StoreResult<()> {
        self.execute(|s| &s.delete_profile, (id.as_uuid(),)).await.map(drop)
    }

    async fn delete_all_profiles(&self) -> StoreResult<()> {
        self.execute(|s| &s.truncate_profiles, ()).await.map(drop)
    }

    async fn profiles_of_user(&self, user: UserId) -> StoreResult<Vec<Profile>> {
        let mut profiles = self.collect(|s| &s.profiles_of_user, (user.as_uuid(),), profile_from_row).await?;
        profiles.sort_by_key(|p| p.id);
        Ok(profiles)
    }

    async fn binding(&self, profile: ProfileId, user: UserId) -> StoreResult<Binding> {
        let found = self
            .single(
                |s| &s.binding,
                (user.as_uuid(), profile.as_uuid()),
                |(member,): (Option<Uuid>,)| Ok(member.is_some()),
            )
            .await?;
        Ok(match found {
            None => Binding::NoProfile,
            Some(true) => Binding::Bound,
            Some(false) => Binding::NotBound,
        })
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
