//! The values every kubescaler crate speaks, with no server, client or database attached —
//! so a tool such as `loadgen` can use them without compiling any of those.
//!
//! - [`ids`] and [`model`]: the domain values (`UserId`, `ProfileId`, `UserName`, `User`,
//!   `Profile`) as types that only hold valid data, and the request bodies of base's API.
//! - [`codes`]: the error codes of every JSON error answer, for the side that answers and the
//!   side that reads them, and how a client's failure becomes its caller's answer.
//! - [`keys`]: the Redis key schema, shared by stream (writer) and main (reader).
//! - [`bindings`]: the binding changes base announces and stream acts on.
//! - [`duration`]: the syntax of every duration setting (`10s`, `250ms`).
//! - [`pairs`]: files of `user profile` lines, as the load tools read them.
//! - [`percentile`]: the percentiles every measurement report states.
//! - [`retry`]: when a refused client may try again (`retry_after_ms`, `Retry-After`).
//! - [`sync`]: the policy for a poisoned mutex ([`sync::lock`]).
//! - `openapi` (feature `openapi`): the values' OpenAPI schemas, with the limits they enforce.

pub mod bindings;
pub mod codes;
pub mod duration;
pub mod ids;
pub mod keys;
pub mod model;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod pairs;
pub mod percentile;
pub mod retry;
pub mod sync;

pub use codes::ErrorCode;
pub use ids::{IdError, ProfileId, UserId};
