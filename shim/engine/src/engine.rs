//! The process-wide engine and the programs it loads.

use crate::cache::{self, DiskCache};
use crate::kind::{self, Format};
use crate::state::{CommandState, ComponentState};
use crate::{EngineConfig, EngineError, ProgramKind};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use wasmtime::Precompiled;
use wasmtime::component::Component;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// The one wasm engine of the process. Clone it freely: clones share everything.
///
/// Holds the `wasmtime::Engine` (settings from [`EngineConfig`]), the epoch ticker thread
/// (stopped when the last clone is dropped), the disk cache and the map of loaded programs.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    wasmtime: wasmtime::Engine,
    config: EngineConfig,
    cache: Option<DiskCache>,
    /// wasm digest -> the loaded program, while anyone holds it. One async lock per digest so
    /// concurrent loads of the same wasm compile it once.
    loaded: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Weak<ProgramInner>>>>>,
    module_linker: wasmtime::Linker<CommandState>,
    component_linker: wasmtime::component::Linker<ComponentState>,
    _ticker: Ticker,
}

/// Where a loaded program's compiled code came from (the first time it was loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactSource {
    /// Compiled from the wasm bytes (and written to the disk cache if there is one).
    Compiled,
    /// Read from the disk cache, no compilation.
    DiskCache,
}

/// A loaded wasm program: compiled, its kind known and its imports linked. Cheap to clone;
/// every workload running the same wasm shares one.
#[derive(Clone)]
pub struct Program {
    pub(crate) inner: Arc<ProgramInner>,
}

pub(crate) struct ProgramInner {
    pub(crate) engine: Engine,
    pub(crate) digest: String,
    pub(crate) kind: ProgramKind,
    pub(crate) source: ArtifactSource,
    pub(crate) pre: Pre,
}

/// The pre-linked form of each kind, ready to instantiate.
pub(crate) enum Pre {
    Command(wasmtime::InstancePre<CommandState>),
    Cli(CommandPre<ComponentState>),
    Http(ProxyPre<ComponentState>),
}

