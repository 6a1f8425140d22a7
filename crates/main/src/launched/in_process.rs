//! The all-in-one's registry as main reads it: stream's in-process lock registry, where a pair
//! is launched while its lock is held. main does not depend on stream for it: the registry is
//! handed over as the one question main asks of it.

use async_trait::async_trait;
use kubescaler_core::{ProfileId, UserId};

use super::{LaunchedReader, RegistryError};

/// A launched registry answered by `is_launched(user, profile)`, a question about memory that
/// cannot fail.
pub struct InProcessLaunched<F> {
    is_launched: F,
}

impl<F> InProcessLaunched<F>
where
    F: Fn(UserId, ProfileId) -> bool + Send + Sync + 'static,
{
    pub fn new(is_launched: F) -> Self {
        Self { is_launched }
    }
}

impl<F> std::fmt::Debug for InProcessLaunched<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessLaunched").finish_non_exhaustive()
    }
}

#[async_trait]
impl<F> LaunchedReader for InProcessLaunched<F>
where
    F: Fn(UserId, ProfileId) -> bool + Send + Sync + 'static,
{
    fn backend(&self) -> &'static str {
        "in-process"
    }

    async fn ping(&self) -> Result<(), RegistryError> {
        Ok(())
    }

    async fn launched(&self, user: UserId, profiles: &[ProfileId]) -> Result<Vec<bool>, RegistryError> {
        Ok(profiles.iter().map(|profile| (self.is_launched)(user, *profile)).collect())
    }
}
