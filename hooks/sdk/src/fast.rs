//! The fast ABI: read and change the request/response through verge host calls, no JSON. Use it with
//! `fast_handler!(fn(&mut Ctx) -> Result<(), String>)`. Changes that break a rule (a read-only or
//! disallowed header, a status change in viewer-response) fail the call with a validation error.

/// The trigger a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    ViewerRequest,
    OriginRequest,
    OriginResponse,
    ViewerResponse,
}

#[cfg(target_arch = "wasm32")]
mod host {
    #[link(wasm_import_module = "verge")] // verge_abi::fast::MODULE
    extern "C" {
        pub fn get(field: u32, ptr: *mut u8, cap: u32) -> i32;
        pub fn set(field: u32, ptr: *const u8, len: u32) -> i32;
        pub fn header_get(which: u32, name: *const u8, name_len: u32, index: u32, ptr: *mut u8, cap: u32) -> i32;
        pub fn header_names(which: u32, ptr: *mut u8, cap: u32) -> i32;
        pub fn header_set(which: u32, name: *const u8, name_len: u32, value: *const u8, value_len: u32) -> i32;
        pub fn header_add(which: u32, name: *const u8, name_len: u32, value: *const u8, value_len: u32) -> i32;
        pub fn header_remove(which: u32, name: *const u8, name_len: u32) -> i32;
        pub fn header_set_block(which: u32, block: *const u8, len: u32) -> i32;
        pub fn header_block_register(block: *const u8, len: u32) -> i32;
        pub fn header_set_registered_block(which: u32, number: u32) -> i32;
        pub fn respond(status: u32) -> i32;
        pub fn body_get(ptr: *mut u8, cap: u32) -> i32;
        pub fn body_set(ptr: *const u8, len: u32) -> i32;
        pub fn fail(ptr: *const u8, len: u32);
    }
}

/// Outside wasm (the SDK's own unit tests) there is no host: every call reports "absent".
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc)]
mod host {
    pub unsafe fn get(_: u32, _: *mut u8, _: u32) -> i32 {
        -1
    }
    pub unsafe fn set(_: u32, _: *const u8, _: u32) -> i32 {
        -1
    }
    pub unsafe fn header_get(_: u32, _: *const u8, _: u32, _: u32, _: *mut u8, _: u32) -> i32 {
        -1
    }
    pub unsafe fn header_names(_: u32, _: *mut u8, _: u32) -> i32 {
        -1
    }
    pub unsafe fn header_set(_: u32, _: *const u8, _: u32, _: *const u8, _: u32) -> i32 {
        -1
    }
    pub unsafe fn header_add(_: u32, _: *const u8, _: u32, _: *const u8, _: u32) -> i32 {
        -1
    }
    pub unsafe fn header_remove(_: u32, _: *const u8, _: u32) -> i32 {
        -1
    }
    pub unsafe fn header_set_block(_: u32, _: *const u8, _: u32) -> i32 {
        -1
    }
    pub unsafe fn header_block_register(_: *const u8, _: u32) -> i32 {
        -1
    }
    pub unsafe fn header_set_registered_block(_: u32, _: u32) -> i32 {
        -1
    }
    pub unsafe fn respond(_: u32) -> i32 {
        -1
    }
    pub unsafe fn body_get(_: *mut u8, _: u32) -> i32 {
        -1
    }
    pub unsafe fn body_set(_: *const u8, _: u32) -> i32 {
        -1
    }
    pub unsafe fn fail(_: *const u8, _: u32) {}
}

use core::sync::atomic::{AtomicI32, Ordering};

use verge_abi::fast::{field, REQUEST, RESPONSE};

