//! `containerd-shim-feather-v1`: a containerd shim v2 that runs WebAssembly where runc would
//! start a process. One shim process serves every wasm container of a containerd namespace
//! (a node): one engine, one compiled-code cache, no per-pod process.
//!
//! - [`bootstrap`]: the `start` and `delete` actions containerd runs the binary with;
//! - [`serve`]: the long-running process and its ttrpc server (task v3 and v2);
//! - [`service`]: the task API; [`container`]: one task's state machine;
//! - [`create`], [`spec`], [`source`], [`stdio`], [`netns`]: from a bundle to a runnable task;
//! - [`grpc`]: a small client for containerd's API (version, images, content store).
#![forbid(unsafe_code)]

pub mod bootstrap;
pub mod container;
pub mod create;
pub mod events;
pub mod grpc;
pub mod netns;
pub mod registry;
pub mod serve;
pub mod service;
pub mod source;
pub mod spec;
pub mod stdio;

/// The runtime type containerd is configured with; the binary name derives from it.
pub const RUNTIME_TYPE: &str = "io.containerd.feather.v1";
