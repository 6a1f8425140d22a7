//! main's HTTP API against real base (in-process), Cassandra and Redis.
//! Start the servers first: `scripts/services.sh up`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod login;
mod openapi;
mod outages;
mod routes;
mod testdata;