/// A constant header block that registers itself with verge: `static SECURITY: HeaderBlock =
/// HeaderBlock::new(header_block![..]);` then `ctx.set_response_block(&SECURITY)`. Registered on its
/// first use in an instance (`verge.header_block_register`), set by number after that
/// (`verge.header_set_registered_block`); a block verge does not register (not valid, or too many) is
/// passed as bytes each time, with the same result.
pub struct HeaderBlock {
    lines: &'static str,
    /// 0: not registered yet; n > 0: registered as n - 1; -1: passed as bytes.
    state: AtomicI32,
}

impl HeaderBlock {
    pub const fn new(lines: &'static str) -> Self {
        HeaderBlock { lines, state: AtomicI32::new(0) }
    }

    pub fn lines(&self) -> &'static str {
        self.lines
    }

    fn set(&self, which: u32) {
        let (ptr, len) = (self.lines.as_ptr(), self.lines.len() as u32);
        let mut state = self.state.load(Ordering::Relaxed);
        if state == 0 {
            // Safety: pointer and length describe `lines`.
            let number = unsafe { host::header_block_register(ptr, len) };
            state = if number >= 0 { number + 1 } else { -1 };
            self.state.store(state, Ordering::Relaxed);
        }
        if state > 0 {
            // Safety: no pointers.
            unsafe { host::header_set_registered_block(which, (state - 1) as u32) };
        } else {
            // Safety: as above.
            unsafe { host::header_set_block(which, ptr, len) };
        }
    }
}

/// Calls `f(ptr, cap)` with a growing buffer until the value fits; `None` when absent.
fn fetch_bytes(mut f: impl FnMut(*mut u8, u32) -> i32) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    let n = f(buf.as_mut_ptr(), buf.len() as u32);
    if n < 0 {
        return None;
    }
    let n = n as usize;
    if n <= buf.len() {
        return Some(buf[..n].to_vec());
    }
    let mut big = vec![0u8; n];
    let m = f(big.as_mut_ptr(), n as u32);
    if m < 0 {
        return None;
    }
    big.truncate(m as usize);
    Some(big)
}

