//! The Redis instances of `REDIS_URLS` as base, main and stream reach them: independent instances
//! (not a cluster), each behind a lazy, reconnecting connection, and a command sent to all of
//! them at once with its answers counted against the quorum (N/2+1).
//!
//! What is written where (the key schema) is `kubescaler_core::keys`.
//!
//! What each module holds, how they work together and why: docs/ARCHITECTURE.md, section
//! "kubescaler-base-client and kubescaler-redis".

pub mod config;
pub mod instances;

pub use config::RedisArgs;
pub use instances::{Failures, InstanceError, QuorumError, RedisInstances, quorum, redact};
