//! What every kubescaler service runs on, and nothing service-specific: the HTTP side of a
//! service, from the first byte of a request to the last of the drain.
//!
//! - [`error`]: the one JSON error type (`{"error","message"}`) every handler returns, and the
//!   extractors that turn rejections into it.
//! - [`config`] and [`telemetry`]: the flags every binary shares and `tracing` set-up.
//! - [`http`]: `/livez`, `/readyz`, `/health`, `/metrics`, per-route request metrics, request
//!   spans, and the [`http::Server`] that binds (port 0 in tests), serves and shuts down.
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token.

pub mod config;
pub mod error;
pub mod http;
pub mod shutdown;
pub mod telemetry;

pub use error::{ApiError, ApiJson};
