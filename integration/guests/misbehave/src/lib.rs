//! The `misbehave` fixture on the JSON SDK ABI (the handler is `handle.rs`).

mod handle;

verge_hook_sdk::handler!(handle::handle);
