//! Per-workload counters for containerd's `Stats` call, and the memory limiter that feeds them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Live counters of one workload. Create one per container, hand a clone to the engine in
/// [`crate::RunOptions::stats`], keep the other and call [`Stats::snapshot`] whenever asked.
#[derive(Clone, Default, Debug)]
pub struct Stats {
    counters: Arc<Counters>,
}

#[derive(Default, Debug)]
struct Counters {
    memory_bytes: AtomicU64,
    instances_live: AtomicU64,
    instances_total: AtomicU64,
    requests_total: AtomicU64,
    requests_failed: AtomicU64,
    requests_rejected: AtomicU64,
    guest_cpu_nanos: AtomicU64,
    guest_wall_nanos: AtomicU64,
}

/// A point-in-time copy of a workload's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadStats {
    /// Bytes of linear memory held by the workload's live instances right now.
    pub memory_bytes: u64,
    /// Instances alive right now (a command: 0 or 1; an HTTP server: requests in flight).
    pub instances_live: u64,
    /// Instances created since the workload started.
    pub instances_total: u64,
    /// HTTP requests received (served, failed or rejected).
    pub requests_total: u64,
    /// HTTP requests that ended in a guest trap, deadline or instantiation error (5xx from us).
    pub requests_failed: u64,
    /// HTTP requests refused with 503 because the concurrency cap and queue were full.
    pub requests_rejected: u64,
    /// Time threads spent executing the guest (wasm plus the host calls it made synchronously):
    /// the sum of the durations of every poll of the guest's future. An upper bound of guest
    /// CPU time; excludes time the guest spent waiting (sleeps, I/O, queueing).
    pub guest_cpu: Duration,
    /// Wall-clock time instances existed, summed over instances.
    pub guest_wall: Duration,
}

impl Stats {
    /// A fresh set of counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Copy the counters now.
    pub fn snapshot(&self) -> WorkloadStats {
        let c = &self.counters;
        WorkloadStats {
            memory_bytes: c.memory_bytes.load(Ordering::Relaxed),
            instances_live: c.instances_live.load(Ordering::Relaxed),
            instances_total: c.instances_total.load(Ordering::Relaxed),
            requests_total: c.requests_total.load(Ordering::Relaxed),
            requests_failed: c.requests_failed.load(Ordering::Relaxed),
            requests_rejected: c.requests_rejected.load(Ordering::Relaxed),
            guest_cpu: Duration::from_nanos(c.guest_cpu_nanos.load(Ordering::Relaxed)),
            guest_wall: Duration::from_nanos(c.guest_wall_nanos.load(Ordering::Relaxed)),
        }
    }

    pub(crate) fn request_received(&self) {
        self.counters.requests_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_failed(&self) {
        self.counters
            .requests_failed
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_rejected(&self) {
        self.counters
            .requests_rejected
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_guest_cpu(&self, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.counters
            .guest_cpu_nanos
            .fetch_add(nanos, Ordering::Relaxed);
    }

    /// Count one instance as live until the returned guard (kept in the store) is dropped.
    pub(crate) fn instance_started(&self) -> InstanceGuard {
        self.counters.instances_live.fetch_add(1, Ordering::Relaxed);
        self.counters
            .instances_total
            .fetch_add(1, Ordering::Relaxed);
        InstanceGuard {
            stats: self.clone(),
            started: std::time::Instant::now(),
        }
    }
}

/// Marks one live instance; on drop, the instance is counted as gone and its lifetime added to
/// the wall-time total.
#[derive(Debug)]
pub(crate) struct InstanceGuard {
    stats: Stats,
    started: std::time::Instant,
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        let c = &self.stats.counters;
        c.instances_live.fetch_sub(1, Ordering::Relaxed);
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        c.guest_wall_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The `ResourceLimiter` of one store: enforces the per-instance memory limit and keeps the
/// workload's memory gauge in step with the store's linear memories.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    stats: Stats,
    /// Limit on the sum of this store's linear memories, in bytes.
    limit: Option<u64>,
    /// Bytes this store currently adds to the workload's gauge.
    held: u64,
    /// Growth granted but not yet known to have succeeded (undone by `memory_grow_failed`).
    pending: u64,
    /// Set when a growth was refused because of the limit, so a later trap can be reported as
    /// an out-of-memory condition.
    pub(crate) limit_hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(stats: Stats, limit: Option<u64>) -> Self {
        MemoryLimiter {
            stats,
            limit,
            held: 0,
            pending: 0,
            limit_hit: false,
        }
    }

    /// The memory limit of this store, in bytes.
    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = (desired as u64).saturating_sub(current as u64);
        if let Some(limit) = self.limit
            && self.held.saturating_add(growth) > limit
        {
            self.limit_hit = true;
            tracing::debug!(
                held = self.held,
                growth,
                limit,
                "memory growth refused: per-instance limit"
            );
            return Ok(false);
        }
        self.held += growth;
        self.pending = growth;
        self.stats
            .counters
            .memory_bytes
            .fetch_add(growth, Ordering::Relaxed);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        tracing::debug!("memory growth failed: {error:#}");
        let undo = std::mem::take(&mut self.pending);
        self.held -= undo;
        self.stats
            .counters
            .memory_bytes
            .fetch_sub(undo, Ordering::Relaxed);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pool's slot size; one million entries is far beyond any
        // real guest and keeps a table bomb from eating host memory.
        Ok(desired <= 1_000_000)
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.stats
            .counters
            .memory_bytes
            .fetch_sub(self.held, Ordering::Relaxed);
    }
}

/// Wrap a guest future so the time spent inside its `poll` calls is added to the workload's
/// guest CPU counter (the guest runs on the polling thread, host calls included).
pub(crate) fn timed<F: Future>(stats: &Stats, inner: F) -> Timed<F> {
    Timed {
        inner: Box::pin(inner),
        stats: stats.clone(),
    }
}

pub(crate) struct Timed<F> {
    inner: std::pin::Pin<Box<F>>,
    stats: Stats,
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let start = std::time::Instant::now();
        let result = self.inner.as_mut().poll(cx);
        self.stats.add_guest_cpu(start.elapsed());
        result
    }
}
