//! stream's HTTP surface: every route and handler, and how a refusal is answered — JSON with
//! its status, or, for a client that accepts `text/event-stream` and not `application/json`
//! (an `EventSource`), 200 with `retry:` and one `event: refused` carrying the same JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use kubescaler_core::{ErrorCode, ProfileId, UserId};
use kubescaler_server::error::{Api, ApiPath};
use kubescaler_server::{ApiError, host_name};

use crate::locks::AcquireError;
use crate::pages;
use crate::sessions::{Refusal, Sessions};

/// What an EventSource is told to wait after a refusal that names no time (Redis or base
/// away): an outage lasts seconds or more, and three seconds is what browsers wait by default.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(3);
/// What it is told to wait after a malformed address, which no retry can fix: EventSource
/// cannot be stopped by an answer it can read, so its retries are made rare instead.
const INVALID_RETRY: Duration = Duration::from_secs(3600);

/// Every route of stream: the streams, `/ping`, and the pages.
pub fn router(sessions: Arc<Sessions>, host: &str) -> Router {
    Router::new()
        .route("/stream/{user_id}/{profile_id}", get(open_stream).head(describe_stream))
        .with_state(sessions)
        // Which instance answered: a probe of the load spread that needs no stream.
        .route("/ping", host_name(host))
        .route("/", get(|| async { Html(pages::USAGE_HTML) }))
        .route("/index/{user_id}/{profile_id}", get(agent))
        .route("/index/{user_id}/{profile_id}/", get(agent_dir))
        .route(
            "/static/agent.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], pages::AGENT_JS) }),
        )
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            Refusal::NoProfile(_) => ApiError::not_found(message),
            Refusal::NotBound(..) => ApiError::new(StatusCode::FORBIDDEN, ErrorCode::NotBound, message),
            Refusal::Full(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TooManyStreams, message)
                    .with_retry_after(1)
            }
            Refusal::Base(e) => ApiError::upstream(e),
            Refusal::Lock(AcquireError::Conflict { retry_after }) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Locked, message)
                    .with_retry_after_ms(retry_after)
            }
            Refusal::Lock(AcquireError::Unavailable(_)) => ApiError::unavailable("redis", message),
            Refusal::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ShuttingDown, message)
                    .with_retry_after(1)
            }
            Refusal::Rebalancing { retry_after } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Rebalancing, message)
                    .with_retry_after_ms(retry_after)
            }
        }
    }
}

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
    event_stream(Body::from(format!("retry: {}\nevent: refused\ndata: {data}\n\n", retry.as_millis())))
}

/// The page reads the pair from its own URL; the ids are checked here so a typo gets a clear
/// 400 rather than a page that fails later.
async fn agent(Api(Path((_user, _profile))): ApiPath<(UserId, ProfileId)>) -> impl IntoResponse {
    Html(pages::AGENT_HTML)
}

async fn agent_dir(Api(Path((_user, _profile))): ApiPath<(UserId, ProfileId)>) -> impl IntoResponse {
    Html(pages::agent_html_dir())
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