fn fetch(f: impl FnMut(*mut u8, u32) -> i32) -> Option<String> {
    fetch_bytes(f).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// One call's view of the request and response.
pub struct Ctx {
    trigger: Trigger,
}

impl Ctx {
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    fn get(&self, field: u32) -> String {
        self.get_opt(field).unwrap_or_default()
    }

    fn get_opt(&self, field: u32) -> Option<String> {
        // Safety: the host writes at most `cap` bytes into the buffer we pass.
        fetch(|p, c| unsafe { host::get(field, p, c) })
    }

    fn set(&mut self, field: u32, value: &str) {
        // Safety: pointer and length describe `value`.
        unsafe { host::set(field, value.as_ptr(), value.len() as u32) };
    }

    pub fn uri(&self) -> String {
        self.get(field::URI)
    }
    pub fn set_uri(&mut self, uri: &str) {
        self.set(field::URI, uri)
    }
    pub fn querystring(&self) -> String {
        self.get(field::QUERYSTRING)
    }
    pub fn set_querystring(&mut self, querystring: &str) {
        self.set(field::QUERYSTRING, querystring)
    }
    pub fn method(&self) -> String {
        self.get(field::METHOD)
    }
    pub fn client_ip(&self) -> String {
        self.get(field::CLIENT_IP)
    }
    pub fn distribution_domain_name(&self) -> String {
        self.get(field::DISTRIBUTION_DOMAIN_NAME)
    }
    pub fn distribution_id(&self) -> String {
        self.get(field::DISTRIBUTION_ID)
    }
    /// `viewer-request`, `origin-request`, `origin-response` or `viewer-response`.
    pub fn event_type(&self) -> String {
        self.get(field::EVENT_TYPE)
    }
    pub fn request_id(&self) -> String {
        self.get(field::REQUEST_ID)
    }
    /// The response status in response triggers.
    pub fn status(&self) -> Option<u16> {
        self.get(field::STATUS).parse().ok()
    }

    fn header(&self, which: u32, name: &str, index: u32) -> Option<String> {
        // Safety: name pointer/length describe `name`; the host writes at most `cap` bytes.
        fetch(|p, c| unsafe { host::header_get(which, name.as_ptr(), name.len() as u32, index, p, c) })
    }

    fn names(&self, which: u32) -> Vec<String> {
        // Safety: the host writes at most `cap` bytes.
        let all = fetch(|p, c| unsafe { host::header_names(which, p, c) }).unwrap_or_default();
        all.split('\0').filter(|n| !n.is_empty()).map(str::to_string).collect()
    }

    pub fn request_header(&self, name: &str) -> Option<String> {
        self.header(REQUEST, name, 0)
    }
    /// Every value of a request header.
    pub fn request_header_all(&self, name: &str) -> Vec<String> {
        (0..).map_while(|i| self.header(REQUEST, name, i)).collect()
    }
    pub fn request_header_names(&self) -> Vec<String> {
        self.names(REQUEST)
    }
    pub fn set_request_header(&mut self, name: &str, value: &str) {
        // Safety: pointers and lengths describe `name` and `value`.
        unsafe { host::header_set(REQUEST, name.as_ptr(), name.len() as u32, value.as_ptr(), value.len() as u32) };
    }
    pub fn add_request_header(&mut self, name: &str, value: &str) {
        // Safety: as above.
        unsafe { host::header_add(REQUEST, name.as_ptr(), name.len() as u32, value.as_ptr(), value.len() as u32) };
    }
    pub fn remove_request_header(&mut self, name: &str) {
        // Safety: as above.
        unsafe { host::header_remove(REQUEST, name.as_ptr(), name.len() as u32) };
    }

    pub fn response_header(&self, name: &str) -> Option<String> {
        self.header(RESPONSE, name, 0)
    }
    /// Every value of a response header.
    pub fn response_header_all(&self, name: &str) -> Vec<String> {
        (0..).map_while(|i| self.header(RESPONSE, name, i)).collect()
    }
    pub fn response_header_names(&self) -> Vec<String> {
        self.names(RESPONSE)
    }
    pub fn set_response_header(&mut self, name: &str, value: &str) {
        // Safety: as above.
        unsafe { host::header_set(RESPONSE, name.as_ptr(), name.len() as u32, value.as_ptr(), value.len() as u32) };
    }
    pub fn add_response_header(&mut self, name: &str, value: &str) {
        // Safety: as above.
        unsafe { host::header_add(RESPONSE, name.as_ptr(), name.len() as u32, value.as_ptr(), value.len() as u32) };
    }
    pub fn remove_response_header(&mut self, name: &str) {
        // Safety: as above.
        unsafe { host::header_remove(RESPONSE, name.as_ptr(), name.len() as u32) };
    }

    /// Sets each `name: value` line of `block` as `set_response_header` would, in one host call. Build a
    /// constant block with `header_block!`: verge parses and checks a block it has seen before once per
    /// instance, so constant headers cost one call and one compare however many there are.
    pub fn set_response_headers(&mut self, block: &str) {
        // Safety: pointer and length describe `block`.
        unsafe { host::header_set_block(RESPONSE, block.as_ptr(), block.len() as u32) };
    }
    /// `set_response_headers` for the request (request triggers).
    pub fn set_request_headers(&mut self, block: &str) {
        // Safety: as above.
        unsafe { host::header_set_block(REQUEST, block.as_ptr(), block.len() as u32) };
    }

    /// `set_response_headers` for a `static` `HeaderBlock`: registered with verge on the instance's
    /// first call, then set by its number (verge reads and compares no bytes on later calls).
    pub fn set_response_block(&mut self, block: &HeaderBlock) {
        block.set(RESPONSE);
    }
    /// `set_response_block` for the request (request triggers).
    pub fn set_request_block(&mut self, block: &HeaderBlock) {
        block.set(REQUEST);
    }

    /// Request triggers: answer with `status` instead of continuing (then set response headers and a
    /// body). origin-response: change the status.
    pub fn respond(&mut self, status: u16) {
        // Safety: no pointers.
        unsafe { host::respond(status as u32) };
    }

    /// origin-request: the custom origin the request goes to (`origin.custom.domainName`, `port`,
    /// `path`).
    pub fn origin_domain_name(&self) -> Option<String> {
        self.get_opt(field::ORIGIN_DOMAIN_NAME)
    }
    pub fn origin_port(&self) -> Option<u16> {
        self.get_opt(field::ORIGIN_PORT).and_then(|p| p.parse().ok())
    }
    pub fn origin_path(&self) -> Option<String> {
        self.get_opt(field::ORIGIN_PATH)
    }
    /// origin-request: send the request to another origin (a host name or IP address; the other
    /// settings are the configured origin's). Checked as it is made: a bad value fails the call.
    pub fn set_origin_domain_name(&mut self, domain_name: &str) {
        self.set(field::ORIGIN_DOMAIN_NAME, domain_name)
    }
    pub fn set_origin_port(&mut self, port: u16) {
        self.set(field::ORIGIN_PORT, &port.to_string())
    }
    /// `""` or a path that starts with `/` and does not end with one, put before the request's uri.
    pub fn set_origin_path(&mut self, path: &str) {
        self.set(field::ORIGIN_PATH, path)
    }

    /// Request triggers with `include_body: true`: the viewer's body, cut at the trigger's limit
    /// (40 KB viewer-request, 1 MB origin-request). `None` without IncludeBody.
    pub fn body(&self) -> Option<Vec<u8>> {
        // Safety: the host writes at most `cap` bytes into the buffer we pass.
        fetch_bytes(|p, c| unsafe { host::body_get(p, c) })
    }
    /// Whether `body()` was cut at the limit (Lambda@Edge's `inputTruncated`).
    pub fn body_truncated(&self) -> bool {
        self.get_opt(field::BODY_TRUNCATED).as_deref() == Some("true")
    }

    /// The body of a generated response (after `respond`), of the origin response (origin-response),
    /// or, in a request trigger with `include_body: true`, the body sent on to the origin in place of
    /// the viewer's (at most the IncludeBody limit).
    pub fn set_body(&mut self, body: &[u8]) {
        // Safety: pointer and length describe `body`.
        unsafe { host::body_set(body.as_ptr(), body.len() as u32) };
    }

    /// The value of cookie `name` in the request.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.request_header_all("cookie")
            .iter()
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    }
}

