//! Request metrics: count and latency per route template and status, in the service's
//! Prometheus registry, and `GET /metrics` serving that registry as text.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::error::ApiError;

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

pub(crate) async fn record(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
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

/// The Prometheus text exposition of every metric of the process.
#[utoipa::path(get, path = "/metrics", tag = crate::openapi::OPS_TAG, responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String),
    (status = 500, description = "The metrics could not be encoded", body = crate::openapi::ErrorBody),
))]
pub(crate) async fn metrics_text(State(registry): State<Registry>) -> Response {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buffer).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use crate::router::testing::{Fixed, app, call};
    use tokio_util::sync::CancellationToken;

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
