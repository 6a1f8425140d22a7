//! What every kubescaler service runs on, and nothing service-specific: the HTTP side of a
//! service, from the first byte of a request to the last of the drain.
//!
//! - [`error`]: the one JSON error type (`{"error","message"}`) every handler returns, and the
//!   extractors that turn rejections into it.
//! - [`config`] and [`telemetry`]: the flags every binary shares and `tracing` set-up.
//! - [`router`]: a service's API wrapped with `/livez`, `/health`, `/readyz`, `/metrics`, JSON
//!   fallbacks, the body limit, request ids and spans ([`service_router`]); a router mounted
//!   under a prefix with its root at both `/p` and `/p/` ([`router::nest_with_root`]).
//! - [`readiness`]: what `/readyz` asks ([`Probe`], and [`Ping`] for any dependency that can
//!   be pinged).
//! - [`metrics`]: request count and latency per route ([`HttpMetrics`]).
//! - [`server`]: the [`Server`] that binds (port 0 in tests), serves and drains, and the
//!   [`Service`] every service's `build` returns.
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token.
//! - [`limits`]: the open files limit, raised at start.
//! - [`openapi`]: what every service's OpenAPI document shares (error body, operational
//!   endpoints, `/openapi.json`).

pub mod config;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod readiness;
pub mod router;
pub mod server;
pub mod shutdown;
pub mod telemetry;

pub use error::{ApiError, ApiJson};
pub use metrics::HttpMetrics;
pub use readiness::{PROBE_TIMEOUT, Ping, Probe, ProbeError, Readiness};
pub use router::{host_name, service_router};
pub use server::{Server, Service};
