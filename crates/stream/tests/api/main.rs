//! stream against real Redis, an in-process base and real Cassandra, with short lock TTLs.
//! Start the servers first: `scripts/services.sh up`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod bindings;
mod eventsource;
mod helpers;
mod lifecycle;
mod openapi;
mod outage;
mod processes;
mod rebalance;
