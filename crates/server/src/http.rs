//! The HTTP plumbing every service shares: operational endpoints, request metrics and spans,
//! error fallbacks, body limits, and a [`Server`] that binds first (so tests can ask for port 0
//! and learn the real port) and serves until a cancellation token fires.
//!
//! - `GET /livez` and `GET /health`: the process is alive and serving HTTP; never checks
//!   dependencies, so a database outage does not make Kubernetes restart healthy pods.
//! - `GET /readyz`: every [`Probe`] answers within [`PROBE_TIMEOUT`], and the service is not
//!   shutting down; otherwise 503 naming what failed.
//! - `GET /metrics`: Prometheus text from the service's registry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kubescaler_core::codes;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::config::CommonArgs;
use crate::error::{self, ApiError};
use kubescaler_core::model::MAX_BODY_BYTES;

/// How long one readiness probe may take before it counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A dependency whose health decides readiness.
#[async_trait]
pub trait Probe: Send + Sync + 'static {
    /// Short name used in `/readyz` answers and logs, e.g. `cassandra`.
    fn name(&self) -> &'static str;
    /// `Ok` when the dependency answers now; the error says why not.
    async fn check(&self) -> Result<(), ProbeError>;
}

/// Why a probe failed. `/readyz` shows its text to an operator; the cause stays whole.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    /// The dependency answered with an error, or could not be reached.
    #[error(transparent)]
    Failed(Arc<dyn std::error::Error + Send + Sync>),
    /// It did not answer within [`PROBE_TIMEOUT`].
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl ProbeError {
    pub fn failed(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Failed(Arc::new(cause))
    }
}

/// The probe of a dependency reached through `T` (a store, a registry, a client) that has a
/// way to ask whether it answers: one generic adapter instead of one per dependency.
pub struct Ping<T: ?Sized, E> {
    name: &'static str,
    target: Arc<T>,
    ping: for<'a> fn(&'a T) -> BoxFuture<'a, Result<(), E>>,
}

impl<T: ?Sized, E> std::fmt::Debug for Ping<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ping").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<T, E> Ping<T, E>
where
    T: ?Sized + Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    /// `name` as `/readyz` reports it; `ping` asks `target`, e.g. `|store| store.ping()`.
    pub fn probe(
        name: &'static str,
        target: Arc<T>,
        ping: for<'a> fn(&'a T) -> BoxFuture<'a, Result<(), E>>,
    ) -> Arc<dyn Probe> {
        Arc::new(Self { name, target, ping })
    }
}

#[async_trait]
impl<T, E> Probe for Ping<T, E>
where
    T: ?Sized + Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    async fn check(&self) -> Result<(), ProbeError> {
        (self.ping)(&self.target).await.map_err(ProbeError::failed)
    }
}

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    probes: Vec<Arc<dyn Probe>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.probes.iter().map(|p| p.name()).collect();
        f.debug_struct("Readiness").field("probes", &names).finish()
    }
}

impl Readiness {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self { probes: Vec::new(), shutdown }
    }

    pub fn with_probe(mut self, probe: Arc<dyn Probe>) -> Self {
        self.probes.push(probe);
        self
    }

    /// Runs every probe concurrently; returns each probe's name with its failure, if any.
    pub async fn check(&self) -> Vec<(&'static str, Result<(), ProbeError>)> {
        futures::future::join_all(self.probes.iter().map(|probe| async move {
            let result = match tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await {
                Ok(result) => result,
                Err(_) => Err(ProbeError::Timeout(PROBE_TIMEOUT)),
            };
            (probe.name(), result)
        }))
        .await
    }
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    if readiness.shutdown.is_cancelled() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SHUTTING_DOWN,
            "the service is shutting down",
        )
        .into_response();
    }
    let results = readiness.check().await;
    let failing: Vec<_> =
        results.iter().filter_map(|(name, r)| r.as_ref().err().map(|why| (*name, why))).collect();
    let checks: serde_json::Map<_, _> = results
        .iter()
        .map(|(name, r)| {
            let state = match r {
                Ok(()) => "ok".to_owned(),
                Err(why) => why.to_string(),
            };
            ((*name).to_owned(), state.into())
        })
        .collect();
    if failing.is_empty() {
        return axum::Json(json!({ "status": "ready", "checks": checks })).into_response();
    }
    let message = failing.iter().map(|(name, why)| format!("{name}: {why}")).collect::<Vec<_>>().join("; ");
    let names: Vec<_> = failing.iter().map(|(name, _)| *name).collect();
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, codes::NOT_READY, message)
        .with_field("failing", names)
        .with_field("checks", checks)
        .into_response()
}

