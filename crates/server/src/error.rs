//! The one error type handlers return, and the extractors that produce it.
//!
//! Every failure a client sees is `{"error": "<code>", "message": "<human text>"}` with the
//! right status. Causes of server-side failures are logged here, once, and not shown to the
//! client beyond what helps it (which dependency is down, when to retry).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Query, Request};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header, request::Parts};
use axum::response::{IntoResponse, Response};
use kubescaler_core::codes::{UpstreamError, UpstreamFailure};
use kubescaler_core::{ErrorCode, retry};
use serde::Serialize;

use crate::openapi::{BodyErrors, Failure};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// What went wrong inside, kept with its chain of causes for the log; shared, so an answer can
/// be cloned (stream renders one refusal both as JSON and inside an event stream).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    retry_after_secs: Option<u64>,
    extra: Map<String, Value>,
    /// For the log only: never sent to the client.
    cause: Option<Cause>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_secs: None, extra: Map::new(), cause: None }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// A dependency (database, Redis, another service) cannot serve the request now.
    pub fn unavailable(dependency: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, message)
            .with_field("dependency", dependency)
    }

    /// A bug or an unexpected failure: the cause is logged, the client gets a generic message.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error, see the service's logs",
        )
        .caused_by(Arc::from(cause.into()))
    }

    /// A client's failure to call another service, answered as the gateway the caller then
    /// is: the dependency away 503, slow 504, failed 502; its refusal passed on as it came.
    /// The client's error, with its causes, goes to the log.
    pub fn upstream(error: impl UpstreamError) -> Self {
        let message = error.to_string();
        let answer = match error.failure() {
            UpstreamFailure::Unreachable => Self::unavailable(error.dependency(), message),
            UpstreamFailure::TimedOut => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::GatewayTimeout, message)
                    .with_field("dependency", error.dependency())
            }
            UpstreamFailure::Failed => Self::new(StatusCode::BAD_GATEWAY, ErrorCode::BadGateway, message)
                .with_field("dependency", error.dependency()),
            UpstreamFailure::Refused { status, code, message } => {
                Self::new(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), code, message)
            }
        };
        answer.caused_by(Arc::new(error))
    }

    /// What went wrong inside, logged with the answer and never sent.
    pub fn caused_by(mut self, cause: Cause) -> Self {
        self.cause = Some(cause);
        self
    }

    /// `Retry-After: secs`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// When to retry, to the millisecond: `retry_after_ms` in the body, and `Retry-After` in
    /// whole seconds (rounded up, at least one) for clients that read only the header.
    pub fn with_retry_after_ms(self, after: Duration) -> Self {
        let millis = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.with_retry_after(retry::header_secs(after)).with_field(retry::RETRY_AFTER_MS, millis)
    }

    /// An extra field in the JSON body, e.g. which dependency failed.
    pub fn with_field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// When the client may try again, if the error says: the body's `retry_after_ms`, which is
    /// exact, else the `Retry-After` header's seconds.
    pub fn retry_after(&self) -> Option<Duration> {
        let millis = self.extra.get(retry::RETRY_AFTER_MS).and_then(Value::as_u64);
        millis.map(Duration::from_millis).or(self.retry_after_secs.map(Duration::from_secs))
    }

    /// The JSON body: `{"error": code, "message": …}` and the extra fields.
    pub fn body(&self) -> Value {
        let mut body = Map::with_capacity(2 + self.extra.len());
        body.insert("error".into(), Value::String(self.code.as_str().to_owned()));
        body.insert("message".into(), Value::String(self.message.clone()));
        body.extend(self.extra.iter().map(|(key, value)| (key.clone(), value.clone())));
        Value::Object(body)
    }

    /// Logs the failure once, as answering it does: an internal one as an error, any other
    /// server-side failure as a warning, each with its chain of causes; a client's mistake
    /// not at all.
    pub fn log(&self) {
        let causes = self.cause.as_ref().map(|cause| chain(cause.as_ref()));
        let causes = causes.as_deref().unwrap_or("");
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(status = self.status.as_u16(), code = %self.code, cause = causes, "request failed");
        } else if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = %self.code, message = %self.message, cause = causes, "request failed");
        }
    }
}

