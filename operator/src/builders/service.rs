//! WasmApp → Service (ClusterIP, port 80 → the app's port) and → HorizontalPodAutoscaler.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    PORT_NAME, SERVICE_PORT, child_meta, merged, required_name, selector_labels, with_spec_hash,
};
use crate::{Result, WasmApp};

/// The ClusterIP Service in front of the app's pods, stamped with its spec hash.
pub fn service(app: &WasmApp) -> Result<Service> {
    let name = required_name(app)?;
    let spec = &app.spec;
    let metadata = child_meta(
        app,
        merged(&spec.service_labels, selector_labels(app)),
        spec.service_annotations.clone(),
    )?;
    let service = Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector_labels(app)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_string()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::Int(spec.port)),
                protocol: Some("TCP".to_string()),
                app_protocol: Some("http".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    with_spec_hash(service, &name)
}

/// The autoscaling/v2 HPA scaling the app's Deployment on CPU, or `None` when the app has no
/// `spec.autoscaling`.
pub fn horizontal_pod_autoscaler(app: &WasmApp) -> Result<Option<HorizontalPodAutoscaler>> {
    let Some(autoscaling) = &app.spec.autoscaling else {
        return Ok(None);
    };
    let name = required_name(app)?;
    let hpa = HorizontalPodAutoscaler {
        metadata: child_meta(app, selector_labels(app), Default::default())?,
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_string()),
                kind: "Deployment".to_string(),
                name: name.clone(),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_string(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_string(),
                    target: MetricTarget {
                        type_: "Utilization".to_string(),
                        average_utilization: Some(autoscaling.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: None,
        }),
        status: None,
    };
    with_spec_hash(hpa, &name).map(Some)
}
