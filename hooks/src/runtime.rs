//! The wasmtime host: one shared `Engine` (pooling allocator, epoch interruption), functions compiled
//! once per load, and invocations under per-call time and memory limits (WASM.md §3-§6).
//!
//! Two ABIs, detected from the exports: verge's SDK ABI (`verge_alloc`/`verge_handle`/`verge_free`, warm
//! instances reused like Lambda execution environments) and the WASI command ABI (`_start`, event on
//! stdin, result on stdout, a fresh instance per call).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap, TypedFunc, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::error::HookError;
use crate::fast::{self, FastCall, FastHost, FastState};
use crate::hook_log::HookLog;
use crate::ticker::{self, InFlight};
/// Instance slots of the pooling allocator: hooks running at once plus warm instances kept.
const POOL_SLOTS: u32 = 256;
/// Warm instances kept per function.
const WARM_PER_FUNCTION: usize = 16;
/// A warm instance is recycled after this many calls, or once its memory grew past this size.
const MAX_WARM_CALLS: u32 = 10_000;
const MAX_WARM_MEMORY: usize = 64 << 20;
/// Bytes of a hook's stderr kept per invocation for the log.
const STDERR_CAP: usize = 4096;
/// Largest result a hook may write (generated responses are limited further by trigger).
const OUTPUT_CAP: usize = 2 << 20;

/// The engine shared by every function of the process.
#[derive(Clone)]
pub struct HookEngine {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    in_flight: InFlight,
}

struct HostState {
    /// When the current call must end (checked by the epoch callback, set per call).
    deadline: Instant,
    wasi: WasiP1Ctx,
    fast: FastState,
    limiter: MemoryLimiter,
    stderr: HookLog,
}

impl FastHost for HostState {
    fn fast(&mut self) -> &mut FastState {
        &mut self.fast
    }
}

struct MemoryLimiter {
    max_bytes: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} MB exceeded", self.max_bytes >> 20);
        }
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
        config.max_wasm_stack(1 << 20);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(POOL_SLOTS)
            .total_memories(POOL_SLOTS)
            .total_tables(POOL_SLOTS)
            .total_stacks(POOL_SLOTS)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .table_elements(100_000)
            .max_core_instance_size(1 << 20)
            .max_memory_size(4 << 30)
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
        // Blocking host calls ignore epoch deadlines, so a sleeping hook could hold a worker: deny them.
        linker.allow_shadowing(true);
        linker
            .func_wrap(
                "wasi_snapshot_preview1",
                "poll_oneoff",
                |_: i32, _: i32, _: i32, _: i32| -> wasmtime::Result<i32> {
                    wasmtime::bail!("poll_oneoff (sleep) is not available to hooks")
                },
            )
            .map_err(|e| format!("wasi: {e}"))?;
        fast::add_to_linker(&mut linker).map_err(|e| format!("verge host functions: {e}"))?;
        let in_flight = InFlight::default();
        ticker::start(engine.weak(), in_flight.clone()).map_err(|e| format!("epoch ticker: {e}"))?;
        Ok(Self { engine, linker: Arc::new(linker), in_flight })
    }

    /// Compiles and checks a module (binary or text). `max_bytes` is the package limit of its strictest
    /// trigger.
    pub fn load(&self, arn: &str, bytes: &[u8], max_bytes: u64, settings: Limits) -> Result<Function, String> {
        if bytes.len() as u64 > max_bytes {
            return Err(format!("{arn}: module is {} bytes, over the {max_bytes}-byte package limit", bytes.len()));
        }
        let module = Module::new(&self.engine, bytes).map_err(|e| format!("{arn}: not a valid module: {e:#}"))?;
        for import in module.imports() {
            if import.module() != "wasi_snapshot_preview1" && import.module() != "verge" {
                return Err(format!(
                    "{arn}: imports {}::{}; hooks may import only wasi_snapshot_preview1 and verge",
                    import.module(),
                    import.name()
                ));
            }
        }
        let has = |name: &str| module.get_export(name).is_some();
        let abi = if has("verge_fast_handle") && has("memory") {
            Abi::Fast
        } else if has("verge_handle") && has("verge_alloc") && has("verge_free") && has("memory") {
            Abi::Sdk
        } else if has("_start") {
            Abi::Command
        } else {
            return Err(format!(
                "{arn}: exports neither the SDK ABI (verge_alloc, verge_handle, verge_free, memory) nor _start"
            ));
        };
        let pre = self.linker.instantiate_pre(&module).map_err(|e| format!("{arn}: {e:#}"))?;
        // A fast-ABI module that never imports a read call never sees the request or response: the
        // proxy can skip copying them (a header-setting hook then costs only its writes).
        let imports = |name: &str| module.imports().any(|i| i.module() == "verge" && i.name() == name);
        let reads = Reads {
            headers: abi != Abi::Fast || imports("header_get") || imports("header_names"),
            fields: abi != Abi::Fast || imports("get"),
            uri: abi != Abi::Fast || imports("get") || imports("set"),
        };
        Ok(Function {
            arn: arn.to_string(),
            engine: self.engine.clone(),
            in_flight: self.in_flight.clone(),
            pre,
            abi,
            reads,
            limits: settings,
            stats: Default::default(),
            warm: Mutex::new(Vec::new()),
        })
    }
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

