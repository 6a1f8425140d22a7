//! The Cassandra store.
//!
//! The session is made in the background: base starts, serves `/livez` and answers 503 while
//! Cassandra is unreachable, and becomes ready by itself once a node answers — Kubernetes
//! starts pods in any order, and a restart loop helps nobody. Once connected, the driver keeps
//! its pools alive and reconnects on its own; a query that fails meanwhile answers 503.
//!
//! On connection the schema is created idempotently (`IF NOT EXISTS`) and every statement is
//! prepared once; requests only execute prepared statements.
//!
//! - `config`: the settings ([`CassandraConfig`]) and their [`defaults`].
//! - `connect`: the background connector, and the [`schema`].
//! - `statements`: the prepared statements, and the CQL the benchmarks share ([`cql`]).
//! - here: the [`Store`] over them, and what a driver error means to a client.

mod config;
mod connect;
mod statements;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kubescaler_core::bindings::Binding;
use kubescaler_core::model::{Profile, ProfileUsers, User, UserName};
use kubescaler_core::sync::lock;
use kubescaler_core::{ProfileId, UserId};
use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::OnceCell;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::paging::{self, ReadError};
use crate::store::{Removed, Store, StoreError, StoreResult};

pub use config::{CassandraConfig, InvalidSetting, defaults};
pub use connect::{ConnectError, schema};
pub use statements::cql;

use connect::connect_until_done;
use statements::Statements;

const BACKEND: &str = "cassandra";
/// How often [`CassandraStore::wait_connected`] looks: fine-grained beside a connection's
/// seconds, and a cheap look (a flag).
const CONNECTED_POLL: Duration = Duration::from_millis(50);

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
        let why = lock(&self.shared.last_error).clone();
        match why {
            Some(why) => unavailable("not connected").because(why),
            None => unavailable("not connected yet"),
        }
    }

    fn connected(&self) -> StoreResult<&Connected> {
        self.shared.connected.get().ok_or_else(|| self.not_connected())
    }
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
