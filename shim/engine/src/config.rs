//! Engine settings, in one place: every wasmtime knob the product depends on is set here.

use crate::EngineError;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the process-wide [`crate::Engine`]. `Default` gives production values.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory of the compiled-artifact cache. Created if missing. `None` disables the disk
    /// cache (the in-memory map still shares artifacts within the process).
    pub cache_dir: Option<PathBuf>,
    /// Instances (core modules and components) the pooling allocator can hold at once, across
    /// every workload of the process. Each slot reserves address space, not memory.
    pub max_instances: u32,
    /// Largest linear memory any instance may grow to (the pool's slot size). Per-workload
    /// limits ([`crate::Limits::max_memory_bytes`]) can only be lower.
    pub max_memory_per_instance: u64,
    /// Epoch tick period: the granularity of deadlines and of how often a busy guest yields to
    /// the async executor (so one spinning guest cannot starve others or ignore a kill).
    pub epoch_tick: Duration,
    /// Guest (wasm) stack size limit in bytes; deep recursion traps instead of crashing.
    pub max_wasm_stack: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: Some(PathBuf::from("/var/lib/featherweight/cache")),
            max_instances: 1000,
            max_memory_per_instance: 256 << 20,
            epoch_tick: Duration::from_millis(10),
            max_wasm_stack: 1 << 20,
        }
    }
}

impl EngineConfig {
    /// The wasmtime configuration these settings stand for.
    pub(crate) fn to_wasmtime(&self) -> Result<wasmtime::Config, EngineError> {
        if self.max_instances == 0 {
            return Err(EngineError::Config(
                "max_instances must be at least 1".into(),
            ));
        }
        if self.epoch_tick.is_zero() {
            return Err(EngineError::Config(
                "epoch_tick must be greater than zero".into(),
            ));
        }
        let max_memory = usize::try_from(self.max_memory_per_instance).map_err(|_| {
            EngineError::Config(format!(
                "max_memory_per_instance {} does not fit this host's address space",
                self.max_memory_per_instance
            ))
        })?;
        // Async fibers run the guest; their stack must hold the wasm stack plus host frames.
        let async_stack = self.max_wasm_stack + (1 << 20);

        let mut pool = wasmtime::PoolingAllocationConfig::new();
        let instances = self.max_instances;
        // A component instance holds a few core instances (the guest, the WASI adapter, shims);
        // allow for 4 per component, and one memory + table per core instance plus the
        // adapter's own.
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(4))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            .max_memory_size(max_memory)
            .max_memories_per_module(2)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_core_instances_per_component(32)
            // Keep a few warm slots: reusing a slot whose CoW image matches skips the mmap work.
            .max_unused_warm_slots(instances.min(100))
            // Reset the low 128 KiB of a memory by hand (memset/copy from the image) and
            // madvise only what lies above: a small guest (the C hello: 2 pages) then costs no
            // syscall and no page faults per instance. Measured with `make bench-engine`: 64 KiB
            // cost one madvise per request; PAGEMAP_SCAN (Linux 6.7+) costs one ioctl per
            // request and was slower than copying 128 KiB. At most 100 warm slots x 128 KiB
            // stay resident while idle.
            .linear_memory_keep_resident(128 << 10)
            .table_keep_resident(16 << 10);

        let mut config = wasmtime::Config::new();
        config
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .epoch_interruption(true)
            .max_wasm_stack(self.max_wasm_stack)
            .async_stack_size(async_stack)
            .parallel_compilation(true)
            .wasm_component_model(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        Ok(config)
    }
}
