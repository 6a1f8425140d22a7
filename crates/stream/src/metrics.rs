//! What stream counts, in the service's Prometheus registry. `kubescaler_stream_active_connections`
//! is what the stream HorizontalPodAutoscaler scales on (through the Prometheus adapter): its name
//! is part of the manifests' contract (`scripts/check_manifests.py` checks it is exported here).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// stream's own metrics; the request metrics every service has are `kubescaler_server`'s.
#[derive(Debug, Clone)]
pub(crate) struct StreamMetrics {
    pub active: IntGauge,
    pub sent: IntCounter,
    pub dropped: IntCounter,
    pub bytes: IntCounter,
    pub acquisitions: IntCounterVec,
    pub lost: IntCounterVec,
    pub refresh: Histogram,
    pub rebalanced: IntCounter,
    pub refused: IntCounterVec,
    pub subscriptions: IntGauge,
}

impl StreamMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            active: IntGauge::new("kubescaler_stream_active_connections", "Streams open on this instance")?,
            sent: IntCounter::new("kubescaler_stream_messages_sent_total", "Messages written to streams")?,
            dropped: IntCounter::new(
                "kubescaler_stream_messages_dropped_total",
                "Messages skipped for clients reading slower than the rate",
            )?,
            bytes: IntCounter::new(
                "kubescaler_stream_bytes_sent_total",
                "Bytes of messages written to streams",
            )?,
            acquisitions: IntCounterVec::new(
                Opts::new("kubescaler_stream_lock_acquisitions_total", "Lock acquisitions by result"),
                &["result"],
            )?,
            lost: IntCounterVec::new(
                Opts::new("kubescaler_stream_locks_lost_total", "Streams ended by the refresher, by reason"),
                &["reason"],
            )?,
            refresh: Histogram::with_opts(
                HistogramOpts::new(
                    "kubescaler_stream_lock_refresh_duration_seconds",
                    "Time to extend every lock and marker the instance holds (one script per Redis \
                     instance per 1,000 locks)",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )?,
            rebalanced: IntCounter::new(
                "kubescaler_stream_rebalanced_total",
                "Streams handed off to other instances because this one held more than its share",
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "kubescaler_stream_refusals_total",
                    "Stream requests refused, by error code (answered in SSE or JSON alike)",
                ),
                &["error"],
            )?,
            subscriptions: IntGauge::new(
                "kubescaler_stream_binding_subscriptions",
                "Live subscriptions to binding changes: one per Redis instance heard, or the \
                 all-in-one's in-process channel (0: only the sweep catches unbound pairs)",
            )?,
        };
        registry.register(Box::new(metrics.active.clone()))?;
        registry.register(Box::new(metrics.sent.clone()))?;
        registry.register(Box::new(metrics.dropped.clone()))?;
        registry.register(Box::new(metrics.bytes.clone()))?;
        registry.register(Box::new(metrics.acquisitions.clone()))?;
        registry.register(Box::new(metrics.lost.clone()))?;
        registry.register(Box::new(metrics.refresh.clone()))?;
        registry.register(Box::new(metrics.rebalanced.clone()))?;
        registry.register(Box::new(metrics.refused.clone()))?;
        registry.register(Box::new(metrics.subscriptions.clone()))?;
        Ok(metrics)
    }
}
