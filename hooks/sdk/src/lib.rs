//! Guest SDK for verge hooks: the Lambda@Edge event as Rust types, `handler!` to export a function
//! through verge's JSON SDK ABI (warm instances, no stdin/stdout), and helpers for headers and cookies.
//!
//! ```text
//! use verge_hook_sdk::{handler, Event, Outcome};
//! fn handle(event: Event) -> Result<Outcome, String> {
//!     let mut request = event.request;
//!     request.headers.set("x-hello", "world");
//!     Ok(Outcome::Request(request))
//! }
//! handler!(handle);
//! ```
//! The same function can be built as a plain WASI command with `command!(handle)` instead.
//! `fast_handler!` (module `fast`) is the cheapest ABI: lazy host calls instead of a JSON event.

mod abi;
pub mod cookies;
pub mod fast;
mod headers;
#[doc(hidden)]
pub mod over_fast;
mod types;

pub use headers::{HeaderEntry, Headers};
pub use types::*;

#[doc(hidden)]
pub use abi::{__alloc, __free, __handle, __run_command};

/// Exports `handle: fn(Event) -> Result<Outcome, String>` through verge's JSON SDK ABI.
#[macro_export]
macro_rules! handler {
    ($handle:path) => {
        #[no_mangle]
        pub extern "C" fn verge_alloc(len: u32) -> u32 {
            $crate::__alloc(len)
        }
        #[no_mangle]
        pub extern "C" fn verge_free(ptr: u32, len: u32) {
            $crate::__free(ptr, len)
        }
        #[no_mangle]
        pub extern "C" fn verge_handle(ptr: u32, len: u32) -> u64 {
            $crate::__handle(ptr, len, $handle)
        }
    };
}

/// Exports `handle: fn(&mut fast::Ctx) -> Result<(), String>` through verge's fast ABI (host calls,
/// no JSON: the cheapest way to run a hook).
#[macro_export]
macro_rules! fast_handler {
    ($handle:path) => {
        #[no_mangle]
        pub extern "C" fn verge_fast_handle(event: u32) -> i32 {
            $crate::fast::__run(event, $handle)
        }
    };
}

/// A constant header block for `Ctx::set_response_headers` / `set_request_headers`, made at compile
/// time: `header_block!["x-frame-options" => "DENY", "x-content-type-options" => "nosniff"]` is
/// `"x-frame-options: DENY\r\nx-content-type-options: nosniff\r\n"`.
#[macro_export]
macro_rules! header_block {
    ($($name:literal => $value:literal),* $(,)?) => {
        concat!($($name, ": ", $value, "\r\n"),*)
    };
}

/// Exports `handle: fn(Event) -> Result<Outcome, String>` through the fast ABI: the event is read with
/// host calls and the outcome applied as the host calls that differ from what was read. The same
/// handler then runs on all three ABIs (`handler!`, `command!`, this), which is how verge's tests run
/// every scenario on every ABI.
#[macro_export]
macro_rules! fast_event_handler {
    ($handle:path) => {
        #[no_mangle]
        pub extern "C" fn verge_fast_handle(event: u32) -> i32 {
            $crate::fast::__run(event, |ctx| $crate::over_fast::run(ctx, $handle))
        }
    };
}

/// Builds `handle` as a WASI command: event JSON on stdin, result JSON on stdout.
#[macro_export]
macro_rules! command {
    ($handle:path) => {
        fn main() {
            $crate::__run_command($handle)
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_header_block_is_its_lines() {
        const BLOCK: &str = header_block!["x-frame-options" => "DENY", "x-a" => "1; b",];
        assert_eq!(BLOCK, "x-frame-options: DENY\r\nx-a: 1; b\r\n");
        assert_eq!(header_block![], "");
    }
}
