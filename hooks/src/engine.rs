//! The wasmtime host: one shared `Engine` (pooling allocator, epoch interruption), functions compiled
//! once per load with their ABI detected from their exports, stores under per-call time and memory
//! limits, and warm instances. `Function::invoke` (invoke.rs) is the entry point.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Engine, Instance, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap, TypedFunc, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::WasiCtxBuilder;

use crate::abi::inline;
use crate::error::HookError;
use crate::hook_log::HookLog;
use crate::host_calls::{self, FastHost, FastState};
use crate::ticker::{self, InFlight};
/// The deepest stack a guest may use.
pub(crate) const MAX_WASM_STACK: usize = 1 << 20;
/// Instance slots of the pooling allocator: hooks running at once plus warm instances kept.
const POOL_SLOTS: u32 = 256;
/// The pool's slots: `VERGE_HOOK_INSTANCE_SLOTS` when set (a positive number), else `POOL_SLOTS`.
/// Each slot reserves its memory's whole address range up front (256 slots: over a terabyte of
/// address space, untouched): a process under an address-space limit (`ulimit -v`, valgrind in
/// `benches/instructions.sh`) needs fewer.
fn pool_slots() -> u32 {
    std::env::var("VERGE_HOOK_INSTANCE_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(POOL_SLOTS)
}

/// Warm instances kept per function (and as many more for its inline calls).
pub(crate) const WARM_PER_FUNCTION: usize = 16;
/// A warm instance is recycled after this many calls, or once its memory grew past this size.
const MAX_WARM_CALLS: u32 = 10_000;
const MAX_WARM_MEMORY: usize = 64 << 20;
/// Bytes of a hook's stderr kept per invocation for the log.
const STDERR_CAP: usize = 4096;
/// Largest result a hook may write (generated responses are limited further by trigger).
pub(crate) const OUTPUT_CAP: usize = 2 << 20;
/// The largest linear memory a function may be given: the pooling allocator's slot size. Larger
/// `memory_mb` settings are refused (validation names the setting, load names the function), never
/// silently capped.
pub const MAX_MEMORY_BYTES: usize = (verge_config::model::FunctionSettings::MAX_MEMORY_MB as usize) << 20;

/// The engine shared by every function of the process.
#[derive(Clone)]
pub struct HookEngine {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    /// Synchronous host functions only, for inline calls (inline.rs).
    inline_linker: Arc<Linker<HostState>>,
    in_flight: InFlight,
}

pub(crate) struct HostState {
    /// When the current call must end (checked by the epoch callback, set per call).
    pub(crate) deadline: Instant,
    /// An inline call's budget (inline.rs): past it, the call is interrupted and run again on a fiber.
    pub(crate) inline_until: Option<Instant>,
    /// Set when the epoch callback interrupted an inline call for its budget, not its timeout.
    pub(crate) overran: bool,
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) fast: FastState,
    limiter: MemoryLimiter,
    pub(crate) stderr: HookLog,
}

impl FastHost for HostState {
    fn fast(&mut self) -> &mut FastState {
        &mut self.fast
    }
}

