//! What every kubescaler service runs on, and nothing service-specific: the HTTP side of a
//! service, from the first byte of a request to the last of the drain.
//!
//! What each module holds, how they work together and why: docs/ARCHITECTURE.md, section
//! "kubescaler-server".

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
