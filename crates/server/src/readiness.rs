//! Readiness: `GET /readyz` answers 200 when every [`Probe`] answers within [`PROBE_TIMEOUT`]
//! and the service is not shutting down, otherwise 503 naming what failed. Liveness never asks
//! a dependency (see [`router`](crate::router)), so an outage does not make Kubernetes restart
//! healthy pods.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use kubescaler_core::ErrorCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

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

/// Ready: every dependency answered its check within its time.
#[utoipa::path(get, path = "/readyz", tag = crate::openapi::OPS_TAG, responses(
    (status = 200, description = "Every dependency answers", body = crate::openapi::Ready),
    (status = 503, description = "A dependency does not answer (`not_ready`, with `failing` and `checks`), \
        or the service is shutting down (`shutting_down`)", body = crate::openapi::ErrorBody),
))]
pub(crate) async fn readyz(State(readiness): State<Readiness>) -> Response {
    if readiness.shutdown.is_cancelled() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
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
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady, message)
        .with_field("failing", names)
        .with_field("checks", checks)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::testing::{Fixed, app, call};

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
}
