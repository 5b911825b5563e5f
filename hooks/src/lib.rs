//! verge's Lambda@Edge-style hooks: the function store, the event format and result validation, and the
//! wasmtime runtime that runs versioned functions under per-trigger limits. No pingora here.
#![deny(rust_2018_idioms)]

pub mod error;
pub mod event;
pub mod fast;
mod hook_log;
mod intern;
pub mod runtime;
pub mod stats;
pub mod store;
#[doc(hidden)]
pub mod testing;
mod ticker;

pub use error::{HookError, HookErrorKind};
pub use runtime::{Abi, Function, HookEngine, Limits, Reads};
pub use store::FunctionStore;
