//! The `misbehave` fixture on the fast ABI: the same handler, read and applied through host calls.

#[path = "../../misbehave/src/handle.rs"]
mod handle;

verge_hook_sdk::fast_event_handler!(handle::handle);
