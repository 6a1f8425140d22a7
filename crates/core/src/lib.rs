//! The values every kubescaler crate speaks, with no server, client or database attached —
//! so a tool such as `loadgen` can use them without compiling any of those.
//!
//! What each module holds, how they work together and why: docs/ARCHITECTURE.md, section
//! "kubescaler-core".

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
