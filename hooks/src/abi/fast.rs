//! The fast ABI: no JSON. The guest exports `verge_fast_handle(trigger) -> i32` and reads and changes the
//! request/response through host calls (`host_calls.rs`), on a warm instance.

use std::time::Instant;

use verge_abi::fast::{CONTINUE, ENTRY};

use super::Invoked;
use crate::call::Call;
use crate::engine::{Entry, Function};
use crate::error::HookError;

/// Runs a fast-ABI function on `call` on a fiber: the call moves into a warm instance's store, the
/// guest's host calls check and record its changes, and the call comes back out. No outer timer:
/// `poll_oneoff` is denied and these host calls never block, so the epoch deadline alone bounds the
/// call. Reached when the call could not run inline, or was rolled back after running past the inline
/// budget (`abi::run_inline` comes first).
pub(super) async fn run(function: &Function, mut call: Box<Call>, request_id: &[u8], started: Instant) -> Invoked {
    let trigger = call.event().index() as u32;
    let mut warm = function.take_warm_at(started).await?;
    // The store keeps an empty call between invocations; swapping moves two pointers.
    std::mem::swap(&mut warm.store.data_mut().fast.call, &mut call);
    let Entry::Fast { handle } = &warm.entry else {
        return Err(HookError::execution("not a fast-ABI instance"));
    };
    // Borrowed, not cloned: a TypedFunc clone clones its registered type (measurable per hit).
    let result = handle.call_async(&mut warm.store, trigger).await;
    function.log_stderr(warm.store.data_mut(), request_id);
    let code = match result {
        Ok(code) => code,
        Err(e) => return Err(function.classify(e, &warm.store)),
    };
    std::mem::swap(&mut warm.store.data_mut().fast.call, &mut call);
    function.put_back(warm);
    outcome(call, code)
}

/// The call's result once the guest returned `code`: the first rule it broke, the error it reported,
/// or its changes.
pub(super) fn outcome(mut call: Box<Call>, code: i32) -> Invoked {
    check(&mut call, code).map(|()| call)
}

/// Whether the guest that returned `code` broke a rule or reported an error (the call keeps its changes
/// either way).
pub(super) fn check(call: &mut Call, code: i32) -> Result<(), HookError> {
    if let Some(violation) = call.violation.take() {
        return Err(HookError::validation(violation));
    }
    if code != CONTINUE {
        let message = call.error.take().unwrap_or_else(|| format!("{ENTRY} returned {code}"));
        return Err(HookError::execution(format!("the function returned an error: {message}")));
    }
    Ok(())
}
