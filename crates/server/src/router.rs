//! The router every service is served through: its own API, wrapped with the operational
//! endpoints (`/livez` and `/health`, which never ask a dependency; `/readyz`; `/metrics`),
//! JSON fallbacks for unknown routes and methods, the body limit, request ids, a span per
//! request and request metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, Uri};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use kubescaler_core::model::MAX_BODY_BYTES;
use serde_json::json;
use tower::ServiceExt;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::error;
use crate::metrics::{self, HttpMetrics};
use crate::readiness::{self, Readiness};

/// Alive: the process serves HTTP. Never asks a dependency, so a dependency's outage does not
/// get the pod restarted.
#[utoipa::path(get, path = "/livez", tag = crate::openapi::OPS_TAG,
    responses((status = 200, description = "The process is alive", body = crate::openapi::Alive)))]
pub(crate) async fn livez() -> impl IntoResponse {
    axum::Json(json!({ "status": "alive" }))
}

/// `/livez` under the name existing probes and load balancers ask for.
#[utoipa::path(get, path = "/health", tag = crate::openapi::OPS_TAG,
    responses((status = 200, description = "The process is alive", body = crate::openapi::Alive)))]
pub(crate) async fn health() -> impl IntoResponse {
    livez().await
}

/// `GET` answering the instance's name in plain text: which replica served the request, so a
/// `curl` through a Service or the Ingress shows the load spread. The name is the pod name under
/// Kubernetes (`HOSTNAME`).
pub fn host_name<S: Clone + Send + Sync + 'static>(name: &str) -> axum::routing::MethodRouter<S> {
    let name: Arc<str> = Arc::from(name);
    get(move || std::future::ready(name.to_string()))
}

/// `router` under `prefix`: `{prefix}/x` for each `/x` of it, and its root at both `{prefix}`
/// and `{prefix}/` (nesting alone gives only the former, and links and bookmarks keep the
/// slash).
pub fn nest_with_root(prefix: &str, router: Router) -> Router {
    // Reached through a handler, so the outer router's fallbacks cannot answer for it: another
    // method on the root gets the same JSON 405 here as under `{prefix}`.
    let root = router.clone().method_not_allowed_fallback(error::method_not_allowed);
    Router::new().nest(prefix, router).route(
        &format!("{prefix}/"),
        any(move |mut request: Request| {
            *request.uri_mut() = Uri::from_static("/");
            // The nested router matches `/` afresh; the outer match would be prefixed to its route.
            request.extensions_mut().remove::<MatchedPath>();
            root.clone().oneshot(request)
        }),
    )
}

/// Wraps a service's API router with everything services share: the operational endpoints,
/// JSON fallbacks, the body limit, request ids, a span per request and request metrics.
pub fn service_router(api: Router, readiness: Readiness, metrics: HttpMetrics) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let ops = Router::new()
        .route("/livez", get(livez))
        .route("/health", get(health))
        .route("/readyz", get(readiness::readyz).with_state(readiness))
        .route("/metrics", get(metrics::metrics_text).with_state(metrics.registry().clone()));
    api.merge(ops)
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Layers run bottom-up on the way in: the id is set first, so the span can carry it.
        .layer(middleware::from_fn_with_state(metrics, metrics::record))
        // Enforced by the body extractors, so an oversized body gets the JSON 413 of ApiJson.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", |p| p.as_str());
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %request.method(), route, path = %request.uri().path(), request_id = id)
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use async_trait::async_trait;
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use prometheus::Registry;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use crate::metrics::HttpMetrics;
    use crate::readiness::{Probe, ProbeError, Readiness};
    use crate::router::service_router;

    /// A probe with a fixed answer.
    pub(crate) struct Fixed(pub Result<(), &'static str>);

    #[async_trait]
    impl Probe for Fixed {
        fn name(&self) -> &'static str {
            "db"
        }
        async fn check(&self) -> Result<(), ProbeError> {
            self.0.map_err(|why| ProbeError::failed(std::io::Error::other(why)))
        }
    }

    /// A service with one route, `/things/{id}`, ready as `probe` says.
    pub(crate) fn app(probe: Fixed, shutdown: CancellationToken) -> Router {
        let readiness = Readiness::new(shutdown).with_probe(Arc::new(probe));
        let metrics = HttpMetrics::new(Registry::new(), "test").unwrap();
        let api = Router::new().route("/things/{id}", get(|| async { "thing" }));
        service_router(api, readiness, metrics)
    }

    pub(crate) async fn call(
        app: &Router,
        method: &str,
        uri: &str,
    ) -> (StatusCode, serde_json::Value, String) {
        let response = app
            .clone()
            .oneshot(Request::builder().method(method).uri(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (status, serde_json::from_slice(&bytes).unwrap_or_default(), text)
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request as HttpRequest, StatusCode, header};
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use super::*;
    use crate::router::testing::{Fixed, app, call};

    #[tokio::test]
    async fn host_name_is_plain_text() {
        let app: Router = Router::new().route("/", host_name("pod-7"));
        let response =
            app.oneshot(HttpRequest::builder().uri("/").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(&bytes[..], b"pod-7");
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_json() {
        let app = app(Fixed(Ok(())), CancellationToken::new());
        let (status, body, _) = call(&app, "GET", "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no_route");
        let (status, body, _) = call(&app, "DELETE", "/things/1").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"], "method_not_allowed");
    }
}
