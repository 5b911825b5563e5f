//! The numbers and names of verge's hook ABIs, in one place for the host (`verge-hooks`) and the guest
//! SDK (`verge-hook-sdk`), so neither side copies them by hand. No dependencies: it builds for
//! `wasm32-wasip1` and for the host alike. The contract in prose is docs/abi.md.
#![no_std]
#![forbid(unsafe_code)]

/// Trigger numbers: the argument of `verge_fast_handle` (and the index of per-trigger tables).
pub mod trigger {
    pub const VIEWER_REQUEST: u32 = 0;
    pub const ORIGIN_REQUEST: u32 = 1;
    pub const ORIGIN_RESPONSE: u32 = 2;
    pub const VIEWER_RESPONSE: u32 = 3;
}

/// The fast ABI: the guest exports `verge_fast_handle(trigger) -> i32` and imports host calls from
/// module `verge`.
pub mod fast {
    /// The import module of the host calls.
    pub const MODULE: &str = "verge";
    /// The guest's entry point.
    pub const ENTRY: &str = "verge_fast_handle";

    /// `which` argument of the header calls: the request or the response.
    pub const REQUEST: u32 = 0;
    pub const RESPONSE: u32 = 1;

    /// `verge_fast_handle` results.
    pub const CONTINUE: i32 = 0;
    pub const FAILED: i32 = 1;

    /// Host-call results below zero: the value is absent (or the call was refused) ...
    pub const ABSENT: i32 = -1;
    /// ... or a pointer/length the guest passed is outside its memory.
    pub const BAD_POINTER: i32 = -2;

    /// Header changes one call may make (kept in host memory, outside the function's memory limit).
    pub const MAX_HEADER_CHANGES: usize = 1000;

    /// Field numbers of `verge.get` / `verge.set`.
    pub mod field {
        pub const URI: u32 = 0;
        pub const QUERYSTRING: u32 = 1;
        pub const METHOD: u32 = 2;
        pub const CLIENT_IP: u32 = 3;
        pub const DISTRIBUTION_DOMAIN_NAME: u32 = 4;
        pub const DISTRIBUTION_ID: u32 = 5;
        pub const EVENT_TYPE: u32 = 6;
        pub const REQUEST_ID: u32 = 7;
        /// The response status, as decimal text (response triggers).
        pub const STATUS: u32 = 8;
        /// origin-request: `origin.custom.domainName`, `port`, `path` (settable).
        pub const ORIGIN_DOMAIN_NAME: u32 = 9;
        pub const ORIGIN_PORT: u32 = 10;
        pub const ORIGIN_PATH: u32 = 11;
        /// IncludeBody: `"true"` when the exposed body was cut at the trigger's limit.
        pub const BODY_TRUNCATED: u32 = 12;
    }
}

/// The JSON SDK ABI: `verge_alloc(len) -> ptr`, `verge_handle(ptr, len) -> (out_ptr << 32) | out_len`,
/// `verge_free(ptr, len)`; the event and the result are Lambda@Edge JSON.
pub mod json {
    pub const ALLOC: &str = "verge_alloc";
    pub const HANDLE: &str = "verge_handle";
    pub const FREE: &str = "verge_free";
    /// Set in `out_len` when the result is an error message, not a result.
    pub const ERROR_BIT: u32 = 1 << 31;
}

/// The WASI command ABI: `_start`, the event JSON on stdin, the result JSON on stdout.
pub mod command {
    pub const ENTRY: &str = "_start";
}
