//! The user/profile store behind base's API. Cassandra ([`crate::cassandra`]) is the real one;
//! other implementations (an embedded store for the all-in-one process) must pass the same
//! conformance suite (`tests/store.rs`), so the API cannot tell them apart.

use std::collections::BTreeSet;

use async_trait::async_trait;
use kubescaler_core::bindings::Binding;
use kubescaler_core::model::{Profile, User};
use kubescaler_core::{ProfileId, UserId};
use kubescaler_server::ApiError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot serve requests now (down, not connected yet, timing out, overloaded).
    /// Callers answer 503; the condition is expected to pass.
    #[error("{backend} unavailable: {message}")]
    Unavailable { backend: &'static str, message: String },
    /// Anything else: a bug, or data that breaks the model's rules.
    #[error("{backend} failed: {message}")]
    Internal { backend: &'static str, message: String },
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable { backend, message } => {
                ApiError::unavailable(backend, format!("{backend} is unavailable: {message}"))
            }
            internal @ StoreError::Internal { .. } => ApiError::internal(internal),
        }
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
