//! The epoch clock of the hook engine: ticks every `TICK` while a hook runs, and only looks every
//! `IDLE_CHECK` while none does.
//!
//! Why not a plain 1 ms ticker: each tick wakes a thread, and on a loaded core every wake-up preempts a
//! proxy worker. Measured on a 1 KiB cache hit with the engine loaded but no hook on the path, a 1 ms
//! ticker cost 5.5% of throughput (85.3k -> 80.7k req/s); ticking only while a call is in flight
//! removes nearly all of it. The cost is latency of the first tick: a hook that starts spinning runs up
//! to `IDLE_CHECK` before its first yield (then yields every `TICK`), and a timeout fires up to
//! `IDLE_CHECK` late.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::EngineWeak;

/// Epoch tick while some hook runs: the resolution of yields and timeouts.
pub const TICK: Duration = Duration::from_millis(1);
/// How often the ticker looks for a running hook while none ran at its last look.
pub const IDLE_CHECK: Duration = Duration::from_millis(10);

/// Counts hook calls in progress; the ticker reads it.
#[derive(Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Marks a call as running until the guard drops (also when the call's future is dropped).
    pub fn enter(&self) -> Running<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Running(&self.0)
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// One call in progress.
pub struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the ticker thread; it ends when the engine is dropped.
pub fn start(engine: EngineWeak, in_flight: InFlight) -> std::io::Result<()> {
    std::thread::Builder::new().name("verge-epoch".into()).spawn(move || {
        let mut busy = false;
        loop {
            std::thread::sleep(if busy { TICK } else { IDLE_CHECK });
            let Some(engine) = engine.upgrade() else { return };
            // A call's deadline is one epoch past the epoch at its start, so any tick during a call runs
            // its epoch callback (which yields, or interrupts once the call is past its timeout).
            busy = in_flight.any();
            if busy {
                engine.increment_epoch();
            }
        }
    })?;
    Ok(())
}
