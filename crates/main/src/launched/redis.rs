//! The launched markers in Redis. stream writes a marker per pair (key schema in
//! `kubescaler_core::keys`) on the Redis instances where it holds the pair's Redlock, with the
//! lock's TTL. main asks every instance with ONE `MGET` of all the pairs' markers, whatever
//! their number, and counts a pair as launched when any instance that answered holds its
//! marker. A quorum (N/2+1) of instances must answer: the write reached a quorum, so a quorum
//! of readers sees it.

use async_trait::async_trait;
use kubescaler_core::{ProfileId, UserId, keys};
use kubescaler_redis::{RedisArgs, RedisInstances};

use super::{LaunchedReader, RegistryError};

/// The Redis-backed reader over `REDIS_URLS`.
#[derive(Debug)]
pub struct RedisLaunched {
    instances: RedisInstances,
}

impl RedisLaunched {
    pub fn new(config: &RedisArgs) -> Result<Self, redis::RedisError> {
        Ok(Self { instances: RedisInstances::new(config)? })
    }

    async fn on_quorum<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<Vec<T>, RegistryError> {
        self.instances.on_quorum(command).await.map_err(RegistryError::Redis)
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