async fn livez() -> impl IntoResponse {
    axum::Json(json!({ "status": "alive" }))
}

/// `GET` answering the instance's name in plain text: which replica served the request (the
/// original's `GET /`). The name is the pod name under Kubernetes (`HOSTNAME`).
pub fn host_name<S: Clone + Send + Sync + 'static>(name: &str) -> axum::routing::MethodRouter<S> {
    let name: Arc<str> = Arc::from(name);
    get(move || std::future::ready(name.to_string()))
}

/// Request count and latency per route and status, registered in a service's registry.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl HttpMetrics {
    /// `service` becomes a constant label, so several services can share one registry (as they
    /// do in the all-in-one process) and still be told apart.
    pub fn new(registry: Registry, service: &str) -> Result<Self, prometheus::Error> {
        let labels = ["method", "route", "status"];
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered, by route and status")
                .const_label("service", service),
            &labels,
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Time to produce the response head")
                .const_label("service", service)
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            &labels,
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self { registry, requests, latency })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(elapsed.as_secs_f64());
    }
}

async fn record(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    // The route template, not the path: one series per route, not per id.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.observe(method.as_str(), &route, response.status().as_u16(), start.elapsed());
    response
}

async fn metrics_text(State(registry): State<Registry>) -> Response {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buffer).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// Wraps a service's API router with everything services share: the operational endpoints,
/// JSON fallbacks, the body limit, request ids, a span per request and request metrics.
pub fn service_router(api: Router, readiness: Readiness, metrics: HttpMetrics) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let ops = Router::new()
        .route("/livez", get(livez))
        .route("/health", get(livez))
        .route("/readyz", get(readyz).with_state(readiness))
        .route("/metrics", get(metrics_text).with_state(metrics.registry.clone()));
    api.merge(ops)
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Layers run bottom-up on the way in: the id is set first, so the span can carry it.
        .layer(middleware::from_fn_with_state(metrics, record))
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

/// A bound listener, ready to serve. Binding is separate from serving so a caller (a test,
/// the all-in-one process) learns the real port before the first request.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    send_buffer: Option<usize>,
    write_buffer: Option<usize>,
}

impl Server {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr, send_buffer: None, write_buffer: None })
    }

    /// Bounds what HTTP/1 buffers for a connection before it stops polling the response body
    /// (hyper's default is about 400 KB, or 16 chunks). With the minimum, 8 KiB, a streamed
    /// body is asked for its next chunk only once the previous one is in the socket, so a
    /// slow reader's backlog stays in the stream, where it can be skipped.
    pub fn with_write_buffer(mut self, bytes: usize) -> Self {
        self.write_buffer = Some(bytes.max(8192));
        self
    }

    /// Caps the kernel send buffer of every accepted connection. Without a cap Linux grows it
    /// to megabytes per connection, which a slow reader of a stream fills with stale data
    /// while the service never sees backpressure.
    pub fn with_send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = Some(bytes);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish for at most
    /// `grace`. The cap matters: a long-lived response (a stream) would otherwise hold the
    /// process open forever.
    pub async fn serve(
        self,
        router: Router,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> std::io::Result<()> {
        let mut builder = Builder::new(TokioExecutor::new());
        if let Some(bytes) = self.write_buffer {
            builder.http1().max_buf_size(bytes);
        }
        let graceful = GracefulShutdown::new();
        loop {
            let (tcp, _) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            // Responses are small and latency matters more than packet count: no Nagle delay.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            // Linux doubles what it is given (for its own bookkeeping); half is asked for so
            // that the buffer is the configured size.
            if let Some(bytes) = self.send_buffer
                && let Err(e) = socket2::SockRef::from(&tcp).set_send_buffer_size(bytes / 2)
            {
                tracing::warn!(error = %e, bytes, "cannot cap the socket send buffer");
            }
            let service = TowerToHyperService::new(router.clone());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        // No new connections; open ones finish their requests, for at most `grace`.
        drop(self.listener);
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!(
                ?grace,
                "requests still in flight after the shutdown grace period; exiting anyway"
            );
        }
        Ok(())
    }
}

/// A service ready to run: its router, bound to its port, tied to a shutdown token.
/// Each service's `build` returns one; the binaries and tests run it.
pub struct Service {
    name: &'static str,
    server: Server,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
    drain: Option<futures::future::BoxFuture<'static, ()>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Service {
    pub async fn bind(
        name: &'static str,
        common: &CommonArgs,
        port: u16,
        router: Router,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let server = Server::bind(SocketAddr::new(common.listen_address, port)).await?;
        Ok(Self { name, server, router, shutdown, grace: common.shutdown_grace, drain: None })
    }

