//! stream's HTTP surface: every route and handler, and how a refusal is answered — JSON with
//! its status, or, for a client that accepts `text/event-stream` and not `application/json`
//! (an `EventSource`), 200 with `retry:` and one `event: refused` carrying the same JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use kubescaler_core::{ErrorCode, ProfileId, UserId};
use kubescaler_server::ApiError;
use kubescaler_server::error::{Api, ApiPath};
use kubescaler_server::openapi::{self, ErrorBody, Failure};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::locks::AcquireError;
use crate::pages;
use crate::sessions::{Refusal, Sessions};

/// What an EventSource is told to wait after a refusal that names no time (Redis or base
/// away): an outage lasts seconds or more, and three seconds is what browsers wait by default.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(3);
/// What it is told to wait after a malformed address, which no retry can fix: EventSource
/// cannot be stopped by an answer it can read, so its retries are made rare instead.
const INVALID_RETRY: Duration = Duration::from_secs(3600);

/// Every route of stream — the streams, `/ping`, the pages — each registered with its
/// description (`#[utoipa::path]` beside each handler), so the router and [`openapi`] cannot
/// disagree.
pub(crate) fn router(sessions: Arc<Sessions>) -> OpenApiRouter {
    routes().with_state(sessions)
}

fn routes() -> OpenApiRouter<Arc<Sessions>> {
    OpenApiRouter::new()
        .routes(routes!(open_stream, describe_stream))
        .routes(routes!(ping))
        .routes(routes!(usage_page))
        .routes(routes!(agent))
        .routes(routes!(agent_dir))
        .routes(routes!(agent_js))
}

/// stream's OpenAPI document: the API and the operational endpoints.
pub fn openapi() -> utoipa::openapi::OpenApi {
    describe(routes().into_openapi())
}

/// The whole document around the API's paths.
pub(crate) fn describe(api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = openapi::document(
        api,
        "kubescaler stream",
        env!("CARGO_PKG_VERSION"),
        "Server-Sent Events of random data for a user and profile, one stream per pair across \
         every replica, and the test agent page. Reached at every path outside `/main` through \
         the Ingress or the all-in-one's front door. Every failure is an `ErrorBody` with a \
         stable `error` code, except a refusal to an EventSource, which is one `refused` event; \
         docs/STREAM.md is the whole contract (events, retries, how a stream ends).",
    );
    // The ids are only path parameters here, whose schemas are references: the components must
    // hold what they refer to (in base and main a body brings them in).
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, schema) in [(UserId::name(), UserId::schema()), (ProfileId::name(), ProfileId::schema())] {
        components.schemas.insert(name.into_owned(), schema);
    }
    doc
}

/// Every refusal of a stream, as the answer it gets. [`From<Refusal>`] sorts each refusal into
/// one of these, and only these turn into an [`ApiError`], so an answer the mapping can give is
/// one the description of `GET /stream/…` lists.
#[derive(Debug, utoipa::IntoResponses)]
enum Refusals {
    /// The user is not in the profile: `not_bound`
    #[response(status = 403)]
    NotBound(Failure),
    /// No such profile: `not_found`
    #[response(status = 404)]
    NoProfile(Failure),
    /// The pair streams elsewhere: `locked`, with `retry_after_ms` until the holder's lock can
    /// expire
    #[response(status = 409)]
    Locked(Failure),
    /// base failed or sent an answer that cannot be read: `bad_gateway`, `dependency`: `base`
    #[response(status = 502)]
    BadGateway(Failure),
    /// This instance serves its maximum of streams (`too_many_streams`), is shutting down
    /// (`shutting_down`) or hands streams off (`rebalancing`, with `retry_after_ms`); or base or
    /// a quorum of the Redis instances does not answer (`unavailable`, `dependency`: `base` or
    /// `redis`)
    #[response(status = 503)]
    Unavailable(Failure),
    /// base did not answer in time: `gateway_timeout`, `dependency`: `base`
    #[response(status = 504)]
    Timeout(Failure),
}

