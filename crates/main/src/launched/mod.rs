//! Which user–profile pairs are streaming right now ("launched"), as main sees them: the
//! [`LaunchedReader`] trait, and one implementation per registry.
//!
//! - [`redis`]: the markers stream writes in Redis, read with one `MGET` per instance.
//! - [`in_process`]: the all-in-one's in-process lock registry, where a pair is launched while
//!   its lock is held.

pub mod in_process;
pub mod redis;

use async_trait::async_trait;
use kubescaler_core::{ProfileId, UserId};
use kubescaler_redis::QuorumError;

/// Why the registry could not say which pairs are launched.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// Fewer Redis instances than a quorum answered.
    #[error("redis unavailable: {0}")]
    Redis(#[source] QuorumError),
}

impl RegistryError {
    /// The registry's backend, as answers and `/readyz` name it.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
        }
    }
}

/// Read side of the launched registry.
#[async_trait]
pub trait LaunchedReader: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    async fn ping(&self) -> Result<(), RegistryError>;
    /// For each of `profiles`, in order: is the pair `(user, profile)` launched?
    async fn launched(&self, user: UserId, profiles: &[ProfileId]) -> Result<Vec<bool>, RegistryError>;
}

pub use in_process::InProcessLaunched;
pub use redis::RedisLaunched;
