//! Inline calls: a fast-ABI function whose imports never wait runs on the worker's own stack, without
//! the fiber `call_async` switches to and back from (~1k instructions a call), and is run again on a
//! fiber if it outlasts a short budget.
//!
//! Why the budget: a synchronous call cannot yield, so a function that spins would hold its worker
//! until its timeout (seconds). Inline, the epoch callback interrupts a call once `BUDGET` has passed
//! (at the first epoch tick after it: within `ticker::IDLE_CHECK` when the ticker was idle, as for a
//! fiber's first yield); the instance is dropped (a trap can leave the guest's memory mid-update), the
//! `Call` is rolled back to where it stood (`Call::set_retry_point`) and the call runs again on a fiber
//! under the same deadline. After `OVERRUNS_ALLOWED` such runs a function version stays on fibers.
//!
//! Which functions: the fast ABI, importing only `verge` host calls and WASI calls that do not wait
//! (`NON_WAITING_WASI`). wasmtime-wasi's synchronous `fd_write` blocks on a tokio runtime, which panics
//! inside a worker, so this linker has its own: stdout discarded, stderr into the hook's log, as the
//! fiber path's WASI context does. The worker's stack must have room for the guest's (`STACK_NEEDED`);
//! where it has not, the call takes the fiber.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use thread_local::ThreadLocal;
use verge_abi::fast::MODULE;
use verge_config::model::EventType;
use wasmtime::{Caller, Engine, InstancePre, Linker, Module, Store, UpdateDeadline};

use super::fast;
use super::Invoked;
use crate::call::Call;
use crate::engine::{Abi, Entry, Function, HostState, Warm, WarmPool};
use crate::error::HookError;
use crate::host_calls;

/// How long an inline call may run before it is run again on a fiber.
pub(crate) const BUDGET: Duration = Duration::from_millis(1);
/// Inline runs past the budget after which a function version stays on fibers.
const OVERRUNS_ALLOWED: u32 = 3;
/// Stack a worker must have left for an inline call: the guest's (`max_wasm_stack`) and the host
/// calls' and wasmtime's frames.
const STACK_NEEDED: usize = crate::engine::MAX_WASM_STACK + (256 << 10);
/// WASI calls whose synchronous versions never wait (`fd_write` is this module's own).
const NON_WAITING_WASI: [&str; 11] = [
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "random_get",
    "sched_yield",
    "proc_exit",
    "fd_write",
    "poll_oneoff",
];

/// A function's inline side: its instances (made with the synchronous linker) and its overruns.
pub(crate) struct Inline {
    pre: InstancePre<HostState>,
    /// One warm instance per thread that calls the function inline, taken and put back without a lock
    /// (an inline call starts and ends on its thread, so the thread's one is always free when it
    /// starts). Dropped with the function version.
    pub(crate) per_thread: ThreadLocal<Cell<Option<Box<Warm>>>>,
    /// More warm instances, shared: where a thread's second instance goes, and where a thread that has
    /// none yet looks first.
    pub(crate) warm: WarmPool,
    overruns: AtomicU32,
}

impl Inline {
    /// The inline side of a module that can have one (see the module's doc).
    pub(crate) fn for_module(module: &Module, abi: Abi, linker: &Linker<HostState>) -> wasmtime::Result<Option<Self>> {
        let never_waits = module.imports().all(|i| {
            i.module() == MODULE || (i.module() == "wasi_snapshot_preview1" && NON_WAITING_WASI.contains(&i.name()))
        });
        if abi != Abi::Fast || !never_waits {
            return Ok(None);
        }
        let pre = linker.instantiate_pre(module)?;
        Ok(Some(Inline {
            pre,
            per_thread: ThreadLocal::new(),
            warm: Mutex::new(Vec::new()),
            overruns: AtomicU32::new(0),
        }))
    }

    /// Whether calls still start inline.
    pub(crate) fn in_use(&self) -> bool {
        self.overruns.load(Ordering::Relaxed) < OVERRUNS_ALLOWED
    }

    /// A warm inline instance (or a new one) armed from `started`; `Err(None)` when making it ran past
    /// the budget.
    fn take_warm(&self, function: &Function, started: Instant) -> Result<Box<Warm>, Option<HookError>> {
        let reused = if function.limits.per_request {
            None
        } else {
            self.per_thread
                .get()
                .and_then(Cell::take)
                .or_else(|| self.warm.lock().unwrap_or_else(|e| e.into_inner()).pop())
        };
        let mut warm = match reused {
            Some(warm) => warm,
            None => {
                let mut store = function.bare_store(function.host_state(None, None));
                store.epoch_deadline_callback(epoch_reached);
                arm(&mut store, started, function.limits.timeout);
                match self.pre.instantiate(&mut store) {
                    Ok(instance) => function.warm_from(store, instance, true).map_err(Some)?,
                    Err(_) if store.data().overran => return Err(None),
                    Err(e) => return Err(Some(function.classify(e, &store))),
                }
            }
        };
        arm(&mut warm.store, started, function.limits.timeout);
        Ok(warm)
    }