struct Warm {
    store: Store<HostState>,
    memory: Memory,
    entry: Entry,
    calls: u32,
}

enum Entry {
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
    in_flight: InFlight,
    pre: InstancePre<HostState>,
    pub abi: Abi,
    pub reads: Reads,
    pub limits: Limits,
    /// Invocations by trigger, recorded by the caller (which knows the trigger and the outcome).
    pub stats: crate::stats::FunctionStats,
    warm: Mutex<Vec<Warm>>,
}

fn classify(arn: &str, error: wasmtime::Error, limiter: &MemoryLimiter, timeout: Duration) -> HookError {
    if limiter.exceeded {
        return HookError::limit(format!("memory limit of {} MB exceeded", limiter.max_bytes >> 20));
    }
    if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
        return HookError::limit(format!("timed out after {} ms", timeout.as_millis()));
    }
    let text = format!("{error:#}");
    if text.contains("concurrent") && text.contains("limit") {
        return HookError::limit(format!("no free instance slot (throttled): {text}"));
    }
    let _ = arn;
    HookError::execution(match error.downcast_ref::<Trap>() {
        Some(trap) => format!("trap: {trap}"),
        None => text,
    })
}

impl Function {
    fn new_store(&self, stdin: Option<Vec<u8>>, stdout: Option<MemoryOutputPipe>) -> Store<HostState> {
        let stderr = HookLog::new(STDERR_CAP);
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.limits.env).stderr(stderr.clone());
        if let Some(input) = stdin {
            wasi.stdin(MemoryInputPipe::new(input));
        }
        if let Some(out) = stdout {
            wasi.stdout(out);
        }
        let state = HostState {
            deadline: Instant::now() + self.limits.timeout,
            wasi: wasi.build_p1(),
            fast: FastState { memory: None, call: Box::default(), interned: Default::default() },
            limiter: MemoryLimiter { max_bytes: self.limits.memory_bytes, exceeded: false },
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Set once per store: every epoch tick during a call yields to tokio, so a spinning hook cannot
        // stall the worker, and interrupts once the call's deadline has passed.
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
            }
        });
        store
    }

    /// Arms the per-call deadline (the callback set in `new_store` enforces it).
    fn arm_deadline(store: &mut Store<HostState>, timeout: Duration) {
        Self::arm_deadline_from(store, Instant::now(), timeout);
    }

    fn arm_deadline_from(store: &mut Store<HostState>, now: Instant, timeout: Duration) {
        store.data_mut().deadline = now + timeout;
        store.set_epoch_deadline(1);
    }

    /// Logs what the call wrote to stderr, tagged with the ARN and request.
    fn log_stderr(&self, state: &mut HostState, request_id: &str) {
        let Some((kept, dropped)) = state.stderr.drain() else { return };
        let text = String::from_utf8_lossy(&kept);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "verge::hook_log", arn = %self.arn, request_id, "{line}");
        }
        if dropped > 0 {
            tracing::info!(target: "verge::hook_log", arn = %self.arn, request_id, "({dropped} more bytes of stderr dropped)");
        }
    }

    /// Runs the function on `event` (JSON) and returns its raw result.
    pub async fn invoke(&self, event: &[u8], request_id: &str) -> Result<Vec<u8>, HookError> {
        // The epoch deadline is the real limit; this outer timeout is a backstop for host calls.
        let backstop = self.limits.timeout + Duration::from_millis(500);
        match tokio::time::timeout(backstop, self.invoke_inner(event, request_id)).await {
            Ok(result) => result,
            Err(_) => Err(HookError::limit(format!("timed out after {} ms", self.limits.timeout.as_millis()))),
        }
    }

    async fn invoke_inner(&self, event: &[u8], request_id: &str) -> Result<Vec<u8>, HookError> {
        let _running = self.in_flight.enter();
        match self.abi {
            Abi::Sdk => self.invoke_sdk(event, request_id).await,
            Abi::Command => self.invoke_command(event, request_id).await,
            Abi::Fast => Err(HookError::execution("a fast-ABI function is invoked with invoke_fast")),
        }
    }

    async fn new_warm(&self) -> Result<Warm, HookError> {
        let mut store = self.new_store(None, None);
        Self::arm_deadline(&mut store, self.limits.timeout);
        let instance = match self.pre.instantiate_async(&mut store).await {
            Ok(i) => i,
            Err(e) => return Err(classify(&self.arn, e, &store.data().limiter, self.limits.timeout)),
        };
        let missing = |what: &str| HookError::execution(format!("export {what} has the wrong type"));
        let memory = instance.get_memory(&mut store, "memory").ok_or_else(|| missing("memory"))?;
        store.data_mut().fast.memory = Some(memory);
        let entry = if self.abi == Abi::Fast {
            let handle =
                instance.get_typed_func(&mut store, "verge_fast_handle").map_err(|_| missing("verge_fast_handle"))?;
            Entry::Fast { handle }
        } else {
            let alloc = instance.get_typed_func(&mut store, "verge_alloc").map_err(|_| missing("verge_alloc"))?;
            let handle = instance.get_typed_func(&mut store, "verge_handle").map_err(|_| missing("verge_handle"))?;
            let free = instance.get_typed_func(&mut store, "verge_free").map_err(|_| missing("verge_free"))?;
            Entry::Json { alloc, handle, free }
        };
        Ok(Warm { store, memory, entry, calls: 0 })
    }

    async fn take_warm(&self) -> Result<Warm, HookError> {
        self.take_warm_at(Instant::now()).await
    }

    async fn take_warm_at(&self, now: Instant) -> Result<Warm, HookError> {
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
    fn put_back(&self, mut warm: Warm) {
        warm.calls += 1;
        let healthy = warm.calls < MAX_WARM_CALLS && warm.memory.data_size(&warm.store) <= MAX_WARM_MEMORY;
        if healthy && !self.limits.per_request {
            let mut pool = self.warm.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < WARM_PER_FUNCTION {
                pool.push(warm);
            }
        }
    }

    async fn invoke_sdk(&self, event: &[u8], request_id: &str) -> Result<Vec<u8>, HookError> {
        let mut warm = self.take_warm().await?;
        let result = self.call_sdk(&mut warm, event).await;
        self.log_stderr(warm.store.data_mut(), request_id);
        let output = result?;
        self.put_back(warm);
        output
    }

    /// Runs a fast-ABI function on `call` and returns the call with the function's changes.
    /// No outer timer here: `poll_oneoff` is denied and verge's host calls never block, so the epoch
    /// deadline alone bounds the call (and a timer per call costs measurable throughput on hits).
    /// The call is counted in `stats` (its trigger, time and outcome).
    pub async fn invoke_fast(&self, call: Box<FastCall>, request_id: &str) -> Result<Box<FastCall>, HookError> {
        // One clock read serves the deadline and the stats.
        let started = Instant::now();
        let trigger = call.event.map_or(0, |e| e.index());
        let result = self.invoke_fast_from(call, request_id, started).await;
        let micros = started.elapsed().as_micros() as u64;
        self.stats.record(trigger, micros, result.as_ref().err().map(|e| e.kind));
        result
    }

    async fn invoke_fast_from(
        &self,
        mut call: Box<FastCall>,
        request_id: &str,
        started: Instant,
    ) -> Result<Box<FastCall>, HookError> {
        if self.abi != Abi::Fast {
            return Err(HookError::execution("not a fast-ABI function"));
        }
        let event = call.event.map_or(0, |e| e.index() as u32);
        let _running = self.in_flight.enter();
        let mut warm = self.take_warm_at(started).await?;
        // The store keeps an empty call between invocations; swapping moves two pointers.
        std::mem::swap(&mut warm.store.data_mut().fast.call, &mut call);
        let Entry::Fast { handle } = &warm.entry else {
            return Err(HookError::execution("not a fast-ABI instance"));
        };
        // Borrowed, not cloned: a TypedFunc clone clones its registered type (measurable per hit).
        let result = handle.call_async(&mut warm.store, event).await;
        self.log_stderr(warm.store.data_mut(), request_id);
        let code = match result {
            Ok(code) => code,
            Err(e) => return Err(classify(&self.arn, e, &warm.store.data().limiter, self.limits.timeout)),
        };
        std::mem::swap(&mut warm.store.data_mut().fast.call, &mut call);
        self.put_back(warm);
        if let Some(violation) = call.violation {
            return Err(HookError::validation(violation));
        }
        if code != fast::CONTINUE {
            let message = call.error.unwrap_or_else(|| format!("verge_fast_handle returned {code}"));
            return Err(HookError::execution(format!("the function returned an error: {message}")));
        }
        if let (Some(status), Some(event)) = (call.generated_status, call.event) {
            let body_len = call.body.as_ref().map_or(0, Vec::len);
            let header_len: usize = call.response_headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
            let limit = event.limits().max_generated_response_bytes;
            if body_len + header_len > limit {
                return Err(HookError::validation(format!(
                    "the generated response is {} bytes, over the {limit}-byte limit for {}",
                    body_len + header_len,
                    event.as_str()
                )));
            }
            if status == 204 && body_len > 0 && event == verge_config::model::EventType::ViewerRequest {
                return Err(HookError::validation("a 204 response cannot have a body"));
            }
        }
        Ok(call)
    }

    /// One call through the SDK ABI. `Ok(Err(_))` is an error the guest reported itself.
    async fn call_sdk(&self, warm: &mut Warm, event: &[u8]) -> Result<Result<Vec<u8>, HookError>, HookError> {
        let timeout = self.limits.timeout;
        let fail = |warm: &Warm, e: wasmtime::Error| classify(&self.arn, e, &warm.store.data().limiter, timeout);
        let len = u32::try_from(event.len()).map_err(|_| HookError::validation("event too large"))?;
        let Entry::Json { alloc, handle, free } = &warm.entry else {
            return Err(HookError::execution("not a JSON-ABI instance"));
        };
        let ptr = match alloc.call_async(&mut warm.store, len).await {
            Ok(p) => p,
            Err(e) => return Err(fail(warm, e)),
        };
        if let Err(e) = warm.memory.write(&mut warm.store, ptr as usize, event) {
            return Err(HookError::execution(format!("verge_alloc returned an unusable buffer: {e}")));
        }
        let packed = match handle.call_async(&mut warm.store, (ptr, len)).await {
            Ok(p) => p,
            Err(e) => return Err(fail(warm, e)),
        };
        let (out_ptr, raw_len) = ((packed >> 32) as u32, (packed & 0xffff_ffff) as u32);
        let is_error = raw_len & (1 << 31) != 0;
        let out_len = raw_len & !(1 << 31);
        if out_len as usize > OUTPUT_CAP {
            return Err(HookError::validation(format!("the function result is {out_len} bytes, over {OUTPUT_CAP}")));
        }
        let output = warm
            .memory
            .data(&warm.store)
            .get(out_ptr as usize..out_ptr as usize + out_len as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| HookError::execution("the function returned an out-of-bounds result"))?;
        if let Err(e) = free.call_async(&mut warm.store, (out_ptr, raw_len & !(1 << 31))).await {
            return Err(fail(warm, e));
        }
        Ok(if is_error {
            Err(HookError::execution(format!("the function returned an error: {}", String::from_utf8_lossy(&output))))
        } else {
            Ok(output)
        })
    }

    async fn invoke_command(&self, event: &[u8], request_id: &str) -> Result<Vec<u8>, HookError> {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAP);
        let mut store = self.new_store(Some(event.to_vec()), Some(stdout.clone()));
        Self::arm_deadline(&mut store, self.limits.timeout);
        let result = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let start: TypedFunc<(), ()> = instance.get_typed_func(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        }
        .await;
        self.log_stderr(store.data_mut(), request_id);
        let exit = match result {
            Ok(()) => 0,
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(code)) => *code,
                None => return Err(classify(&self.arn, e, &store.data().limiter, self.limits.timeout)),
            },
        };
        if exit != 0 {
            return Err(HookError::execution(format!("the function exited with status {exit}")));
        }
        drop(store);
        let output = stdout.contents();
        if output.len() >= OUTPUT_CAP {
            return Err(HookError::validation(format!("the function wrote more than {OUTPUT_CAP} bytes to stdout")));
        }
        Ok(output.to_vec())
    }
}
