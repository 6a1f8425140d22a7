//! What stands behind the services: embedded backends by default, the real Cassandra and
//! Redis when their addresses are given. Each choice is made once here, so that base, main
//! and stream always agree on it.

use std::sync::Arc;

use kubescaler_base::cassandra::CassandraStore;
use kubescaler_base::changes::{Announce, RedisAnnouncer};
use kubescaler_base::embedded::EmbeddedStore;
use kubescaler_base::store::Store;
use kubescaler_main::launched::{InProcessLaunched, LaunchedReader, RedisLaunched};
use kubescaler_stream::changes::BindingSource;
use kubescaler_stream::locks::{InProcessLocks, PairLocks, RedisLocks};
use prometheus::Registry;
use tokio::sync::broadcast;

use crate::config::Config;

/// Binding changes stream has not read yet before it counts as behind (and re-checks every
/// pair it holds): far more than a burst of writes makes between two reads.
const BINDING_CHANGES_BUFFERED: usize = 1_024;

/// Users and profiles: in the real Cassandra, or in the embedded store's file.
pub(crate) fn store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(if config.real_cassandra {
        Arc::new(CassandraStore::start(config.base.cassandra.clone()))
    } else {
        Arc::new(EmbeddedStore::open(&config.data_dir)?)
    })
}

/// Where base announces binding changes and where stream listens: on Redis with the real
/// registry, in this process with the in-process one.
pub(crate) fn binding_changes(
    config: &Config,
    registry: &Registry,
) -> anyhow::Result<(Arc<dyn Announce>, BindingSource)> {
    Ok(if config.real_redis {
        let announcer = RedisAnnouncer::start(&config.base.redis, registry)?;
        (Arc::new(announcer), BindingSource::Redis(config.stream.redis.clone()))
    } else {
        let (changes, bindings) = broadcast::channel(BINDING_CHANGES_BUFFERED);
        (Arc::new(changes), BindingSource::InProcess(bindings))
    })
}

/// stream's pair locks, and main's view of which pairs are launched: both on Redis, or both
/// in this process.
pub(crate) fn pair_registry(
    config: &Config,
) -> anyhow::Result<(Arc<dyn PairLocks>, Arc<dyn LaunchedReader>)> {
    Ok(if config.real_redis {
        (Arc::new(RedisLocks::new(&config.stream.redis)?), Arc::new(RedisLaunched::new(&config.main.redis)?))
    } else {
        let locks = Arc::new(InProcessLocks::start());
        // main reads it as launched while the pair's lock is held.
        let launched = InProcessLaunched::new({
            let locks = locks.clone();
            move |user, profile| locks.is_launched(user, profile)
        });
        (locks, Arc::new(launched))
    })
}