/// An error and its sources, `outer: inner: innermost`: what a log line needs to say why.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// `axum::Json`, but a body that cannot be read answers with an [`ApiError`]:
/// bad syntax 400, valid JSON of the wrong shape or values 422, too large 413,
/// wrong content type 415.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    BodyErrors::from(rejection).into()
}

/// A body that cannot be read, as [`BodyErrors`] describes it.
impl From<JsonRejection> for BodyErrors {
    fn from(rejection: JsonRejection) -> Self {
        let text = rejection.body_text();
        match rejection {
            JsonRejection::JsonSyntaxError(_) => {
                Self::BadRequest(Failure(ApiError::bad_request(ErrorCode::MalformedJson, text)))
            }
            JsonRejection::JsonDataError(_) => Self::Invalid(Failure(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidBody,
                text,
            ))),
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(Failure(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "expected a body with `Content-Type: application/json`",
            ))),
            rejection if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::TooLarge(Failure(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::BodyTooLarge,
                    format!("request body is larger than {} bytes", kubescaler_core::model::MAX_BODY_BYTES),
                )))
            }
            // The body could not be buffered for another reason than its size: the connection
            // broke or the stream failed, which axum answers 400 too.
            _ => Self::BadRequest(Failure(ApiError::bad_request(ErrorCode::UnreadableBody, text))),
        }
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// An axum extractor of the request's parts whose rejection answers as an [`ApiError`]: the
/// one implementation behind [`ApiPath`] and [`ApiQuery`] (and any other extractor whose
/// rejection converts into an `ApiError`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Api<E>(pub E);

impl<S, E> FromRequestParts<S> for Api<E>
where
    E: FromRequestParts<S>,
    ApiError: From<E::Rejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        E::from_request_parts(parts, state).await.map(Self).map_err(ApiError::from)
    }
}

/// `axum::extract::Path`, but a segment that does not parse (a malformed id) answers 400 with
/// the parser's own message. Destructured as `Api(Path(id))`.
pub type ApiPath<T> = Api<Path<T>>;

/// `axum::extract::Query`, but a parameter that does not parse (or is unknown, for structs
/// that deny unknown fields) answers 400 `invalid_parameter` naming it. Destructured as
/// `Api(Query(params))`.
pub type ApiQuery<T> = Api<Query<T>>;

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            PathRejection::FailedToDeserializePathParams(e) => {
                let message = match e.into_kind() {
                    axum::extract::path::ErrorKind::Message(message) => message,
                    other => other.to_string(),
                };
                ApiError::bad_request(ErrorCode::InvalidId, message)
            }
            other => ApiError::internal(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        match rejection {
            QueryRejection::FailedToDeserializeQueryString(e) => {
                ApiError::bad_request(ErrorCode::InvalidParameter, e.body_text())
            }
            other => ApiError::bad_request(ErrorCode::InvalidParameter, other.body_text()),
        }
    }
}

/// Fallback for paths no route matches. Names the path the client sent, not what is left of
/// it inside a nested router (`/main/x`, not `/x`).
pub async fn no_route(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    no_route_for(&method, &uri)
}

/// The 404 of [`no_route`], for a handler that finds the path is not one it serves after all.
pub fn no_route_for(method: &Method, uri: &Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NoRoute, format!("no route for {method} {}", uri.path()))
}

/// Fallback for a known path with a method it does not serve.
pub async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    method_not_allowed_for(&method, &uri)
}