struct MemoryLimiter {
    max_bytes: usize,
    exceeded: bool,
    /// The largest size a memory of the instance was allowed to reach: what `put_back` checks, without
    /// asking wasmtime for the memory's size on every call (a cache miss, ~0.25% of a hooked hit's time).
    largest: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} MB exceeded", self.max_bytes >> 20);
        }
        self.largest = self.largest.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl HookEngine {
    /// Builds the engine; compiled code is cached on disk under `cache_dir` (keyed by content hash).
    pub fn new(cache_dir: Option<&Path>) -> Result<Self, String> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(MAX_WASM_STACK);
        let slots = pool_slots();
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .total_stacks(slots)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .table_elements(100_000)
            .max_core_instance_size(1 << 20)
            .max_memory_size(MAX_MEMORY_BYTES)
            // memset dirty pages instead of madvise: without it two threads scale worse than one.
            .linear_memory_keep_resident(16 << 20)
            .table_keep_resident(64 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = cache_dir {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(wasmtime::Cache::new(cache).map_err(|e| format!("compiled-code cache: {e}"))?));
        }
        let engine = Engine::new(&config).map_err(|e| format!("wasm engine: {e}"))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut HostState| &mut s.wasi)
            .map_err(|e| format!("wasi: {e}"))?;
        deny_sleep(&mut linker)?;
        host_calls::add_to_linker(&mut linker).map_err(|e| format!("verge host functions: {e}"))?;
        let inline_linker = Arc::new(inline::linker(&engine)?);
        let in_flight = InFlight::default();
        ticker::start(engine.weak(), in_flight.clone()).map_err(|e| format!("epoch ticker: {e}"))?;
        Ok(Self { engine, linker: Arc::new(linker), inline_linker, in_flight })
    }

    /// Compiles and checks a module (binary or text). `max_bytes` is the package limit of its strictest
    /// trigger.
    pub fn load(&self, arn: &str, bytes: &[u8], max_bytes: u64, settings: Limits) -> Result<Function, String> {
        if bytes.len() as u64 > max_bytes {
            return Err(format!("{arn}: module is {} bytes, over the {max_bytes}-byte package limit", bytes.len()));
        }
        let module = Module::new(&self.engine, bytes).map_err(|e| format!("{arn}: not a valid module: {e:#}"))?;
        for import in module.imports() {
            if import.module() != "wasi_snapshot_preview1" && import.module() != verge_abi::fast::MODULE {
                return Err(format!(
                    "{arn}: imports {}::{}; hooks may import only wasi_snapshot_preview1 and verge",
                    import.module(),
                    import.name()
                ));
            }
        }
        let abi = Abi::of(&module).ok_or_else(|| {
            format!("{arn}: exports neither the SDK ABI (verge_alloc, verge_handle, verge_free, memory) nor _start")
        })?;
        if settings.memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "{arn}: memory_mb {} is over the {} MB a function can be given",
                settings.memory_bytes >> 20,
                MAX_MEMORY_BYTES >> 20
            ));
        }
        let pre = self.linker.instantiate_pre(&module).map_err(|e| format!("{arn}: {e:#}"))?;
        // A fast-ABI module that never imports a read call never sees the request or response: the
        // proxy can skip copying them (a header-setting hook then costs only its writes).
        let imports = |name: &str| module.imports().any(|i| i.module() == verge_abi::fast::MODULE && i.name() == name);
        let reads = Reads {
            headers: abi != Abi::Fast || imports("header_get") || imports("header_names"),
            fields: abi != Abi::Fast || imports("get"),
            uri: abi != Abi::Fast || imports("get") || imports("set"),
        };
        let inline =
            inline::Inline::for_module(&module, abi, &self.inline_linker).map_err(|e| format!("{arn}: {e:#}"))?;
        Ok(Function {
            arn: arn.to_string(),
            engine: self.engine.clone(),
            in_flight: self.in_flight.clone(),
            pre,
            inline,
            abi,
            reads,
            limits: settings,
            stats: Default::default(),
            warm: Mutex::new(Vec::new()),
            blocks: Default::default(),
        })
    }
}

/// Replaces WASI's `poll_oneoff` with a trap: a blocking host call ignores epoch deadlines, so a sleeping
/// hook could hold a worker.
pub(crate) fn deny_sleep(linker: &mut Linker<HostState>) -> Result<(), String> {
    linker.allow_shadowing(true);
    linker
        .func_wrap("wasi_snapshot_preview1", "poll_oneoff", |_: i32, _: i32, _: i32, _: i32| -> wasmtime::Result<i32> {
            wasmtime::bail!("poll_oneoff (sleep) is not available to hooks")
        })
        .map_err(|e| format!("wasi: {e}"))?;
    Ok(())
}

/// Per-function limits and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub env: Vec<(String, String)>,
    /// A fresh instance for every call instead of warm reuse.
    pub per_request: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    /// Host calls, no JSON (`verge_fast_handle`), warm instances.
    Fast,
    /// JSON through guest memory (`verge_alloc`/`verge_handle`/`verge_free`), warm instances.
    Sdk,
    /// WASI command: JSON on stdin/stdout, a fresh instance per call.
    Command,
}

impl Abi {
    /// The ABI a module's exports implement.
    pub(crate) fn of(module: &Module) -> Option<Abi> {
        let has = |name: &str| module.get_export(name).is_some();
        if has(verge_abi::fast::ENTRY) && has("memory") {
            Some(Abi::Fast)
        } else if [verge_abi::json::ALLOC, verge_abi::json::HANDLE, verge_abi::json::FREE, "memory"]
            .into_iter()
            .all(has)
        {
            Some(Abi::Sdk)
        } else if has(verge_abi::command::ENTRY) {
            Some(Abi::Command)
        } else {
            None
        }
    }

