//! Invocation counters of one loaded function version, by trigger: calls, failures by class, time
//! spent. Each thread that invokes the function counts in its own counters (only it writes them: a load
//! and a store per count, no locked instruction, no cache line shared between workers); the proxy's
//! metrics endpoint sums them when scraped.

use std::sync::atomic::{AtomicU64, Ordering};

use thread_local::ThreadLocal;

use crate::error::HookErrorKind;

/// Failure classes, in the order of `TriggerStats::failures`.
pub const FAILURE_CLASSES: [HookErrorKind; 3] =
    [HookErrorKind::Validation, HookErrorKind::Execution, HookErrorKind::LimitExceeded];

#[derive(Default)]
pub struct FunctionStats {
    per_thread: ThreadLocal<Counters>,
}

/// One thread's counts.
#[derive(Default)]
struct Counters {
    calls: [AtomicU64; 4],
    failures: [[AtomicU64; 3]; 4],
    micros: [AtomicU64; 4],
}

/// Adds to a counter only the calling thread writes.
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

/// One trigger's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TriggerStats {
    pub calls: u64,
    pub failures: [u64; 3],
    pub micros: u64,
}

impl FunctionStats {
    /// Counts one invocation at trigger `trigger` (`EventType::index`).
    pub fn record(&self, trigger: usize, micros: u64, failure: Option<HookErrorKind>) {
        if trigger >= 4 {
            return;
        }
        let counters = self.per_thread.get_or_default();
        bump(&counters.calls[trigger], 1);
        bump(&counters.micros[trigger], micros);
        if let Some(kind) = failure {
            let class = FAILURE_CLASSES.iter().position(|k| *k == kind).unwrap_or(1);
            bump(&counters.failures[trigger][class], 1);
        }
    }

    pub fn trigger(&self, trigger: usize) -> TriggerStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.per_thread.iter().fold(TriggerStats::default(), |sum, counters| TriggerStats {
            calls: sum.calls + load(&counters.calls[trigger]),
            failures: [0, 1, 2].map(|c| sum.failures[c] + load(&counters.failures[trigger][c])),
            micros: sum.micros + load(&counters.micros[trigger]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_trigger_and_class() {
        let stats = FunctionStats::default();
        stats.record(3, 10, None);
        stats.record(3, 5, Some(HookErrorKind::LimitExceeded));
        stats.record(0, 1, Some(HookErrorKind::Validation));
        assert_eq!(stats.trigger(3), TriggerStats { calls: 2, failures: [0, 0, 1], micros: 15 });
        assert_eq!(stats.trigger(0), TriggerStats { calls: 1, failures: [1, 0, 0], micros: 1 });
        assert_eq!(stats.trigger(1), TriggerStats::default());
    }

    #[test]
    fn counts_from_every_thread_are_summed() {
        let stats = FunctionStats::default();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        stats.record(2, 3, None);
                    }
                    stats.record(2, 0, Some(HookErrorKind::Execution));
                });
            }
        });
        assert_eq!(stats.trigger(2), TriggerStats { calls: 4004, failures: [0, 4, 0], micros: 12_000 });
    }
}