/// The 405 of [`method_not_allowed`], for a handler that serves several methods itself.
pub fn method_not_allowed_for(method: &Method, uri: &Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// That 405 as an answer, with the `Allow` header HTTP requires of it (`allow`: `GET,HEAD`),
/// as axum's own 405s carry it.
pub fn method_not_allowed_response(method: &Method, uri: &Uri, allow: &'static str) -> Response {
    let mut response = method_not_allowed_for(method, uri).into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, Option<HeaderValue>, Value) {
        let response = error.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).cloned();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let (status, _, body) = body_of(ApiError::internal("password=hunter2 in a connection string")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"], "internal");
        assert!(!body.to_string().contains("hunter2"), "{body}");
    }

    #[tokio::test]
    async fn unavailable_names_the_dependency_and_can_say_when_to_retry() {
        let (status, retry, body) =
            body_of(ApiError::unavailable("redis", "redis is unavailable").with_retry_after(7)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.unwrap(), "7");
        assert_eq!(
            body,
            serde_json::json!({"error": "unavailable", "message": "redis is unavailable", "dependency": "redis"})
        );
    }

    #[tokio::test]
    async fn a_retry_in_milliseconds_is_in_the_body_and_rounded_up_in_the_header() {
        let error = ApiError::new(StatusCode::CONFLICT, ErrorCode::Locked, "held elsewhere")
            .with_retry_after_ms(Duration::from_millis(1500));
        assert_eq!(error.retry_after(), Some(Duration::from_millis(1500)), "the body's exact time first");
        assert_eq!(error.body()["retry_after_ms"], 1500);
        let (status, retry, body) = body_of(error.clone()).await;
        assert_eq!((status, retry.unwrap()), (StatusCode::CONFLICT, HeaderValue::from(2)));
        assert_eq!(body, error.body(), "the answer's body is body()");
        let short = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Rebalancing, "busy")
            .with_retry_after_ms(Duration::from_millis(100));
        assert_eq!(body_of(short).await.1.unwrap(), "1", "at least one second in the header");
    }

    /// A client error whose cause is an I/O error, as a transport's is.
    #[derive(Debug, thiserror::Error)]
    #[error("peer is unreachable")]
    struct Peer(#[source] std::io::Error, UpstreamFailure);

    impl UpstreamError for Peer {
        fn dependency(&self) -> &'static str {
            "peer"
        }
        fn failure(&self) -> UpstreamFailure {
            self.1.clone()
        }
    }

    fn peer(failure: UpstreamFailure) -> ApiError {
        ApiError::upstream(Peer(std::io::Error::other("connection refused"), failure))
    }

    #[tokio::test]
    async fn an_upstream_failure_is_answered_as_a_gateway_and_logged_with_its_cause() {
        let away = peer(UpstreamFailure::Unreachable);
        let cause = away.cause.as_ref().map(|cause| chain(cause.as_ref()));
        assert_eq!(cause.as_deref(), Some("peer is unreachable: connection refused"));
        let (status, _, body) = body_of(away).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            serde_json::json!({"error": "unavailable", "message": "peer is unreachable", "dependency": "peer"})
        );
        let slow = body_of(peer(UpstreamFailure::TimedOut)).await;
        assert_eq!(
            (slow.0, &slow.2["error"], &slow.2["dependency"]),
            (StatusCode::GATEWAY_TIMEOUT, &"gateway_timeout".into(), &"peer".into())
        );
        let failed = body_of(peer(UpstreamFailure::Failed)).await;
        assert_eq!((failed.0, &failed.2["error"]), (StatusCode::BAD_GATEWAY, &"bad_gateway".into()));
    }

    #[tokio::test]
    async fn an_upstream_refusal_is_passed_on_as_it_came() {
        let refused =
            UpstreamFailure::Refused { status: 404, code: ErrorCode::NotFound, message: "no user 1".into() };
        let (status, _, body) = body_of(peer(refused)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, serde_json::json!({"error": "not_found", "message": "no user 1"}));
        let nonsense =
            UpstreamFailure::Refused { status: 1000, code: ErrorCode::Conflict, message: "?".into() };
        assert_eq!(body_of(peer(nonsense)).await.0, StatusCode::BAD_GATEWAY, "a status that is none");
    }

    #[test]
    fn without_milliseconds_the_retry_is_the_headers_seconds() {
        let error = ApiError::unavailable("redis", "down").with_retry_after(3);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(ApiError::not_found("no such user").retry_after(), None);
    }
}
