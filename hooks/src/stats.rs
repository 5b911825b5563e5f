//! Invocation counters of one loaded function version, by trigger: calls, failures by class, time
//! spent. Plain atomics owned by the function; the proxy's metrics endpoint reads them when scraped.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::HookErrorKind;

/// Failure classes, in the order of `TriggerStats::failures`.
pub const FAILURE_CLASSES: [HookErrorKind; 3] =
    [HookErrorKind::Validation, HookErrorKind::Execution, HookErrorKind::LimitExceeded];

#[derive(Default)]
pub struct FunctionStats {
    calls: [AtomicU64; 4],
    failures: [[AtomicU64; 3]; 4],
    micros: [AtomicU64; 4],
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
        let Some(calls) = self.calls.get(trigger) else { return };
        calls.fetch_add(1, Ordering::Relaxed);
        self.micros[trigger].fetch_add(micros, Ordering::Relaxed);
        if let Some(kind) = failure {
            let class = FAILURE_CLASSES.iter().position(|k| *k == kind).unwrap_or(1);
            self.failures[trigger][class].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn trigger(&self, trigger: usize) -> TriggerStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TriggerStats {
            calls: load(&self.calls[trigger]),
            failures: [0, 1, 2].map(|c| load(&self.failures[trigger][c])),
            micros: load(&self.micros[trigger]),
        }
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
}