impl From<Refusal> for Refusals {
    fn from(refusal: Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            Refusal::NoProfile(_) => Self::NoProfile(Failure(ApiError::not_found(message))),
            Refusal::NotBound(..) => {
                Self::NotBound(Failure(ApiError::new(StatusCode::FORBIDDEN, ErrorCode::NotBound, message)))
            }
            Refusal::Full(_) => Self::Unavailable(Failure(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TooManyStreams, message)
                    .with_retry_after(1),
            )),
            // base's failure is answered as the gateway stream then is; a refusal of base's
            // own that is not a server error is passed on as it came, and base answers the
            // check stream makes with none but 404, which is `NoProfile` above.
            Refusal::Base(e) => {
                let answer = ApiError::upstream(e);
                match answer.status() {
                    StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(Failure(answer)),
                    StatusCode::GATEWAY_TIMEOUT => Self::Timeout(Failure(answer)),
                    _ => Self::BadGateway(Failure(answer)),
                }
            }
            Refusal::Lock(AcquireError::Conflict { retry_after }) => Self::Locked(Failure(
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Locked, message)
                    .with_retry_after_ms(retry_after),
            )),
            Refusal::Lock(AcquireError::Unavailable(_)) => {
                Self::Unavailable(Failure(ApiError::unavailable("redis", message)))
            }
            Refusal::ShuttingDown => Self::Unavailable(Failure(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ShuttingDown, message)
                    .with_retry_after(1),
            )),
            Refusal::Rebalancing { retry_after } => Self::Unavailable(Failure(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Rebalancing, message)
                    .with_retry_after_ms(retry_after),
            )),
        }
    }
}

impl From<Refusals> for ApiError {
    fn from(refusal: Refusals) -> Self {
        match refusal {
            Refusals::NotBound(Failure(answer))
            | Refusals::NoProfile(Failure(answer))
            | Refusals::Locked(Failure(answer))
            | Refusals::BadGateway(Failure(answer))
            | Refusals::Unavailable(Failure(answer))
            | Refusals::Timeout(Failure(answer)) => answer,
        }
    }
}

/// A refusal as [`Refusals`] describes it.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        Refusals::from(refusal).into()
    }
}

/// The pair's stream; a refusal as JSON with its status, or, for a client that accepts
/// `text/event-stream` and not `application/json` (an EventSource), as one `refused` event.
#[utoipa::path(
    get,
    path = "/stream/{user_id}/{profile_id}",
    tag = "streams",
    summary = "The pair's stream of Server-Sent Events, one per pair across every replica",
    params(
        ("user_id" = UserId, Path, description = "The user's id"),
        ("profile_id" = ProfileId, Path, description = "The profile's id"),
    ),
    responses(
        (status = 200, description = "The pair's stream: events until the stream ends (docs/STREAM.md). \
            A refusal is answered so too when the request's `Accept` lists `text/event-stream` and \
            not `application/json` (an EventSource, which gives up on any other status): `retry:` \
            the milliseconds to wait, one `event: refused` whose data is the refusal's JSON error \
            body (any of the statuses below), and the end of the body",
            content_type = "text/event-stream", body = String, headers(
                ("cache-control" = String, description = "`no-cache`"),
                ("x-accel-buffering" = String, description = "`no`: a proxy passes events on as they come"),
            )),
        (status = 400, description = "An id is not a UUID: `invalid_id`", body = ErrorBody),
        Refusals,
    ),
)]
async fn open_stream(
    State(sessions): State<Arc<Sessions>>,
    headers: HeaderMap,
    path: Result<ApiPath<(UserId, ProfileId)>, ApiError>,
) -> Response {
    let refusal: ApiError = match path {
        Ok(Api(Path((user, profile)))) => match sessions.open(user, profile).await {
            Ok(stream) => return event_stream(Body::from_stream(stream.into_body())),
            Err(refusal) => refusal.into(),
        },
        Err(invalid) => invalid,
    };
    sessions.metrics().refused.with_label_values(&[refusal.code().as_str()]).inc();
    if wants_event_stream(&headers) {
        refusal.log();
        // For permanent refusals (not bound, no profile), the binding is worth asking again at
        // the pace the service re-checks held pairs' locks and bindings: once per lock TTL.
        refused_in_sse(&refusal, sessions.config().lock_ttl)
    } else {
        refusal.into_response()
    }
}

