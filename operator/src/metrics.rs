//! Prometheus metrics: reconciles, errors by kind, reconcile duration, apps by condition.

use std::sync::Arc;
use std::time::Instant;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::status::{CONDITION_TYPES, is_true};
use crate::{Error, WasmApp};

/// Label set of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`Error::metric_label`].
    pub kind: String,
}

/// A request the reconciler makes to the API server (watches not included).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ApiCall {
    /// GET of a child the cache did not have.
    Get,
    /// Server-side apply of a child.
    Apply,
    /// Delete of an HPA.
    Delete,
    /// Server-side apply of a WasmApp status.
    Status,
    /// Publishing an Event.
    Event,
}

impl ApiCall {
    fn label(self) -> &'static str {
        match self {
            ApiCall::Get => "get",
            ApiCall::Apply => "apply",
            ApiCall::Delete => "delete",
            ApiCall::Status => "status",
            ApiCall::Event => "event",
        }
    }
}

/// Label set of the API request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// [`ApiCall`] as text.
    pub call: String,
}

/// Label set of the apps-by-condition gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    /// Ready, Progressing or Degraded.
    pub condition: String,
}

/// The operator's metrics and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    api_calls: Family<CallLabels, Counter>,
    duration: Histogram,
    apps_by_condition: Family<ConditionLabels, Gauge>,
    apps: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("feather_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let api_calls = Family::<CallLabels, Counter>::default();
        // 1 ms .. ~16 s
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let apps_by_condition = Family::<ConditionLabels, Gauge>::default();
        let apps = Gauge::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            errors.clone(),
        );
        registry.register(
            "api_requests",
            "Requests reconciles made to the API server, by kind",
            api_calls.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        registry.register(
            "apps_by_condition",
            "WasmApps whose condition is True, by condition",
            apps_by_condition.clone(),
        );
        registry.register("apps", "WasmApps the operator sees", apps.clone());
        Self {
            registry,
            reconciles,
            errors,
            api_calls,
            duration,
            apps_by_condition,
            apps,
        }
    }
}

/// Measures one reconcile; records its duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Count a reconcile and time it until the returned guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer {
        self.reconciles.inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    /// Count a failed reconcile under its error kind.
    pub fn reconcile_failed(&self, error: &Error) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: error.metric_label().to_string(),
            })
            .inc();
    }

    /// Count one request to the API server.
    pub fn api_call(&self, call: ApiCall) {
        self.api_calls
            .get_or_create(&CallLabels {
                call: call.label().to_string(),
            })
            .inc();
    }

    /// Requests of `call`'s kind counted so far.
    pub fn api_calls(&self, call: ApiCall) -> u64 {
        self.api_calls
            .get_or_create(&CallLabels {
                call: call.label().to_string(),
            })
            .get()
    }

    /// Reconciles counted so far.
    pub fn reconciles(&self) -> u64 {
        self.reconciles.get()
    }

    /// Failed reconciles counted so far under `kind`.
    pub fn errors(&self, kind: &str) -> u64 {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_string(),
            })
            .get()
    }

    /// Refresh the per-condition gauges from the controller's cache of apps. Done at scrape
    /// time so deleted apps drop out without the reconciler having to notice deletions.
    pub fn refresh_apps(&self, apps: &Store<WasmApp>) {
        let snapshot: Vec<Arc<WasmApp>> = apps.state();
        self.apps
            .set(i64::try_from(snapshot.len()).unwrap_or(i64::MAX));
        for kind in CONDITION_TYPES {
            let count = snapshot
                .iter()
                .filter(|app| is_true(app.status.as_ref(), kind))
                .count();
            self.apps_by_condition
                .get_or_create(&ConditionLabels {
                    condition: kind.to_string(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_metrics_name_reconciles_errors_and_duration() {
        let metrics = Metrics::default();
        drop(metrics.reconcile_started());
        metrics.api_call(ApiCall::Apply);
        metrics.reconcile_failed(&Error::MissingMetadata {
            name: "a".into(),
            field: "uid",
        });
        let text = metrics.encode().expect("encode");
        assert!(
            text.contains("feather_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains("feather_operator_reconcile_errors_total{kind=\"missing_metadata\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("feather_operator_api_requests_total{call=\"apply\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("feather_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
