//! The three hook ABIs behind one entry point. A module's exports say which it speaks; `run` hands a
//! `Call` to that ABI's file and gets it back with the function's changes, so the proxy and
//! `verge invoke` are written once for all three:
//!
//! - `fast`: host calls, no JSON, warm instances (the SDK's `fast_handler!`); run inline, without a
//!   fiber, when its imports never wait (`inline`).
//! - `sdk`: Lambda@Edge JSON through guest memory, warm instances (the SDK's `handler!`).
//! - `command`: a WASI command, JSON on stdin/stdout, a fresh instance per call (any WASI language).

mod command;
mod fast;
pub(crate) mod inline;
mod sdk;

use std::time::{Duration, Instant};

use crate::call::Call;
use crate::engine::{Abi, Function};
use crate::error::HookError;

/// What an ABI's `run` gives back: the call with the function's changes, or why it failed.
type Invoked = Result<Box<Call>, HookError>;

/// Runs `call` inline when the function can be (fast ABI, imports that never wait, still within its
/// overruns); `Err` gives the call back, as it was, for `run`.
pub(crate) fn run_inline(
    function: &Function,
    call: Box<Call>,
    request_id: &[u8],
    started: Instant,
) -> Result<Invoked, Box<Call>> {
    match function.abi {
        Abi::Fast => inline::run(function, call, request_id, started),
        _ => Err(call),
    }
}

/// Runs a call in a warm instance's store when the function can run inline (see `run_in_place`); `Err`
/// gives `finish` back for `run` on a call of its own.
pub(crate) fn run_in_place<R, F: FnOnce(&mut Call) -> R>(
    function: &Function,
    event: verge_config::model::EventType,
    fill: &impl Fn(&mut Call),
    request_id: &[u8],
    started: Instant,
    finish: F,
) -> Result<Result<R, HookError>, F> {
    match function.abi {
        Abi::Fast => inline::run_in_place(function, event, fill, request_id, started, finish),
        _ => Err(finish),
    }
}

/// Runs `call` on the function's ABI (a fast-ABI call here runs on a fiber: `run_inline` came first).
pub(crate) async fn run(
    function: &Function,
    call: Box<Call>,
    request_id: &[u8],
    started: Instant,
) -> Result<Box<Call>, HookError> {
    match function.abi {
        Abi::Fast => fast::run(function, call, request_id, started).await,
        // The JSON ABIs' futures are large: boxed, so they do not enlarge the future of every proxy
        // callback that can run a hook. Their host side can copy large events, so a backstop timer
        // guards the epoch deadline.
        Abi::Sdk => backstop(function, Box::pin(sdk::run(function, call, request_id, started))).await,
        Abi::Command => backstop(function, Box::pin(command::run(function, call, request_id))).await,
    }
}

async fn backstop(
    function: &Function,
    call: impl std::future::Future<Output = Result<Box<Call>, HookError>>,
) -> Result<Box<Call>, HookError> {
    let timeout = function.limits.timeout;
    match tokio::time::timeout(timeout + Duration::from_millis(500), call).await {
        Ok(result) => result,
        Err(_) => Err(HookError::limit(format!("timed out after {} ms", timeout.as_millis()))),
    }
}
