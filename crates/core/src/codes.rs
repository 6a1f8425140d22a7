//! The error codes of the `{"error": "<code>", "message": …}` answers: one definition for the
//! service that answers with a code and the client that acts on it (base answers `not_bound`,
//! stream's client of base reads it). Clients such as the test agent page and `loadgen` branch
//! on these strings, so they are part of the HTTP contract: never rename one.
//!
//! The JSON name of a code is its variant's name in snake case, derived once for serde and for
//! [`ErrorCode::as_str`] (a test holds them equal), and [`ErrorCode::ALL`] is derived from the
//! variants, so a code cannot be added without being published.

/// One error code of the HTTP contract.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    // Requests that cannot be served as sent.
    /// A path segment is not a valid id.
    InvalidId,
    /// A query parameter does not parse, or is unknown.
    InvalidParameter,
    /// The body is not JSON.
    MalformedJson,
    /// The body is JSON of the wrong shape or with invalid values.
    InvalidBody,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The body is larger than any service accepts.
    BodyTooLarge,
    /// The body could not be read for another reason.
    UnreadableBody,
    /// A create names an id of its own (ids are assigned by the service).
    IdNotAllowed,
    /// A replace's body names another id than its path.
    IdMismatch,
    /// An admin operation without the admin token.
    Unauthorized,

    // Routing.
    /// No route for the path.
    NoRoute,
    /// The path exists, not with this method.
    MethodNotAllowed,

    // Records and their state.
    /// No such user or profile.
    NotFound,
    /// The user is not in the profile (base's binding check; stream's refusal).
    NotBound,
    /// The request conflicts with the record's current state.
    Conflict,
    /// A test data generation is already running.
    GenerationRunning,

    // Streams.
    /// The pair streams elsewhere: its lock is held.
    Locked,
    /// The instance serves its maximum of streams.
    TooManyStreams,
    /// The instance hands streams off and refuses new ones for a moment.
    Rebalancing,

    // The service and its dependencies.
    /// A dependency (database, Redis, another service) cannot serve the request now.
    Unavailable,
    /// The service is shutting down.
    ShuttingDown,
    /// A readiness probe failed.
    NotReady,
    /// A dependency did not answer in time.
    GatewayTimeout,
    /// A dependency failed, or answered what cannot be read.
    BadGateway,
    /// A dependency's error that carried no code of its own.
    UpstreamError,
    /// A bug or an unexpected failure; the cause is in the service's logs.
    Internal,
}

impl ErrorCode {
    /// Every code, for the OpenAPI description's list of the codes an answer may carry.
    pub const ALL: &[ErrorCode] = <ErrorCode as strum::VariantArray>::VARIANTS;

    /// The code as it is written in an answer's `error` field.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call to another service failed, as the caller's own answer tells it: a dependency
/// away is the caller's 503, a slow one its 504, a failed one its 502, and a refusal — a 4xx
/// with a code of its own — is passed on as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFailure {
    Unreachable,
    TimedOut,
    Failed,
    Refused { status: u16, code: ErrorCode, message: String },
}

/// An error of a client of another service, which the HTTP edge of the caller turns into its
/// answer (the server crate's `ApiError` converts any of them); the client itself depends on
/// no server.
pub trait UpstreamError: std::error::Error + Send + Sync + 'static {
    /// The service called, as an answer's `dependency` field names it.
    fn dependency(&self) -> &'static str;
    fn failure(&self) -> UpstreamFailure;
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    /// serde and strum derive the name each on its own: an answer and the published list must
    /// say the same, and a code read back must be the code written.
    #[test]
    fn every_code_has_one_name_that_reads_back() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
            assert_eq!(code.as_str().parse::<ErrorCode>().unwrap(), code);
        }
        assert_eq!(ErrorCode::NotBound.as_str(), "not_bound");
        assert_eq!(ErrorCode::ALL.len(), 26);
    }
}