    /// For long streamed responses: cap the socket send buffer and hyper's write buffer, so
    /// a slow reader's backlog is not hoarded below the service (see [`Server`]).
    pub fn with_stream_buffers(mut self, send_buffer: usize) -> Self {
        self.server = self.server.with_send_buffer(send_buffer).with_write_buffer(8192);
        self
    }

    /// Work to finish after the server stopped and before the process may exit (releasing
    /// locks, say), within the same grace period.
    pub fn with_drain(mut self, drain: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        self.drain = Some(Box::pin(drain));
        self
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until the shutdown token is cancelled, then drains within the grace period.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(service = self.name, addr = %self.server.local_addr(), "listening");
        let (token, grace, name) = (self.shutdown.clone(), self.grace, self.name);
        let serve = async {
            let result = self.server.serve(self.router, self.shutdown.clone(), grace).await;
            // A server that failed must not leave the drain waiting for a signal.
            self.shutdown.cancel();
            result
        };
        // The drain starts with the shutdown, beside the HTTP drain, in the same grace period.
        let drain = async move {
            if let Some(drain) = self.drain {
                token.cancelled().await;
                if tokio::time::timeout(grace, drain).await.is_err() {
                    tracing::warn!(service = name, "shutdown work unfinished at the end of the grace period");
                }
            }
        };
        let (served, ()) = tokio::join!(serve, drain);
        served?;
        tracing::info!(service = name, "stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    struct Fixed(Result<(), &'static str>);

    #[async_trait]
    impl Probe for Fixed {
        fn name(&self) -> &'static str {
            "db"
        }
        async fn check(&self) -> Result<(), ProbeError> {
            self.0.map_err(|why| ProbeError::failed(std::io::Error::other(why)))
        }
    }

    fn app(probe: Fixed, shutdown: CancellationToken) -> Router {
        let readiness = Readiness::new(shutdown).with_probe(Arc::new(probe));
        let metrics = HttpMetrics::new(Registry::new(), "test").unwrap();
        let api = Router::new().route("/things/{id}", get(|| async { "thing" }));
        service_router(api, readiness, metrics)
    }

    async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, serde_json::Value, String) {
        let response = app
            .clone()
            .oneshot(HttpRequest::builder().method(method).uri(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (status, serde_json::from_slice(&bytes).unwrap_or_default(), text)
    }

    #[tokio::test]
    async fn readyz_names_the_failing_dependency() {
        let app = app(Fixed(Err("connection refused")), CancellationToken::new());
        let (status, body, _) = call(&app, "GET", "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "not_ready");
        assert_eq!(body["failing"], json!(["db"]));
        assert!(body["message"].as_str().unwrap().contains("db: connection refused"));
        let (status, _, _) = call(&app, "GET", "/livez").await;
        assert_eq!(status, StatusCode::OK, "liveness never depends on dependencies");
    }

    /// A dependency reached through a trait object, as services hold theirs.
    #[async_trait]
    trait Backend: Send + Sync {
        async fn ping(&self) -> Result<(), std::io::Error>;
    }

    struct Down;

    #[async_trait]
    impl Backend for Down {
        async fn ping(&self) -> Result<(), std::io::Error> {
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"))
        }
    }

    #[tokio::test]
    async fn a_ping_probe_names_the_dependency_and_keeps_its_error() {
        let backend: Arc<dyn Backend> = Arc::new(Down);
        let probe = Ping::probe("store", backend, |backend| backend.ping());
        assert_eq!(probe.name(), "store");
        let error = probe.check().await.unwrap_err();
        assert_eq!(error.to_string(), "connection refused");
        let ProbeError::Failed(cause) = error else { panic!("not a failure: {error:?}") };
        let io = cause.downcast_ref::<std::io::Error>().expect("the cause, typed");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn readyz_fails_once_shutting_down() {
        let token = CancellationToken::new();
        let app = app(Fixed(Ok(())), token.clone());
        assert_eq!(call(&app, "GET", "/readyz").await.0, StatusCode::OK);
        token.cancel();
        let (status, body, _) = call(&app, "GET", "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "shutting_down");
    }

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

    #[tokio::test]
    async fn metrics_count_requests_by_route_template_and_status() {
        let app = app(Fixed(Ok(())), CancellationToken::new());
        call(&app, "GET", "/things/1").await;
        call(&app, "GET", "/things/2").await;
        let (_, _, text) = call(&app, "GET", "/metrics").await;
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/things/{id}",service="test",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    }
}
