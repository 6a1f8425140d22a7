//! Which user–profile pairs are streaming right now ("launched"), as main sees them.
//!
//! stream writes a marker per pair (key schema in `kubescaler_shared::keys`) on the Redis
//! instances where it holds the pair's Redlock, with the lock's TTL. main asks every instance
//! with ONE `MGET` of all the pairs' markers, whatever their number, and counts a pair as
//! launched when any instance that answered holds its marker. A quorum (N/2+1) of instances
//! must answer: the write reached a quorum, so a quorum of readers sees it.

use std::time::Duration;

use async_trait::async_trait;
use kubescaler_shared::config::RedisArgs;
use kubescaler_shared::{ApiError, ProfileId, UserId, keys};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{backend} unavailable: {message}")]
pub struct RegistryError {
    pub backend: &'static str,
    pub message: String,
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        ApiError::unavailable(error.backend, error.to_string())
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

/// The Redis-backed reader over `REDIS_URLS`.
pub struct RedisLaunched {
    instances: Vec<(String, ConnectionManager)>,
    quorum: usize,
}

impl std::fmt::Debug for RedisLaunched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<_> = self.instances.iter().map(|(url, _)| url.as_str()).collect();
        f.debug_struct("RedisLaunched").field("instances", &urls).field("quorum", &self.quorum).finish()
    }
}

impl RedisLaunched {
    /// Connections are made lazily and remade after failures, so main starts (not ready)
    /// while Redis is down and recovers by itself when it returns.
    pub fn new(config: &RedisArgs) -> Result<Self, redis::RedisError> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // Fail the request fast; the next one reconnects.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let instances = config
            .urls
            .iter()
            .map(|url| {
                let client = redis::Client::open(url.as_str())?;
                let manager = ConnectionManager::new_lazy_with_config(client, manager_config.clone())?;
                Ok((redact(url), manager))
            })
            .collect::<Result<_, redis::RedisError>>()?;
        Ok(Self { instances, quorum: config.quorum() })
    }

    /// Runs `command` on every instance at once; fails unless a quorum answers.
    async fn on_quorum<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<Vec<T>, RegistryError> {
        let replies = futures::future::join_all(self.instances.iter().map(|(url, manager)| {
            let mut connection = manager.clone();
            async move { (url, command.query_async::<T>(&mut connection).await) }
        }))
        .await;
        let mut answers = Vec::with_capacity(replies.len());
        let mut failures = Vec::new();
        for (url, reply) in replies {
            match reply {
                Ok(value) => answers.push(value),
                Err(e) => failures.push(format!("{url}: {e}")),
            }
        }
        if answers.len() >= self.quorum {
            if !failures.is_empty() {
                tracing::warn!(?failures, "some Redis instances did not answer; quorum did");
            }
            Ok(answers)
        } else {
            Err(RegistryError {
                backend: "redis",
                message: format!(
                    "{} of {} instances answered, {} needed: {}",
                    answers.len(),
                    self.instances.len(),
                    self.quorum,
                    failures.join("; ")
                ),
            })
        }
    }
}

/// A URL fit for logs and answers: without its password.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[async_trait]
impl LaunchedReader for RedisLaunched {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), RegistryError> {
        self.on_quorum::<String>(&redis::cmd("PING")).await.map(drop)
    }

    async fn launched(&self, user: UserId, profiles: &[ProfileId]) -> Result<Vec<bool>, RegistryError> {
        if profiles.is_empty() {
            return Ok(Vec::new());
        }
        let mut mget = redis::cmd("MGET");
        for profile in profiles {
            mget.arg(keys::launched(user, *profile));
        }
        let answers = self.on_quorum::<Vec<Option<redis::Value>>>(&mget).await?;
        Ok((0..profiles.len())
            .map(|i| answers.iter().any(|values| values.get(i).is_some_and(Option::is_some)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(redact("redis://:s3cret@redis:6379"), "redis://:***@redis:6379");
        assert_eq!(redact("redis://redis:6379"), "redis://redis:6379");
    }
}