    /// Drops this thread's warm instance (the function no longer runs inline).
    fn let_go_of_this_threads(&self) {
        if let Some(cell) = self.per_thread.get() {
            drop(cell.take());
        }
    }

    /// Puts a warm instance back for this thread's next call; the one it displaces, if any, comes back.
    pub(crate) fn keep_for_this_thread(&self, warm: Box<Warm>) -> Option<Box<Warm>> {
        self.per_thread.get_or_default().replace(Some(warm))
    }

    /// Counts a run past the budget and gives back the call as it was before it.
    fn overran(&self, function: &Function, call: Box<Call>) -> Box<Call> {
        self.count_overrun(function);
        call.roll_back()
    }

    /// Counts a run past the budget. Logged each time: at most `OVERRUNS_ALLOWED` lines per function
    /// version.
    fn count_overrun(&self, function: &Function) {
        let overruns = self.overruns.fetch_add(1, Ordering::Relaxed) + 1;
        if overruns <= OVERRUNS_ALLOWED {
            let then = if overruns == OVERRUNS_ALLOWED { "; its calls run on a fiber from now on" } else { "" };
            if overruns == OVERRUNS_ALLOWED {
                // Its warm inline instances would only hold pool slots from now on (each thread drops
                // its own at its next call, `let_go_of_this_threads`).
                self.warm.lock().unwrap_or_else(|e| e.into_inner()).clear();
                self.let_go_of_this_threads();
            }
            tracing::info!(target: "verge::hooks", arn = %function.arn, budget_ms = BUDGET.as_millis() as u64,
                "the function ran past its inline budget ({overruns} of {OVERRUNS_ALLOWED} times), run again on a fiber{then}");
        }
    }
}

/// Runs `call` inline when the function can be (`Err` gives the call back, as it was, for the fiber).
pub(super) fn run(
    function: &Function,
    mut call: Box<Call>,
    request_id: &[u8],
    started: Instant,
) -> Result<Invoked, Box<Call>> {
    let Some(inline) = function.inline.as_ref() else { return Err(call) };
    if !inline.in_use() {
        inline.let_go_of_this_threads();
        return Err(call);
    }
    if stack_room() < STACK_NEEDED {
        return Err(call);
    }
    let trigger = call.event().index() as u32;
    call.set_retry_point();
    let mut warm = match inline.take_warm(function, started) {
        Ok(warm) => warm,
        Err(Some(error)) => return Ok(Err(error)),
        Err(None) => return Err(inline.overran(function, call)),
    };
    std::mem::swap(&mut warm.store.data_mut().fast.call, &mut call);
    let Entry::Fast { handle } = &warm.entry else {
        return Ok(Err(HookError::execution("not a fast-ABI instance")));
    };
    let result = handle.call(&mut warm.store, trigger);
    if warm.store.data().overran {
        // The run that counts is the fiber's: this one's stderr and changes are dropped with it.
        let _ = warm.store.data().stderr.drain();
        std::mem::swap(&mut warm.store.data_mut().fast.call, &mut call);
        return Err(inline.overran(function, call));
    }
    function.log_stderr(warm.store.data_mut(), request_id);
    let code = match result {
        Ok(code) => code,
        Err(e) => return Ok(Err(function.classify(e, &warm.store))),
    };
    std::mem::swap(&mut warm.store.data_mut().fast.call, &mut call);
    function.put_back(warm);
    call.clear_retry_point();
    Ok(fast::outcome(call, code))
}

/// Runs a call inline in the store of a warm instance: `fill` writes what the function is shown into
/// the call the store keeps, the guest runs, and `finish` reads the checked result there, before the
/// call is emptied for the instance's next invocation (`Call::reset_for_reuse`). No `Call` is built or
/// dropped and no retry point is kept: the call is in the instance, and an instance that runs past the
/// budget is dropped with it. `Err` gives `finish` back when the call must run on a fiber instead
/// (`fill` then builds a call of its own there).
pub(crate) fn run_in_place<R, F: FnOnce(&mut Call) -> R>(
    function: &Function,
    event: EventType,
    fill: &impl Fn(&mut Call),
    request_id: &[u8],
    started: Instant,
    finish: F,
) -> Result<Result<R, HookError>, F> {
    let Some(inline) = function.inline.as_ref() else { return Err(finish) };
    if !inline.in_use() {
        inline.let_go_of_this_threads();
        return Err(finish);
    }
    if stack_room() < STACK_NEEDED {
        return Err(finish);
    }
    let mut warm = match inline.take_warm(function, started) {
        Ok(warm) => warm,
        Err(Some(error)) => return Ok(Err(error)),
        Err(None) => {
            inline.count_overrun(function);
            return Err(finish);
        }
    };
    let call = &mut warm.store.data_mut().fast.call;
    call.event = Some(event);
    fill(call);
    let Entry::Fast { handle } = &warm.entry else {
        return Ok(Err(HookError::execution("not a fast-ABI instance")));
    };
    let result = handle.call(&mut warm.store, event.index() as u32);
    if warm.store.data().overran {
        // The run that counts is the fiber's: this one's stderr and changes go with the instance.
        let _ = warm.store.data().stderr.drain();
        inline.count_overrun(function);
        return Err(finish);
    }
    function.log_stderr(warm.store.data_mut(), request_id);
    let code = match result {
        Ok(code) => code,
        Err(e) => return Ok(Err(function.classify(e, &warm.store))),
    };
    let call = &mut warm.store.data_mut().fast.call;
    let checked = fast::check(call, code)
        .and_then(|()| crate::validate::finished(call).map_err(HookError::validation))
        .map(|()| finish(call));
    call.reset_for_reuse();
    function.put_back(warm);
    Ok(checked)
}

