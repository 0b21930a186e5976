//! feather-operator: reconciles `WasmApp` objects (`feather.dev/v1alpha1`) into a Deployment on
//! the `feather` RuntimeClass, a ClusterIP Service and, when autoscaling is set, an HPA.
//!
//! Layout follows kube-rs `controller-rs`: the types and pure builders here, the reconciler in
//! [`reconcile`], status computation in [`status`], the process pieces (metrics and health
//! endpoints, leader election) in their own modules, and a tiny `main`.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod builders;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod drift;
pub mod error;
pub mod events;
pub mod leader;
pub mod memo;
pub mod metrics;
pub mod reconcile;
pub mod server;
pub mod status;
pub mod types;

#[cfg(test)]
mod mock_tests;

pub use error::{Error, Result};
pub use types::{WasmApp, WasmAppSpec, WasmAppStatus};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "feather-operator";