/// Advances the engine's epoch every tick on a dedicated OS thread (not a tokio task: it
/// must keep ticking even when every executor thread is busy running guests).
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: wasmtime::Engine, tick: std::time::Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_seen = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("feather-epoch".into())
            .spawn(move || {
                while !stop_seen.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// Build the engine: wasmtime settings, epoch ticker, cache directory, linkers.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let wasmtime = wasmtime::Engine::new(&config.to_wasmtime()?)
            .map_err(|e| EngineError::Config(format!("wasmtime rejected the settings: {e:#}")))?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(DiskCache::open(dir, &wasmtime).map_err(|e| {
                EngineError::io(format!("open cache directory {}", dir.display()), e)
            })?),
            None => None,
        };

        let mut module_linker = wasmtime::Linker::new(&wasmtime);
        wasmtime_wasi::p1::add_to_linker_async(&mut module_linker, |s: &mut CommandState| {
            &mut s.wasi
        })
        .map_err(|e| EngineError::Config(format!("link WASI p1: {e:#}")))?;
        let mut component_linker = wasmtime::component::Linker::new(&wasmtime);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)
            .map_err(|e| EngineError::Config(format!("link WASI p2: {e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            .map_err(|e| EngineError::Config(format!("link wasi:http: {e:#}")))?;

        let ticker = Ticker::start(wasmtime.clone(), config.epoch_tick)
            .map_err(|e| EngineError::io("start the epoch ticker thread", e))?;
        tracing::info!(
            cache_dir = ?config.cache_dir,
            max_instances = config.max_instances,
            max_memory_per_instance = config.max_memory_per_instance,
            epoch_tick = ?config.epoch_tick,
            "wasm engine ready"
        );
        Ok(Engine {
            inner: Arc::new(EngineInner {
                wasmtime,
                config,
                cache,
                loaded: Mutex::new(HashMap::new()),
                module_linker,
                component_linker,
                _ticker: ticker,
            }),
        })
    }

    /// The settings this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.wasmtime
    }

    /// Load wasm bytes: reuse the program if it is loaded already, else take the compiled code
    /// from the disk cache or compile it (on tokio's blocking pool), detect its kind and link
    /// its imports. Errors name what was found when the bytes are not a runnable workload.
    pub async fn load(&self, wasm: Vec<u8>) -> Result<Program, EngineError> {
        let (wasm, digest) = tokio::task::spawn_blocking(move || {
            let digest = hex::encode(Sha256::digest(&wasm));
            (wasm, digest)
        })
        .await
        .map_err(|e| EngineError::Config(format!("hashing task failed: {e}")))?;

        let slot = {
            let mut loaded = self
                .inner
                .loaded
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Forget digests nobody holds any more (their programs were dropped).
            loaded.retain(|_, slot| {
                Arc::strong_count(slot) > 1 || slot.try_lock().is_ok_and(|w| w.strong_count() > 0)
            });
            Arc::clone(loaded.entry(digest.clone()).or_default())
        };
        let mut held = slot.lock().await;
        if let Some(inner) = held.upgrade() {
            tracing::debug!(digest = %short(&digest), "program already loaded");
            return Ok(Program { inner });
        }
        let engine = self.clone();
        let inner = tokio::task::spawn_blocking(move || engine.prepare(digest, &wasm))
            .await
            .map_err(|e| EngineError::Config(format!("compile task failed: {e}")))??;
        let inner = Arc::new(inner);
        *held = Arc::downgrade(&inner);
        Ok(Program { inner })
    }

    /// Compile (or read from cache), detect the kind and link. Blocking.
    fn prepare(&self, digest: String, wasm: &[u8]) -> Result<ProgramInner, EngineError> {
        let _span = tracing::info_span!("load", digest = %short(&digest)).entered();
        let wasm_err = |context: &'static str| {
            let digest = digest.clone();
            move |cause| EngineError::Wasm {
                digest,
                context,
                cause,
            }
        };
        let engine = &self.inner.wasmtime;
        let format = kind::detect_format(wasm)?;
        let started = std::time::Instant::now();
        let (kind, source, pre) = match format {
            Format::CoreModule => {
                let (module, source) = self.module(&digest, wasm)?;
                let kind = kind::module_kind(&module)?;
                let pre = self
                    .inner
                    .module_linker
                    .instantiate_pre(&module)
                    .map_err(wasm_err("link the module's imports against WASI preview 1"))?;
                (kind, source, Pre::Command(pre))
            }
            Format::Component => {
                let (component, source) = self.component(&digest, wasm)?;
                let kind = kind::component_kind(engine, &component)?;
                let pre = self
                    .inner
                    .component_linker
                    .instantiate_pre(&component)
                    .map_err(wasm_err(
                        "link the component's imports against WASI 0.2 and wasi:http",
                    ))?;
                let pre = match kind {
                    ProgramKind::HttpComponent => Pre::Http(
                        ProxyPre::new(pre).map_err(wasm_err("find wasi:http/incoming-handler"))?,
                    ),
                    _ => Pre::Cli(CommandPre::new(pre).map_err(wasm_err("find wasi:cli/run"))?),
                };
                (kind, source, pre)
            }
        };
        tracing::info!(%kind, ?source, elapsed = ?started.elapsed(), "program loaded");
        Ok(ProgramInner {
            engine: self.clone(),
            digest,
            kind,
            source,
            pre,
        })
    }

    fn module(
        &self,
        digest: &str,
        wasm: &[u8],
    ) -> Result<(wasmtime::Module, ArtifactSource), EngineError> {
        let engine = &self.inner.wasmtime;
        if let Some(payload) = self.cached(digest, Precompiled::Module) {
            match cache::deserialize_module(engine, &payload) {
                Ok(m) => return Ok((m, ArtifactSource::DiskCache)),
                Err(e) => self.reject(digest, &format!("wasmtime refused it: {e:#}")),
            }
        }
        let module = wasmtime::Module::new(engine, wasm).map_err(|cause| EngineError::Wasm {
            digest: digest.to_string(),
            context: "compile core module",
            cause,
        })?;
        self.store(digest, module.serialize());
        Ok((module, ArtifactSource::Compiled))
    }

    fn component(
        &self,
        digest: &str,
        wasm: &[u8],
    ) -> Result<(Component, ArtifactSource), EngineError> {
        let engine = &self.inner.wasmtime;
        if let Some(payload) = self.cached(digest, Precompiled::Component) {
            match cache::deserialize_component(engine, &payload) {
                Ok(c) => return Ok((c, ArtifactSource::DiskCache)),
                Err(e) => self.reject(digest, &format!("wasmtime refused it: {e:#}")),
            }
        }
        let component = Component::new(engine, wasm).map_err(|cause| EngineError::Wasm {
            digest: digest.to_string(),
            context: "compile component",
            cause,
        })?;
        self.store(digest, component.serialize());
        Ok((component, ArtifactSource::Compiled))
    }

    /// A checked cache payload, or None (no cache, no entry, bad entry deleted, read error).
    fn cached(&self, digest: &str, expected: Precompiled) -> Option<Vec<u8>> {
        let cache = self.inner.cache.as_ref()?;
        match cache.read(digest, expected) {
            Ok(Ok(payload)) => payload,
            Ok(Err(reject)) => {
                self.reject(digest, &format!("{reject:?}"));
                None
            }
            Err(e) => {
                tracing::warn!(
                    path = %cache.entry_path(digest).display(),
                    "cannot read cache entry, compiling instead: {e}"
                );
                None
            }
        }
    }

    fn reject(&self, digest: &str, why: &str) {
        if let Some(cache) = &self.inner.cache {
            tracing::warn!(
                path = %cache.entry_path(digest).display(),
                "discarding bad cache entry ({why}); compiling again"
            );
            cache.discard(digest);
        }
    }

    fn store(&self, digest: &str, serialized: wasmtime::Result<Vec<u8>>) {
        let Some(cache) = &self.inner.cache else {
            return;
        };
        let written = serialized
            .map_err(|e| format!("serialize: {e:#}"))
            .and_then(|bytes| cache.write(digest, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = written {
            // Not fatal: the program runs, the next start compiles again.
            tracing::warn!(
                path = %cache.entry_path(digest).display(),
                "cannot write cache entry: {e}"
            );
        }
    }

    /// Path of the disk-cache entry for wasm with this sha256 (hex), if a cache is configured.
    /// For tests and operators inspecting the cache.
    pub fn cache_entry_path(&self, wasm_digest: &str) -> Option<std::path::PathBuf> {
        self.inner.cache.as_ref().map(|c| c.entry_path(wasm_digest))
    }
}

impl Program {
    /// What kind of workload this is.
    pub fn kind(&self) -> ProgramKind {
        self.inner.kind
    }

    /// sha256 of the wasm bytes, hex.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// Where the compiled code came from when this program was first loaded.
    pub fn source(&self) -> ArtifactSource {
        self.inner.source
    }

    /// Whether `other` is the same loaded program (same compiled code, same linking): true for
    /// any two loads of identical wasm while one of them is alive.
    pub fn shares_code_with(&self, other: &Program) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The engine that loaded this program.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn wrong_kind(
        &self,
        operation: &'static str,
        expected: &'static str,
    ) -> EngineError {
        EngineError::WrongKind {
            digest: self.inner.digest.clone(),
            kind: self.inner.kind,
            operation,
            expected,
        }
    }
}

/// First 12 hex digits of a digest, for logs.
pub(crate) fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
