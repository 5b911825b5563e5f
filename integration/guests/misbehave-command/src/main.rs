//! The `misbehave` fixture as a WASI command: the same handler, the event on stdin, the result on stdout
//! (a fresh instance per call, so `/count` always answers 1).

#[path = "../../misbehave/src/handle.rs"]
mod handle;

verge_hook_sdk::command!(handle::handle);
