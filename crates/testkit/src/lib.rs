//! Support for kubescaler's integration tests, which run against real servers:
//!
//! - [`require_cassandra`] / [`require_redis`]: the servers `scripts/services.sh up` starts,
//!   or a failure that says how to start them — never a silent skip.
//! - [`RedisServer`]: a dedicated `redis-server` on a free port, for tests that stop it or
//!   count its commands without disturbing anything else.
//! - [`Forwarder`]: a TCP hop in front of a real server that can refuse, forward, and cut
//!   every connection — an outage and a recovery without touching the server.
//! - [`Nginx`]: nginx balancing round robin over several instances, as an Ingress would.
//! - [`Http`]: a small JSON client with one method per verb.
//! - [`Running`]: a service started in-process on port 0, stopped when dropped.
//! - [`assert_routes_match_document`] / [`error_answers_off_the_error_body`]: a service's
//!   OpenAPI document against the routes it serves and the error body it sends.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_debug_implementations)]

mod forwarder;
mod http;
mod nginx;
mod openapi;
mod redis_server;
mod running;
mod servers;

pub use forwarder::Forwarder;
pub use http::{Http, error_code};
pub use nginx::Nginx;
pub use openapi::{assert_routes_match_document, error_answers_off_the_error_body};
pub use redis_server::RedisServer;
pub use running::{Running, common_args};
pub use servers::{free_port, require_cassandra, require_redis, shared_redis_url};