/// A HEAD describes the stream a GET would open, and opens none: the ids are checked, nothing
/// is asked of base or Redis, no lock is taken (`get` alone would run the GET handler for it).
#[utoipa::path(
    head,
    path = "/stream/{user_id}/{profile_id}",
    tag = "streams",
    summary = "The headers of the pair's stream, without opening it (a 200 does not promise a GET is admitted)",
    params(
        ("user_id" = UserId, Path, description = "The user's id"),
        ("profile_id" = ProfileId, Path, description = "The profile's id"),
    ),
    responses(
        (status = 200, description = "The headers a stream has; no body. Neither base nor Redis is asked",
            content_type = "text/event-stream"),
        (status = 400, description = "An id is not a UUID: `invalid_id`", body = ErrorBody),
    ),
)]
async fn describe_stream(Api(Path(_)): ApiPath<(UserId, ProfileId)>) -> Response {
    // A body of unknown length, like the stream's, so the head matches the GET's.
    event_stream(
        Body::from_stream(futures::stream::empty::<Result<bytes::Bytes, std::convert::Infallible>>()),
    )
}

fn event_stream(body: Body) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx (the Ingress) must pass events through as they come, not buffer them.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Whether a refusal is answered as an event stream: the client accepts `text/event-stream`,
/// as EventSource always says, and does not also accept JSON — a client that lists both can
/// read statuses and gets the JSON answer.
fn wants_event_stream(headers: &HeaderMap) -> bool {
    let (mut stream, mut json) = (false, false);
    let ranges =
        headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    for range in ranges {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let refused = parts.any(|p| {
            p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0)
        });
        if refused {
            continue;
        }
        if media.eq_ignore_ascii_case("text/event-stream") {
            stream = true;
        } else if media.eq_ignore_ascii_case("application/json") {
            json = true;
        }
    }
    stream && !json
}

/// A refusal as EventSource can act on it: 200, `retry:` the time until the request may
/// succeed, one `refused` event carrying the JSON answer, end of stream — EventSource then
/// reconnects by itself after `retry`, where a non-200 answer would make it give up for good.
fn refused_in_sse(refusal: &ApiError, permanent_retry: Duration) -> Response {
    let retry = refusal.retry_after().unwrap_or(match refusal.status() {
        s if s.is_server_error() => UNAVAILABLE_RETRY,
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => permanent_retry,
        _ => INVALID_RETRY,
    });
    // The JSON answer is one line (serde_json escapes newlines inside strings).
    let data = refusal.body();
    event_stream(Body::from(kubescaler_sse::event("refused", data, Some(retry))))
}

/// Which instance answered: a probe of the load spread that needs no stream.
#[utoipa::path(
    get,
    path = "/ping",
    tag = "pages",
    summary = "The name of the instance that answered (the pod name under Kubernetes)",
    responses((status = 200, description = "The instance's name", content_type = "text/plain", body = String)),
)]
async fn ping(State(sessions): State<Arc<Sessions>>) -> String {
    sessions.config().hostname.clone()
}

#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    summary = "How to use stream: the usage page",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)),
)]
async fn usage_page() -> Html<&'static str> {
    Html(pages::USAGE_HTML)
}

/// The page reads the pair from its own URL; the ids are checked here so a typo gets a clear
/// 400 rather than a page that fails later.
#[utoipa::path(
    get,
    path = "/index/{user_id}/{profile_id}",
    tag = "pages",
    summary = "The test agent page of a user and profile, which opens the pair's stream",
    params(
        ("user_id" = UserId, Path, description = "The user's id"),
        ("profile_id" = ProfileId, Path, description = "The profile's id"),
    ),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 400, description = "An id is not a UUID: `invalid_id`", body = ErrorBody),
    ),
)]
async fn agent(Api(Path((_user, _profile))): ApiPath<(UserId, ProfileId)>) -> impl IntoResponse {
    Html(pages::AGENT_HTML)
}