    /// Whether instances are kept warm between calls.
    pub(crate) fn is_warm(self) -> bool {
        self != Abi::Command
    }
}

/// Warm instances, each boxed: taken and put back on every call, it moves as a pointer (a `Warm` is
/// ~100 bytes, copied out of and into the vector each time).
#[allow(clippy::vec_box)]
pub(crate) type WarmPool = Mutex<Vec<Box<Warm>>>;

pub(crate) struct Warm {
    pub(crate) store: Store<HostState>,
    pub(crate) memory: Memory,
    pub(crate) entry: Entry,
    calls: u32,
    /// Made by the inline linker: goes back to the inline pool.
    inline: bool,
}

pub(crate) enum Entry {
    Json { alloc: TypedFunc<u32, u32>, handle: TypedFunc<(u32, u32), u64>, free: TypedFunc<(u32, u32), ()> },
    Fast { handle: TypedFunc<u32, i32> },
}

/// What a fast-ABI function can read (from its imports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    /// `verge.header_get` / `verge.header_names`: the request and response headers.
    pub headers: bool,
    /// `verge.get`: uri, query string, method, client IP, config, status.
    pub fields: bool,
    /// `verge.get` or `verge.set`: the uri and query string (changes are made relative to them).
    pub uri: bool,
}

/// One loaded function version.
pub struct Function {
    pub arn: String,
    engine: Engine,
    pub(crate) in_flight: InFlight,
    pub(crate) pre: InstancePre<HostState>,
    /// Set when the function can run inline, without a fiber (inline.rs).
    pub(crate) inline: Option<inline::Inline>,
    pub abi: Abi,
    pub reads: Reads,
    pub limits: Limits,
    /// Invocations by trigger, recorded by the caller (which knows the trigger and the outcome).
    pub stats: crate::stats::FunctionStats,
    warm: WarmPool,
    /// The header blocks its instances have set, shared so that every instance hands out the same
    /// block (and block id) for the same bytes (intern.rs).
    blocks: crate::intern::SharedBlocks,
}

