//! `Function::invoke`, the one entry point for every ABI: runs a `Call` on the function's ABI under its
//! limits, checks the whole result, counts it and logs it.

use std::time::Instant;

use verge_config::model::EventType;

use crate::abi;
use crate::call::Call;
use crate::engine::Function;
use crate::error::HookError;
use crate::validate;

impl Function {
    /// Runs the function on `call` through its ABI, under its limits, and checks the whole result.
    /// Every call is counted in `stats` (trigger, time, outcome) and logged here, once, with the ARN:
    /// a debug line per call, a warning per failure. The request id is taken as bytes: it is only
    /// logged, and made text only for a line that is written (a UTF-8 check per call was ~80
    /// instructions of a hooked hit).
    pub async fn invoke(
        &self,
        call: Box<Call>,
        request_id: &(impl AsRef<[u8]> + ?Sized),
    ) -> Result<Box<Call>, HookError> {
        let request_id = request_id.as_ref();
        // One clock read serves the deadline, the stats and the log.
        let started = Instant::now();
        let event = call.event();
        let _running = self.in_flight.enter();
        // An inline call never waits: run it before any of the ABIs' futures is built.
        let result = match abi::run_inline(self, call, request_id, started) {
            Ok(invoked) => invoked,
            Err(call) => abi::run(self, call, request_id, started).await,
        };
        let result = result.and_then(|call| validate::finished(&call).map(|()| call).map_err(HookError::validation));
        self.record(event, request_id, started, result.as_ref().err());
        result
    }
}

/// What `Function::invoke_in_place` did: ran the call (its result, as `finish` made it), or nothing,
/// the function being one that must wait (`finish` back for `Function::invoke_with`).
pub enum InPlace<R, F> {
    Done(Result<R, HookError>),
    Waits(F),
}

impl Function {
    /// `invoke` without a `Call` of the caller's and without a future: when the function runs inline,
    /// `fill` writes what it is shown (as the caller would into a new call for `event`) into the call
    /// its warm instance keeps, and `finish` reads the checked result there. No `Call` is allocated or
    /// dropped and nothing is awaited (the hooked cache hit's case). Any other function is left to
    /// `invoke_with` (`Waits`). Counted and logged as `invoke`.
    pub fn invoke_in_place<R, F: FnOnce(&mut Call) -> R>(
        &self,
        event: EventType,
        fill: &impl Fn(&mut Call),
        request_id: &(impl AsRef<[u8]> + ?Sized),
        finish: F,
    ) -> InPlace<R, F> {
        let request_id = request_id.as_ref();
        let started = Instant::now();
        // Synchronous: the call ends on this thread (the fallback's future counts in `invoke_with`).
        let _running = self.in_flight.enter_here();
        match abi::run_in_place(self, event, fill, request_id, started, finish) {
            Ok(result) => {
                self.record(event, request_id, started, result.as_ref().err());
                InPlace::Done(result)
            }
            Err(finish) => InPlace::Waits(finish),
        }
    }

    /// `invoke_in_place`'s other half: the call built by `fill`, run on the function's ABI (never
    /// inline: `invoke_in_place` came first), read by `finish`.
    pub async fn invoke_with<R>(
        &self,
        event: EventType,
        fill: impl Fn(&mut Call),
        request_id: &(impl AsRef<[u8]> + ?Sized),
        finish: impl FnOnce(&mut Call) -> R,
    ) -> Result<R, HookError> {
        let request_id = request_id.as_ref();
        let started = Instant::now();
        let _running = self.in_flight.enter();
        let mut call = Call::new(event);
        fill(&mut call);
        let result = abi::run(self, call, request_id, started)
            .await
            .and_then(|call| validate::finished(&call).map(|()| call).map_err(HookError::validation));
        self.record(event, request_id, started, result.as_ref().err());
        result.map(|mut call| finish(&mut call))
    }

    /// Counts a finished call in `stats` and logs it.
    #[inline]
    fn record(&self, event: EventType, request_id: &[u8], started: Instant, error: Option<&HookError>) {
        let micros = started.elapsed().as_micros() as u64;
        self.stats.record(event.index(), micros, error.map(|e| e.kind));
        tracing::debug!(target: "verge::hooks", arn = %self.arn, event_type = event.as_str(), request_id = %IdText(request_id), micros, "invoked");
        if let Some(e) = error {
            log_failure(&self.arn, event, request_id, e);
        }
    }
}

/// One warning per failure, with the ARN (out of the way of the calls that succeed).
#[cold]
#[inline(never)]
fn log_failure(arn: &str, event: EventType, request_id: &[u8], e: &HookError) {
    tracing::warn!(
        target: "verge::hooks",
        arn = %arn,
        event_type = event.as_str(),
        request_id = %IdText(request_id),
        result_type = e.result_type(),
        reason = %e.reason,
        "function failed"
    );
}

/// A request id's bytes as log text (lossy: verge's own ids are ASCII).
pub(crate) struct IdText<'a>(pub &'a [u8]);

impl std::fmt::Display for IdText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}
