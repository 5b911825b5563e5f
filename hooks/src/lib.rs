//! verge's Lambda@Edge-style hooks: the function store, the wasmtime engine that runs versioned
//! functions under per-trigger limits, the three ABIs behind one entry point (`Function::invoke` on a
//! `Call`), and the one validator every ABI's changes go through. No pingora here.
#![deny(rust_2018_idioms)]

mod abi;
mod call;
mod engine;
mod error;
pub mod event;
mod header_block;
mod hook_log;
mod host_calls;
mod intern;
mod invoke;
pub mod stats;
mod store;
mod ticker;
mod validate;

pub use call::{Call, CallOrigin, HeaderOp, Side};
pub use engine::{Abi, Function, HookEngine, Limits, Reads, MAX_MEMORY_BYTES};
pub use error::{HookError, HookErrorKind};
pub use header_block::HeaderBlock;
pub use invoke::InPlace;
pub use store::{sha256_hex, FunctionStore};
pub use validate::{is_disallowed, read_only};