impl Function {
    /// A store's state: the function's environment, an empty call, the memory limiter and the deadline
    /// armed from now.
    pub(crate) fn host_state(&self, stdin: Option<Vec<u8>>, stdout: Option<MemoryOutputPipe>) -> HostState {
        let stderr = HookLog::new(STDERR_CAP);
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.limits.env).stderr(stderr.clone());
        if let Some(input) = stdin {
            wasi.stdin(MemoryInputPipe::new(input));
        }
        if let Some(out) = stdout {
            wasi.stdout(out);
        }
        HostState {
            deadline: Instant::now() + self.limits.timeout,
            inline_until: None,
            overran: false,
            wasi: wasi.build_p1(),
            fast: FastState {
                memory: None,
                call: Box::default(),
                interned: crate::intern::Interned::with_shared_blocks(self.blocks.clone()),
            },
            limiter: MemoryLimiter { max_bytes: self.limits.memory_bytes, exceeded: false, largest: 0 },
            stderr,
        }
    }

    /// A store for calls on a fiber, with the deadline armed from now.
    pub(crate) fn new_store(&self, stdin: Option<Vec<u8>>, stdout: Option<MemoryOutputPipe>) -> Store<HostState> {
        let mut store = self.bare_store(self.host_state(stdin, stdout));
        // Set once per store: every epoch tick during a call yields to tokio, so a spinning hook cannot
        // stall the worker, and interrupts once the call's deadline has passed.
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
            }
        });
        store.set_epoch_deadline(1);
        store
    }

    /// A store on the shared engine with the function's memory limiter (the caller sets the epoch
    /// callback).
    pub(crate) fn bare_store(&self, state: HostState) -> Store<HostState> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
    }

    /// Arms the per-call deadline (the callback set in `new_store` enforces it).
    pub(crate) fn arm_deadline_from(store: &mut Store<HostState>, now: Instant, timeout: Duration) {
        store.data_mut().deadline = now + timeout;
        store.set_epoch_deadline(1);
    }

    /// A failure of the guest as one of CloudFront's classes.
    pub(crate) fn classify(&self, error: wasmtime::Error, store: &Store<HostState>) -> HookError {
        let limiter = &store.data().limiter;
        if limiter.exceeded {
            return HookError::limit(format!("memory limit of {} MB exceeded", limiter.max_bytes >> 20));
        }
        if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
            return HookError::limit(format!("timed out after {} ms", self.limits.timeout.as_millis()));
        }
        if error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
            return HookError::limit(format!("no free instance slot (throttled): {error:#}"));
        }
        HookError::execution(match error.downcast_ref::<Trap>() {
            Some(trap) => format!("trap: {trap}"),
            None => format!("{error:#}"),
        })
    }

    /// Logs what the call wrote to stderr, tagged with the ARN and request.
    #[inline]
    pub(crate) fn log_stderr(&self, state: &mut HostState, request_id: &[u8]) {
        if let Some(written) = state.stderr.drain() {
            self.log_stderr_lines(written, request_id);
        }
    }

    #[cold]
    #[inline(never)]
    fn log_stderr_lines(&self, (kept, dropped): (Vec<u8>, usize), request_id: &[u8]) {
        let text = String::from_utf8_lossy(&kept);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "verge::hook_log", arn = %self.arn, request_id = %crate::invoke::IdText(request_id), "{line}");
        }
        if dropped > 0 {
            tracing::info!(target: "verge::hook_log", arn = %self.arn, request_id = %crate::invoke::IdText(request_id),
                "({dropped} more bytes of stderr dropped)");
        }
    }

    async fn new_warm(&self) -> Result<Box<Warm>, HookError> {
        let mut store = self.new_store(None, None);
        let instance = match self.pre.instantiate_async(&mut store).await {
            Ok(i) => i,
            Err(e) => return Err(self.classify(e, &store)),
        };
        self.warm_from(store, instance, false)
    }

    /// A new instance's store with its entry points found (`inline`: made for inline calls).
    pub(crate) fn warm_from(
        &self,
        mut store: Store<HostState>,
        instance: Instance,
        inline: bool,
    ) -> Result<Box<Warm>, HookError> {
        let missing = |what: &str| HookError::execution(format!("export {what} has the wrong type"));
        let memory = instance.get_memory(&mut store, "memory").ok_or_else(|| missing("memory"))?;
        store.data_mut().fast.memory = Some(memory);
        let entry = if self.abi == Abi::Fast {
            let handle = instance
                .get_typed_func(&mut store, verge_abi::fast::ENTRY)
                .map_err(|_| missing(verge_abi::fast::ENTRY))?;
            Entry::Fast { handle }
        } else {
            use verge_abi::json::{ALLOC, FREE, HANDLE};
            let alloc = instance.get_typed_func(&mut store, ALLOC).map_err(|_| missing(ALLOC))?;
            let handle = instance.get_typed_func(&mut store, HANDLE).map_err(|_| missing(HANDLE))?;
            let free = instance.get_typed_func(&mut store, FREE).map_err(|_| missing(FREE))?;
            Entry::Json { alloc, handle, free }
        };
        // Boxed: taken from and put back into a pool on every call, it moves as a pointer.
        Ok(Box::new(Warm { store, memory, entry, calls: 0, inline }))
    }

    /// A warm instance (or a new one) with its deadline armed from `now`.
    pub(crate) async fn take_warm_at(&self, now: Instant) -> Result<Box<Warm>, HookError> {
        debug_assert!(self.abi.is_warm());
        let reused =
            if self.limits.per_request { None } else { self.warm.lock().unwrap_or_else(|e| e.into_inner()).pop() };
        let mut warm = match reused {
            Some(w) => w,
            // Boxed: instantiation's future is large, and inline it would make every call's future
            // (and every proxy callback that awaits one) that large, warm or not.
            None => Box::pin(self.new_warm()).await?,
        };
        Self::arm_deadline_from(&mut warm.store, now, self.limits.timeout);
        Ok(warm)
    }

    /// Returns a healthy instance to the pool; others are dropped. (Dropping on a background thread was
    /// measured: with two cores the reset thread competes with the workers and p99 got worse.)
    pub(crate) fn put_back(&self, mut warm: Box<Warm>) {
        warm.calls += 1;
        let healthy = warm.calls < MAX_WARM_CALLS && warm.store.data().limiter.largest <= MAX_WARM_MEMORY;
        if healthy && !self.limits.per_request {
            let pool = match (&self.inline, warm.inline) {
                (Some(inline), true) if inline.in_use() => match inline.keep_for_this_thread(warm) {
                    None => return,
                    Some(displaced) => {
                        warm = displaced;
                        &inline.warm
                    }
                },
                // A function moved to fibers keeps no inline instances (each holds a pool slot).
                (_, true) => return,
                _ => &self.warm,
            };
            let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < WARM_PER_FUNCTION {
                pool.push(warm);
            }
        }
    }
}
