//! What every kubescaler service needs, and nothing service-specific.
//!
//! - [`ids`] and [`model`]: the domain values (`UserId`, `ProfileId`, `UserName`, `User`,
//!   `Profile`) as types that only hold valid data, and the request bodies of base's API.
//! - [`error`]: the one JSON error type (`{"error","message"}`) every handler returns, and the
//!   JSON extractor that turns body rejections into it.
//! - [`config`] and [`telemetry`]: the flags every binary shares and `tracing` set-up.
//! - [`http`]: `/livez`, `/readyz`, `/health`, `/metrics`, per-route request metrics, request
//!   spans, and the [`http::Server`] that binds (port 0 in tests), serves and shuts down.
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token.
//! - [`keys`]: the Redis key schema, shared by stream (writer) and main (reader).
//! - [`base_client`]: the typed HTTP client of base, used by main and stream.
//! - [`redis_quorum`]: the `REDIS_URLS` instances and commands counted against their quorum.

pub mod base_client;
pub mod config;
pub mod error;
pub mod http;
pub mod ids;
pub mod keys;
pub mod model;
pub mod redis_quorum;
pub mod shutdown;
pub mod telemetry;

pub use error::{ApiError, ApiJson};
pub use ids::{IdError, ProfileId, UserId};
