//! base's HTTP API against a real Cassandra. One test binary (faster to link), one module per
//! resource. Start Cassandra first: `scripts/services.sh up`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bindings;
mod helpers;
mod lifecycle;
mod openapi;
mod ops;
mod profiles;
mod users;
