//! The whole suite in one process: base, main and stream, wired as in the cluster, behind one
//! front door that routes like the Ingress (`/main/*` → main, everything else → stream; base
//! only on an internal loopback port). Backends are embedded by default — a `redb` file for
//! users and profiles, an in-process lock and launched registry — and real Cassandra or Redis
//! when `CASSANDRA_NODES` / `REDIS_URLS` are given. Every setting of the three services is a
//! flag (and variable) of the all-in-one too: see [`command`].

mod backends;
mod banner;
mod config;
mod demo;
mod suite;

pub use config::{Config, DEFAULT_LOG_FILTER, Options, command};
pub use suite::{Suite, start};
