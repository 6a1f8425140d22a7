//! The error codes of the `{"error": "<code>", "message": …}` answers: one definition for the
//! service that answers with a code and the client that acts on it (base answers `not_bound`,
//! stream's client of base reads it). Clients such as the test agent page and `loadgen` branch
//! on these strings, so they are part of the HTTP contract: never rename one.

// Requests that cannot be served as sent.
/// A path segment is not a valid id.
pub const INVALID_ID: &str = "invalid_id";
/// A query parameter does not parse, or is unknown.
pub const INVALID_PARAMETER: &str = "invalid_parameter";
/// The body is not JSON.
pub const MALFORMED_JSON: &str = "malformed_json";
/// The body is JSON of the wrong shape or with invalid values.
pub const INVALID_BODY: &str = "invalid_body";
/// The body is not `application/json`.
pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
/// The body is larger than any service accepts.
pub const BODY_TOO_LARGE: &str = "body_too_large";
/// The body could not be read for another reason.
pub const UNREADABLE_BODY: &str = "unreadable_body";
/// A create names an id of its own (ids are assigned by the service).
pub const ID_NOT_ALLOWED: &str = "id_not_allowed";
/// A replace's body names another id than its path.
pub const ID_MISMATCH: &str = "id_mismatch";
/// An admin operation without the admin token.
pub const UNAUTHORIZED: &str = "unauthorized";

// Routing.
/// No route for the path.
pub const NO_ROUTE: &str = "no_route";
/// The path exists, not with this method.
pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";

// Records and their state.
/// No such user or profile.
pub const NOT_FOUND: &str = "not_found";
/// The user is not in the profile (base's binding check; stream's refusal).
pub const NOT_BOUND: &str = "not_bound";
/// The request conflicts with the record's current state.
pub const CONFLICT: &str = "conflict";
/// A test data generation is already running.
pub const GENERATION_RUNNING: &str = "generation_running";

// Streams.
/// The pair streams elsewhere: its lock is held.
pub const LOCKED: &str = "locked";
/// The instance serves its maximum of streams.
pub const TOO_MANY_STREAMS: &str = "too_many_streams";
/// The instance hands streams off and refuses new ones for a moment.
pub const REBALANCING: &str = "rebalancing";

// The service and its dependencies.
/// A dependency (database, Redis, another service) cannot serve the request now.
pub const UNAVAILABLE: &str = "unavailable";
/// The service is shutting down.
pub const SHUTTING_DOWN: &str = "shutting_down";
/// A readiness probe failed.
pub const NOT_READY: &str = "not_ready";
/// A dependency did not answer in time.
pub const GATEWAY_TIMEOUT: &str = "gateway_timeout";
/// A dependency failed, or answered what cannot be read.
pub const BAD_GATEWAY: &str = "bad_gateway";
/// A dependency's error that carried no code of its own.
pub const UPSTREAM_ERROR: &str = "upstream_error";
/// A bug or an unexpected failure; the cause is in the service's logs.
pub const INTERNAL: &str = "internal";

/// Every code above, for the OpenAPI description's list of the codes an answer may carry.
pub const ALL: &[&str] = &[
    INVALID_ID,
    INVALID_PARAMETER,
    MALFORMED_JSON,
    INVALID_BODY,
    UNSUPPORTED_MEDIA_TYPE,
    BODY_TOO_LARGE,
    UNREADABLE_BODY,
    ID_NOT_ALLOWED,
    ID_MISMATCH,
    UNAUTHORIZED,
    NO_ROUTE,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    NOT_BOUND,
    CONFLICT,
    GENERATION_RUNNING,
    LOCKED,
    TOO_MANY_STREAMS,
    REBALANCING,
    UNAVAILABLE,
    SHUTTING_DOWN,
    NOT_READY,
    GATEWAY_TIMEOUT,
    BAD_GATEWAY,
    UPSTREAM_ERROR,
    INTERNAL,
];

#[cfg(test)]
mod tests {
    /// A code added above and forgotten in `ALL` would be missing from the published contract.
    #[test]
    fn all_lists_every_code_once() {
        let source = include_str!("codes.rs");
        let declared =
            source.lines().filter(|line| line.starts_with("pub const ") && line.ends_with("\";")).count();
        assert_eq!(super::ALL.len(), declared);
        let unique: std::collections::BTreeSet<_> = super::ALL.iter().collect();
        assert_eq!(unique.len(), super::ALL.len());
    }
}
