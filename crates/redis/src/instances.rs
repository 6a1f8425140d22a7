//! The Redis instances of `REDIS_URLS`, each behind a lazy, reconnecting connection, and a
//! command sent to all of them at once with its answers counted against the quorum (N/2+1).
//! main reads launched markers this way and stream writes them; both must agree on what
//! "enough instances answered" means, so it is defined once, here.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisArgs;

/// Reconnection attempts within one command, and the longest pause between them: a command
/// fails fast (the caller counts the instance as not answering) and the next command
/// reconnects, rather than one command waiting out an outage.
const RECONNECT_RETRIES: usize = 1;
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(200);

/// How many of `instances` must answer (or agree) for a result to count: a majority, N/2+1,
/// so that two quorums always share an instance.
pub const fn quorum(instances: usize) -> usize {
    instances / 2 + 1
}

pub struct RedisInstances {
    /// Each instance's URL without its password (for messages), and its connection.
    instances: Vec<(String, ConnectionManager)>,
}

impl std::fmt::Debug for RedisInstances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<_> = self.instances.iter().map(|(url, _)| url.as_str()).collect();
        f.debug_struct("RedisInstances").field("instances", &urls).field("quorum", &self.quorum()).finish()
    }
}

impl RedisInstances {
    /// Connections are made lazily and remade after failures, so a service starts (not ready)
    /// while Redis is down and recovers by itself when it returns.
    pub fn new(config: &RedisArgs) -> Result<Self, redis::RedisError> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(RECONNECT_MAX_DELAY);
        let instances = config
            .urls
            .iter()
            .map(|url| {
                let client = redis::Client::open(url.as_str())?;
                let manager = ConnectionManager::new_lazy_with_config(client, manager_config.clone())?;
                Ok((redact(url), manager))
            })
            .collect::<Result<_, redis::RedisError>>()?;
        Ok(Self { instances })
    }

    /// How many of these instances must answer: [`quorum`].
    pub fn quorum(&self) -> usize {
        quorum(self.instances.len())
    }

    /// Runs `call` on every instance's connection at once: each instance's answer, in the order
    /// of `REDIS_URLS`. For work that is not a plain command (scripts), and what counts as
    /// enough answers is the caller's.
    pub async fn each<T, F, Fut>(&self, call: F) -> Vec<Result<T, InstanceError>>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        futures::future::join_all(self.instances.iter().map(|(url, manager)| {
            let reply = call(manager.clone());
            async move { reply.await.map_err(|source| InstanceError { url: url.clone(), source }) }
        }))
        .await
    }

    /// Runs `command` on every instance at once: the answers of those that replied, and why
    /// the others did not.
    pub async fn on_all<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> (Vec<T>, Vec<InstanceError>) {
        let replies =
            self.each(|mut connection| async move { command.query_async::<T>(&mut connection).await }).await;
        let mut answers = Vec::with_capacity(replies.len());
        let mut failures = Vec::new();
        for reply in replies {
            match reply {
                Ok(value) => answers.push(value),
                Err(failure) => failures.push(failure),
            }
        }
        (answers, failures)
    }

    /// Like [`on_all`](Self::on_all), but fails unless a quorum of instances answered.
    pub async fn on_quorum<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<Vec<T>, QuorumError> {
        let (answers, failures) = self.on_all(command).await;
        let needed = self.quorum();
        if answers.len() >= needed {
            if !failures.is_empty() {
                tracing::warn!(failures = %Failures(&failures), "some Redis instances did not answer; a quorum did");
            }
            Ok(answers)
        } else {
            Err(QuorumError { answered: answers.len(), instances: self.instances.len(), needed, failures })
        }
    }
}

/// Why one instance did not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {source}")]
pub struct InstanceError {
    /// The instance's URL, without its password.
    pub url: String,
    #[source]
    pub source: redis::RedisError,
}

/// Fewer instances than a quorum answered: what was asked cannot count as done (or as read).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{answered} of {instances} instances answered, {needed} needed: {}", Failures(.failures))]
pub struct QuorumError {
    pub answered: usize,
    pub instances: usize,
    pub needed: usize,
    /// Why each of the others did not answer.
    pub failures: Vec<InstanceError>,
}

/// Instances' failures as one line, `url: why; url: why`.
#[derive(Debug, Clone, Copy)]
pub struct Failures<'a>(pub &'a [InstanceError]);

impl std::fmt::Display for Failures<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// A URL fit for logs and answers: without its password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_is_a_majority() {
        assert_eq!([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3]);
    }

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(redact("redis://:s3cret@redis:6379"), "redis://:***@redis:6379");
        assert_eq!(redact("redis://redis:6379"), "redis://redis:6379");
    }
}