/// Arms an inline store's deadline and budget from `started`.
fn arm(store: &mut Store<HostState>, started: Instant, timeout: Duration) {
    let state = store.data_mut();
    state.deadline = started + timeout;
    state.inline_until = Some(started + BUDGET);
    state.overran = false;
    store.set_epoch_deadline(1);
}

/// An inline store's epoch callback: the timeout as on a fiber, else the budget, else run on.
fn epoch_reached(mut store: wasmtime::StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline> {
    let now = Instant::now();
    let state = store.data_mut();
    if now >= state.deadline {
        return Ok(UpdateDeadline::Interrupt);
    }
    if state.inline_until.is_some_and(|until| now >= until) {
        state.overran = true;
        return Ok(UpdateDeadline::Interrupt);
    }
    Ok(UpdateDeadline::Continue(1))
}

/// The linker of inline instances: synchronous WASI (only the non-waiting calls are ever reached, see
/// `Inline::for_module`), this module's `fd_write`, `poll_oneoff` denied as on fibers, and verge's host
/// calls.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<HostState>, String> {
    let mut linker: Linker<HostState> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut HostState| &mut s.wasi)
        .map_err(|e| format!("wasi: {e}"))?;
    crate::engine::deny_sleep(&mut linker)?;
    linker.func_wrap("wasi_snapshot_preview1", "fd_write", fd_write).map_err(|e| format!("wasi: {e}"))?;
    host_calls::add_to_linker(&mut linker).map_err(|e| format!("verge host functions: {e}"))?;
    Ok(linker)
}

/// WASI errno values `fd_write` answers with.
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
/// The most buffers one `fd_write` takes (POSIX's `IOV_MAX`; Rust's std never passes more).
const IOV_MAX: u32 = 1024;

/// `fd_write(fd, iovs, iovs_len, nwritten) -> errno` without a runtime: stdout (1) is discarded and
/// stderr (2) kept in the hook's log, as the fiber path's WASI context does; there are no other files.
fn fd_write(mut caller: Caller<'_, HostState>, fd: i32, iovs: u32, iovs_len: u32, nwritten: u32) -> i32 {
    if fd != 1 && fd != 2 {
        return ERRNO_BADF;
    }
    if iovs_len > IOV_MAX {
        return ERRNO_INVAL;
    }
    let Some(memory) = caller.data().fast.memory else { return ERRNO_FAULT };
    let (bytes, state) = memory.data_and_store_mut(&mut caller);
    let word = |at: usize| -> Option<u32> { Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?)) };
    let mut total: u32 = 0;
    for i in 0..iovs_len as usize {
        let at = iovs as usize + 8 * i;
        let (Some(ptr), Some(len)) = (word(at), word(at + 4)) else { return ERRNO_FAULT };
        let Some(data) = bytes.get(ptr as usize..ptr as usize + len as usize) else { return ERRNO_FAULT };
        if fd == 2 {
            state.stderr.append(data);
        }
        total = total.wrapping_add(len);
    }
    match bytes.get_mut(nwritten as usize..nwritten as usize + 4) {
        Some(out) => out.copy_from_slice(&total.to_le_bytes()),
        None => return ERRNO_FAULT,
    }
    0
}

thread_local! {
    /// The lowest address of this thread's stack, looked up once (0: unknown).
    static STACK_LOW: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Bytes of stack left below this frame (0 when the thread's stack cannot be found).
fn stack_room() -> usize {
    // A local's address (a `&0u8` literal would be promoted to a static).
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    let low = STACK_LOW.with(|low| match low.get() {
        Some(known) => known,
        None => {
            let found = stack_low().unwrap_or(0);
            low.set(Some(found));
            found
        }
    });
    if low == 0 {
        return 0;
    }
    here.saturating_sub(low)
}

#[cfg(target_os = "linux")]
fn stack_low() -> Option<usize> {
    // SAFETY: the attribute object is initialised by pthread_getattr_np, read, then destroyed; the
    // pointers passed are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr = std::ptr::null_mut();
        let mut size = 0;
        let found = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        // The guard page(s) may sit inside the reported range: count a page more as used.
        found.then(|| addr as usize + 64 * 1024)
    }
}

#[cfg(not(target_os = "linux"))]
fn stack_low() -> Option<usize> {
    None
}
