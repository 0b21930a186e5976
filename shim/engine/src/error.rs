//! The one error type of the engine's public API.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a workload. Messages name the object
/// (file, digest, export) and what was expected, so they can be shown to a user as-is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine configuration is unusable (e.g. zero instances, a limit that does not fit).
    #[error("engine configuration: {0}")]
    Config(String),
    /// The bytes are not a workload we can run; the message says what was found instead.
    #[error("unsupported wasm: {0}")]
    Unsupported(String),
    /// wasmtime rejected the wasm (validation, compilation or linking of its imports).
    #[error("wasm {digest}: {context}: {cause:#}")]
    Wasm {
        /// sha256 of the wasm bytes, hex.
        digest: String,
        /// what we were doing (compile, link imports, ...).
        context: &'static str,
        /// wasmtime's error.
        cause: wasmtime::Error,
    },
    /// A preopened directory could not be opened.
    #[error("preopen {} as {guest_path}: {cause:#}", .host_path.display())]
    Preopen {
        /// directory on the host
        host_path: PathBuf,
        /// path the guest sees
        guest_path: String,
        /// what failed
        cause: wasmtime::Error,
    },
    /// The operation does not fit the program kind (e.g. `serve` on a command module).
    #[error("program {digest} is a {kind}: {operation} needs {expected}")]
    WrongKind {
        /// sha256 of the wasm bytes, hex.
        digest: String,
        /// what the program is
        kind: crate::ProgramKind,
        /// what was attempted
        operation: &'static str,
        /// which kinds support it
        expected: &'static str,
    },
    /// An I/O error outside the guest (listener, output files, ...).
    #[error("{context}: {source}")]
    Io {
        /// what we were doing
        context: String,
        /// the error
        source: std::io::Error,
    },
    /// The guest could not be started (instantiation failed, e.g. the memory limit is lower than
    /// the module's initial memory, or the instance pool is exhausted).
    #[error("instantiate {digest}: {cause:#}")]
    Instantiate {
        /// sha256 of the wasm bytes, hex.
        digest: String,
        /// wasmtime's error
        cause: wasmtime::Error,
    },
}

impl EngineError {
    /// An I/O error with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }
}