/// The same page under the trailing slash bookmarks often keep.
#[utoipa::path(
    get,
    path = "/index/{user_id}/{profile_id}/",
    tag = "pages",
    summary = "The test agent page, under the trailing slash bookmarks often keep",
    params(
        ("user_id" = UserId, Path, description = "The user's id"),
        ("profile_id" = ProfileId, Path, description = "The profile's id"),
    ),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 400, description = "An id is not a UUID: `invalid_id`", body = ErrorBody),
    ),
)]
async fn agent_dir(Api(Path((_user, _profile))): ApiPath<(UserId, ProfileId)>) -> impl IntoResponse {
    Html(pages::agent_html_dir())
}

#[utoipa::path(
    get,
    path = "/static/agent.js",
    tag = "pages",
    summary = "The test agent page's script",
    responses((status = 200, description = "The script", content_type = "text/javascript", body = String)),
)]
async fn agent_js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], pages::AGENT_JS)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::{HeaderMap, HeaderValue, header};
    use kubescaler_server::ApiError;

    use super::{refused_in_sse, wants_event_stream};
    use crate::sessions::Refusal;

    #[test]
    fn only_clients_that_accept_an_event_stream_and_not_json_get_refusals_as_events() {
        let accepts = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            }
            wants_event_stream(&headers)
        };
        assert!(accepts(&["text/event-stream"]), "EventSource");
        assert!(accepts(&["Text/Event-Stream; charset=utf-8"]));
        assert!(accepts(&["text/html", "text/event-stream;q=0.5"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["*/*"]));
        assert!(!accepts(&["text/event-stream, application/json"]));
        assert!(!accepts(&["text/event-stream", "application/json;q=0.1"]));
        assert!(accepts(&["text/event-stream", "application/json;q=0"]));
        assert!(!accepts(&["text/event-stream;q=0"]));
    }

    /// The mapping can give no answer the description of `GET /stream/…` leaves out: each
    /// refusal's status is one [`Refusals`] describes.
    #[test]
    fn every_refusal_is_answered_with_a_status_the_document_lists() {
        use axum::http::StatusCode;
        use kubescaler_base_client::BaseError;
        use kubescaler_core::{ErrorCode, ProfileId, UserId};
        use utoipa::IntoResponses;

        use crate::locks::{AcquireError, RegistryUnavailable};

        let described = super::Refusals::responses();
        let base = |status| BaseError::Upstream { status, code: ErrorCode::Internal, message: "x".into() };
        let refusals = [
            Refusal::NoProfile(ProfileId::new_random()),
            Refusal::NotBound(UserId::new_random(), ProfileId::new_random()),
            Refusal::Full(1),
            Refusal::Base(base(StatusCode::SERVICE_UNAVAILABLE)),
            Refusal::Base(base(StatusCode::GATEWAY_TIMEOUT)),
            Refusal::Base(base(StatusCode::INTERNAL_SERVER_ERROR)),
            Refusal::Base(BaseError::WrongCount { path: "/bindings/check", asked: 2, got: 1 }),
            Refusal::Lock(AcquireError::Conflict { retry_after: Duration::from_secs(1) }),
            Refusal::Lock(AcquireError::Unavailable(RegistryUnavailable::NoHolder)),
            Refusal::ShuttingDown,
            Refusal::Rebalancing { retry_after: Duration::from_millis(100) },
        ];
        for refusal in refusals {
            let what = refusal.to_string();
            let status = ApiError::from(refusal).status();
            assert!(described.contains_key(status.as_str()), "{what}: {status}");
        }
    }

    async fn as_event(refusal: Refusal) -> String {
        let response = refused_in_sse(&ApiError::from(refusal), Duration::from_secs(60));
        assert_eq!(response.status(), 200);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_draining_or_stopping_instance_says_when_to_come_back() {
        let rebalancing = as_event(Refusal::Rebalancing { retry_after: Duration::from_millis(100) }).await;
        assert!(rebalancing.starts_with("retry: 100\nevent: refused\ndata: {"), "{rebalancing}");
        assert!(rebalancing.contains(r#""error":"rebalancing""#), "{rebalancing}");
        assert!(rebalancing.ends_with("}\n\n"), "{rebalancing}");
        let stopping = as_event(Refusal::ShuttingDown).await;
        assert!(stopping.starts_with("retry: 1000\nevent: refused\n"), "{stopping}");
        assert!(stopping.contains(r#""error":"shutting_down""#), "{stopping}");
    }
}
