//! The user/profile store behind base's API. Cassandra ([`crate::cassandra`]) is the real one;
//! other implementations (an embedded store for the all-in-one process) must pass the same
//! conformance suite (`tests/store.rs`), so the API cannot tell them apart.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use kubescaler_core::bindings::Binding;
use kubescaler_core::model::{Profile, User};
use kubescaler_core::{ProfileId, UserId};

/// Why the store could not serve a request: the backend, what it was doing, and the backend's
/// own error as the source — shared, so a failed write can be both answered and announced —
/// for the log to say why while the answer says only what helps the client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot serve requests now (down, not connected yet, timing out, overloaded).
    /// Callers answer 503; the condition is expected to pass.
    #[error("{backend} is unavailable: {what}")]
    Unavailable {
        backend: &'static str,
        what: String,
        #[source]
        cause: Option<Cause>,
    },
    /// Anything else: a bug, or data that breaks the model's rules.
    #[error("{backend} failed: {what}")]
    Internal {
        backend: &'static str,
        what: String,
        #[source]
        cause: Option<Cause>,
    },
}

/// A backend's own error behind a [`StoreError`].
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

impl StoreError {
    pub fn unavailable(backend: &'static str, what: impl Into<String>) -> Self {
        Self::Unavailable { backend, what: what.into(), cause: None }
    }

    pub fn internal(backend: &'static str, what: impl Into<String>) -> Self {
        Self::Internal { backend, what: what.into(), cause: None }
    }

    /// The backend's error that made this one.
    pub fn because(mut self, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let (Self::Unavailable { cause, .. } | Self::Internal { cause, .. }) = &mut self;
        *cause = Some(Arc::from(error.into()));
        self
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Who a replace of a profile's users took out of it: what base announces, so that stream
/// re-checks the pairs that left, not every pair of the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// Exactly these users (none when the replace only added users).
    Users(BTreeSet<UserId>),
    /// Not known: another write to the profile raced this one, so any of its pairs may have
    /// changed.
    Unknown,
}

/// Users and profiles. Writes are whole-value: a replace swaps the name or the whole user set.
/// Listings come back in id order so every backend answers alike.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short name for readiness answers and errors, e.g. `cassandra`.
    fn backend(&self) -> &'static str;
    /// Succeeds when the backend can serve a query now.
    async fn ping(&self) -> StoreResult<()>;

    async fn list_users(&self) -> StoreResult<Vec<User>>;
    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>>;
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// Replaces an existing user; `false` when there is no such user (nothing is written).
    async fn replace_user(&self, user: &User) -> StoreResult<bool>;
    /// Deletes the user and removes it from every profile that holds it. Deleting an unknown
    /// id is not an error.
    async fn delete_user(&self, id: UserId) -> StoreResult<()>;
    async fn delete_all_users(&self) -> StoreResult<()>;

    async fn list_profiles(&self) -> StoreResult<Vec<Profile>>;
    async fn get_profile(&self, id: ProfileId) -> StoreResult<Option<Profile>>;
    async fn create_profile(&self, profile: &Profile) -> StoreResult<()>;
    /// Replaces an existing profile's users; `None` when there is no such profile (nothing is
    /// written), else who the replace took out of it.
    async fn replace_profile(&self, profile: &Profile) -> StoreResult<Option<Removed>>;
    async fn delete_profile(&self, id: ProfileId) -> StoreResult<()>;
    async fn delete_all_profiles(&self) -> StoreResult<()>;
    /// The profiles that hold `user`, found through an index, not a scan.
    async fn profiles_of_user(&self, user: UserId) -> StoreResult<Vec<Profile>>;
    /// Whether `user` is in `profile`, without reading the profile's other users: what stream
    /// asks at every admission and every re-check, against profiles of up to 10,000 users.
    async fn binding(&self, profile: ProfileId, user: UserId) -> StoreResult<Binding>;
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.backend())
    }
}