#[doc(hidden)]
pub fn __run(event: u32, handle: fn(&mut Ctx) -> Result<(), String>) -> i32 {
    use verge_abi::trigger;
    let trigger = match event {
        trigger::VIEWER_REQUEST => Trigger::ViewerRequest,
        trigger::ORIGIN_REQUEST => Trigger::OriginRequest,
        trigger::ORIGIN_RESPONSE => Trigger::OriginResponse,
        _ => Trigger::ViewerResponse,
    };
    match handle(&mut Ctx { trigger }) {
        Ok(()) => verge_abi::fast::CONTINUE,
        Err(message) => {
            // Safety: pointer and length describe `message`.
            unsafe { host::fail(message.as_ptr(), message.len() as u32) };
            verge_abi::fast::FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_the_host_does_not_register_is_passed_as_bytes_from_then_on() {
        static BLOCK: HeaderBlock = HeaderBlock::new("x-a: 1\r\n");
        assert_eq!(BLOCK.state.load(Ordering::Relaxed), 0);
        // Off wasm every host call answers -1, as a host that refuses the block does.
        BLOCK.set(RESPONSE);
        assert_eq!(BLOCK.state.load(Ordering::Relaxed), -1);
        BLOCK.set(RESPONSE);
        assert_eq!(BLOCK.lines(), "x-a: 1\r\n");
    }
}
