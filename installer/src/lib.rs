//! The node installer of Featherweight: runs as a DaemonSet on the wasm node pool, puts the
//! shim binary on the host, registers the `feather` runtime with containerd and reports ready
//! only when that handler is verified.
#![forbid(unsafe_code)]

pub mod containerd_config;
pub mod install;
