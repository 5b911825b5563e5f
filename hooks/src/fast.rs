//! verge's fast ABI: no JSON. The guest exports `verge_fast_handle(event_type) -> i32` and reads and
//! changes the request/response through host calls (module `verge`). The host keeps the call's state,
//! validates every change as it is made (disallowed and read-only headers), and hands back a list of
//! operations the proxy replays on its own request/response. Lazy: a hook that sets five headers costs
//! five host calls, not an event encode, a JSON parse and a JSON serialise on each side.

use http::{HeaderMap, HeaderName, HeaderValue};
use verge_config::model::EventType;
use wasmtime::{Caller, Linker, Memory};

use crate::event::{is_disallowed, read_only};
use crate::intern::{Interned, Name};

/// Which message a header call is about.
pub const REQUEST: u32 = 0;
pub const RESPONSE: u32 = 1;

/// `verge_fast_handle` results.
pub const CONTINUE: i32 = 0;
pub const FAILED: i32 = 1;

/// Header changes one call may make (CloudFront's whole request is limited to far fewer headers).
pub const MAX_HEADER_CHANGES: usize = 1000;

/// A header change, replayed by the proxy in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    Set(HeaderName, HeaderValue),
    Add(HeaderName, HeaderValue),
    Remove(HeaderName),
}

/// The custom origin of an origin-request call (Lambda@Edge's `origin.custom`, the parts verge can
/// re-target: domain name, port and path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastOrigin {
    pub domain_name: String,
    pub port: u16,
    pub path: String,
}

/// Everything one fast-ABI invocation sees and changes.
#[derive(Debug, Default)]
pub struct FastCall {
    pub event: Option<EventType>,
    /// distributionDomainName, distributionId (shared per snapshot).
    pub distribution: Option<std::sync::Arc<[String; 2]>>,
    pub request_id: String,
    pub method: String,
    pub client_ip: String,
    pub uri: String,
    pub querystring: String,
    pub request_headers: HeaderMap,
    pub response_status: Option<u16>,
    pub response_headers: HeaderMap,
    /// Set when the guest changed the uri or query string.
    pub uri_changed: bool,
    pub request_ops: Vec<HeaderOp>,
    pub response_ops: Vec<HeaderOp>,
    /// A request trigger answered (`verge.respond`) with this status.
    pub generated_status: Option<u16>,
    /// A body set by the guest: of the generated response (after `verge.respond`), of the origin
    /// response (origin-response), or replacing the request body (request triggers with IncludeBody).
    pub body: Option<Vec<u8>>,
    /// IncludeBody (request triggers): the viewer's body as exposed, cut at the trigger's limit.
    pub request_body: Option<bytes::Bytes>,
    /// Whether `request_body` was cut (Lambda@Edge's `inputTruncated`).
    pub request_body_truncated: bool,
    /// origin-request: the origin the request goes to; the function may change it.
    pub origin: Option<FastOrigin>,
    /// Set when the guest changed `origin`.
    pub origin_changed: bool,
    /// The first rule the guest broke; the call then fails validation.
    pub violation: Option<String>,
    /// The guest's own error message.
    pub error: Option<String>,
    /// Keep `request_headers`/`response_headers` current as changes are made (only needed when the
    /// function can read headers back).
    pub track_headers: bool,
}

impl FastCall {
    fn violate(&mut self, reason: String) -> i32 {
        if self.violation.is_none() {
            self.violation = Some(reason);
        }
        -1
    }

    /// `verge.set` on an origin field: checked as it is made, like Lambda@Edge checks `origin.custom`.
    fn set_origin(&mut self, field: u32, bytes: &[u8]) -> i32 {
        if self.event() != EventType::OriginRequest {
            return self.violate("only origin-request functions can change the origin".to_string());
        }
        let Some(mut origin) = self.origin.take() else { return self.violate("no origin to change".to_string()) };
        let text = String::from_utf8_lossy(bytes).into_owned();
        let problem = match field {
            9 if text.is_empty()
                || text.len() > 253
                || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
            {
                Some("origin domain name must be a host name")
            }
            9 => {
                origin.domain_name = text;
                None
            }
            10 => match text.parse::<u16>() {
                Ok(port) if port == 80 || port == 443 || port >= 1024 => {
                    origin.port = port;
                    None
                }
                _ => Some("origin port must be 80, 443 or 1024-65535"),
            },
            _ if !text.is_empty()
                && (!text.starts_with('/') || text.ends_with('/') || text.contains(['?', '#', ' '])) =>
            {
                Some("origin path must start with / and not end with /")
            }
            _ => {
                origin.path = text;
                None
            }
        };
        self.origin = Some(origin);
        match problem {
            Some(reason) => self.violate(reason.to_string()),
            None => {
                self.origin_changed = true;
                0
            }
        }
    }

    fn event(&self) -> EventType {
        self.event.unwrap_or(EventType::ViewerRequest)
    }

    fn is_request_trigger(&self) -> bool {
        matches!(self.event(), EventType::ViewerRequest | EventType::OriginRequest)
    }

    /// Header changes go to the response of response triggers and of generated responses.
    fn writable(&mut self, which: u32, name: &Name) -> Result<(), i32> {
        let Name { name, disallowed } = name;
        let event = self.event();
        if *disallowed {
            return Err(self.violate(format!("the function tried to add a disallowed header: {name}")));
        }
        let response_side = which == RESPONSE;
        if response_side && self.is_request_trigger() && self.generated_status.is_none() {
            return Err(self.violate("set a response header only after verge.respond".to_string()));
        }
        if !response_side && !self.is_request_trigger() {
            return Err(self.violate(format!("{} functions cannot change the request", event.as_str())));
        }
        // Read-only rules apply to the message the trigger passes on, not to a generated response.
        let generated = response_side && self.is_request_trigger();
        if !generated && read_only(event).contains(&name.as_str()) {
            return Err(self.violate(format!("the function tried to change read-only header, headerName : {name}")));
        }
        Ok(())
    }

    fn map(&mut self, which: u32) -> &mut HeaderMap {
        if which == RESPONSE {
            &mut self.response_headers
        } else {
            &mut self.request_headers
        }
    }

    fn apply(&mut self, which: u32, op: HeaderOp) {
        if !self.track_headers {
            let ops = if which == RESPONSE { &mut self.response_ops } else { &mut self.request_ops };
            // One allocation for a typical hook's changes instead of a grow at the fifth.
            if ops.capacity() == 0 {
                ops.reserve(8);
            }
            ops.push(op);
            return;
        }
        let map = self.map(which);
        match &op {
            HeaderOp::Set(n, v) => {
                map.insert(n.clone(), v.clone());
            }
            HeaderOp::Add(n, v) => {
                map.append(n.clone(), v.clone());
            }
            HeaderOp::Remove(n) => {
                map.remove(n);
            }
        }
        if which == RESPONSE {
            self.response_ops.push(op);
        } else {
            self.request_ops.push(op);
        }
    }
}

/// The per-store state the host functions work on.
pub struct FastState {
    pub memory: Option<Memory>,
    /// Boxed so a call moves as a pointer (in and out of the store, through the proxy's futures).
    pub call: Box<FastCall>,
    /// The header names and values this instance passed on earlier calls.
    pub(crate) interned: Interned,
}

fn read(memory: Memory, caller: &Caller<'_, impl FastHost>, ptr: u32, len: u32) -> Option<Vec<u8>> {
    memory.data(caller).get(ptr as usize..(ptr as usize).checked_add(len as usize)?).map(<[u8]>::to_vec)
}

/// Copies `value` to the guest buffer if it fits; returns its length either way (the guest retries
/// with a larger buffer when the length exceeds `cap`).
fn write(memory: Memory, caller: &mut Caller<'_, impl FastHost>, value: &[u8], ptr: u32, cap: u32) -> i32 {
    if value.len() <= cap as usize {
        if let Some(dest) = memory.data_mut(&mut *caller).get_mut(ptr as usize..ptr as usize + value.len()) {
            dest.copy_from_slice(value);
        } else {
            return -2;
        }
    }
    value.len() as i32
}

/// Implemented by the store data that carries a `FastState`.
pub trait FastHost: Send + 'static {
    fn fast(&mut self) -> &mut FastState;
}

fn memory_of(caller: &mut Caller<'_, impl FastHost>) -> Option<Memory> {
    caller.data_mut().fast().memory
}

/// Read straight from guest memory (no copy first), through the instance's intern table.
fn name_arg(caller: &mut Caller<'_, impl FastHost>, ptr: u32, len: u32) -> Option<Name> {
    let memory = memory_of(caller)?;
    let (bytes, host) = memory.data_and_store_mut(caller);
    host.fast().interned.name(bytes.get(ptr as usize..(ptr as usize).checked_add(len as usize)?)?)
}

fn value_arg(caller: &mut Caller<'_, impl FastHost>, ptr: u32, len: u32) -> Option<HeaderValue> {
    let memory = memory_of(caller)?;
    let (bytes, host) = memory.data_and_store_mut(caller);
    host.fast().interned.value(bytes.get(ptr as usize..(ptr as usize).checked_add(len as usize)?)?)
}

fn change(
    caller: &mut Caller<'_, impl FastHost>,
    which: u32,
    name: Option<Name>,
    op: impl FnOnce(HeaderName) -> Option<HeaderOp>,
) -> i32 {
    let call = &mut caller.data_mut().fast().call;
    let Some(name) = name else { return call.violate("invalid header name".to_string()) };
    if let Err(code) = call.writable(which, &name) {
        return code;
    }
    // The changes are kept in host memory, outside the function's memory limit: bound them.
    if call.request_ops.len() + call.response_ops.len() >= MAX_HEADER_CHANGES {
        return call.violate(format!("the function made more than {MAX_HEADER_CHANGES} header changes"));
    }
    match op(name.name) {
        Some(op) => {
            call.apply(which, op);
            0
        }
        None => call.violate("invalid header value".to_string()),
    }
}

/// Adds the `verge` host functions to a linker.
pub fn add_to_linker<T: FastHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    // field: 0 uri, 1 querystring, 2 method, 3 clientIp, 4..=7 config fields, 8 status (as text),
    // 9 origin domain name, 10 origin port, 11 origin path (origin-request), 12 inputTruncated
    // ("true"/"false", with IncludeBody)
    linker.func_wrap("verge", "get", |mut caller: Caller<'_, T>, field: u32, ptr: u32, cap: u32| -> i32 {
        let Some(memory) = memory_of(&mut caller) else { return -2 };
        let call = &caller.data_mut().fast().call;
        let value: Vec<u8> = match field {
            0 => call.uri.as_bytes().to_vec(),
            1 => call.querystring.as_bytes().to_vec(),
            2 => call.method.as_bytes().to_vec(),
            3 => call.client_ip.as_bytes().to_vec(),
            4 | 5 => {
                call.distribution.as_ref().map(|d| d[(field - 4) as usize].as_bytes().to_vec()).unwrap_or_default()
            }
            6 => call.event().as_str().as_bytes().to_vec(),
            7 => call.request_id.as_bytes().to_vec(),
            8 => call.response_status.map(|s| s.to_string()).unwrap_or_default().into_bytes(),
            9..=11 => match &call.origin {
                Some(origin) if field == 9 => origin.domain_name.as_bytes().to_vec(),
                Some(origin) if field == 10 => origin.port.to_string().into_bytes(),
                Some(origin) => origin.path.as_bytes().to_vec(),
                None => return -1,
            },
            12 if call.request_body.is_some() => call.request_body_truncated.to_string().into_bytes(),
            _ => return -1,
        };
        write(memory, &mut caller, &value, ptr, cap)
    })?;
    // field: 0 uri, 1 querystring (request triggers only); 9 origin domain name, 10 origin port,
    // 11 origin path (origin-request only)
    linker.func_wrap("verge", "set", |mut caller: Caller<'_, T>, field: u32, ptr: u32, len: u32| -> i32 {
        let Some(memory) = memory_of(&mut caller) else { return -2 };
        let Some(bytes) = read(memory, &caller, ptr, len) else { return -2 };
        let call = &mut caller.data_mut().fast().call;
        if !call.is_request_trigger() {
            return call.violate(format!("{} functions cannot change the request", call.event().as_str()));
        }
        if (9..=11).contains(&field) {
            return call.set_origin(field, &bytes);
        }
        let Ok(text) = String::from_utf8(bytes) else { return call.violate("uri must be UTF-8".to_string()) };
        if text.chars().any(|c| c.is_control() || c == ' ' || c == '#') {
            return call.violate("uri and query string may not contain spaces, control characters or #".to_string());
        }
        match field {
            0 if text.starts_with('/') => call.uri = text,
            0 => return call.violate("uri must start with /".to_string()),
            1 => call.querystring = text,
            _ => return -1,
        }
        if call.uri.len() + call.querystring.len() + 1 >= 8192 {
            return call.violate("uri and query string must be shorter than 8,192 characters".to_string());
        }
        call.uri_changed = true;
        0
    })?;
    // The index-th value of a header, or -1 when absent (disallowed headers are always absent).
    linker.func_wrap(
        "verge",
        "header_get",
        |mut caller: Caller<'_, T>, which: u32, name_ptr: u32, name_len: u32, index: u32, ptr: u32, cap: u32| -> i32 {
            let Some(Name { name, disallowed }) = name_arg(&mut caller, name_ptr, name_len) else { return -1 };
            if disallowed {
                return -1;
            }
            let Some(memory) = memory_of(&mut caller) else { return -2 };
            let call = &mut caller.data_mut().fast().call;
            let value = call.map(which).get_all(&name).iter().nth(index as usize).map(|v| v.as_bytes().to_vec());
            match value {
                Some(v) => write(memory, &mut caller, &v, ptr, cap),
                None => -1,
            }
        },
    )?;
    // Lower-case names present, NUL-separated.
    linker.func_wrap("verge", "header_names", |mut caller: Caller<'_, T>, which: u32, ptr: u32, cap: u32| -> i32 {
        let Some(memory) = memory_of(&mut caller) else { return -2 };
        let call = &mut caller.data_mut().fast().call;
        let mut names = Vec::new();
        for name in call.map(which).keys() {
            if !is_disallowed(name.as_str()) {
                names.extend_from_slice(name.as_str().as_bytes());
                names.push(0);
            }
        }
        write(memory, &mut caller, &names, ptr, cap)
    })?;
    linker.func_wrap(
        "verge",
        "header_set",
        |mut caller: Caller<'_, T>, which: u32, name_ptr: u32, name_len: u32, value_ptr: u32, value_len: u32| -> i32 {
            let name = name_arg(&mut caller, name_ptr, name_len);
            let value = value_arg(&mut caller, value_ptr, value_len);
            change(&mut caller, which, name, |n| value.map(|v| HeaderOp::Set(n, v)))
        },
    )?;
    linker.func_wrap(
        "verge",
        "header_add",
        |mut caller: Caller<'_, T>, which: u32, name_ptr: u32, name_len: u32, value_ptr: u32, value_len: u32| -> i32 {
            let name = name_arg(&mut caller, name_ptr, name_len);
            let value = value_arg(&mut caller, value_ptr, value_len);
            change(&mut caller, which, name, |n| value.map(|v| HeaderOp::Add(n, v)))
        },
    )?;
    linker.func_wrap(
        "verge",
        "header_remove",
        |mut caller: Caller<'_, T>, which: u32, name_ptr: u32, name_len: u32| -> i32 {
            let name = name_arg(&mut caller, name_ptr, name_len);
            change(&mut caller, which, name, |n| Some(HeaderOp::Remove(n)))
        },
    )?;
    // Request triggers: answer with this status (then set response headers and body).
    // origin-response: change the status.
    linker.func_wrap("verge", "respond", |mut caller: Caller<'_, T>, status: u32| -> i32 {
        let call = &mut caller.data_mut().fast().call;
        if !(200..=599).contains(&status) {
            return call.violate(format!("status {status} is outside 200-599"));
        }
        match call.event() {
            EventType::ViewerRequest | EventType::OriginRequest => {
                call.generated_status = Some(status as u16);
                call.response_headers.clear();
                call.body = None;
            }
            EventType::OriginResponse => call.response_status = Some(status as u16),
            EventType::ViewerResponse => {
                return call.violate("viewer-response functions cannot change the status".to_string())
            }
        }
        0
    })?;
    // IncludeBody: the viewer's body as exposed (raw bytes, cut at the trigger's limit), or -1.
    linker.func_wrap("verge", "body_get", |mut caller: Caller<'_, T>, ptr: u32, cap: u32| -> i32 {
        let Some(memory) = memory_of(&mut caller) else { return -2 };
        let Some(body) = caller.data_mut().fast().call.request_body.clone() else { return -1 };
        write(memory, &mut caller, &body, ptr, cap)
    })?;
    linker.func_wrap("verge", "body_set", |mut caller: Caller<'_, T>, ptr: u32, len: u32| -> i32 {
        let Some(memory) = memory_of(&mut caller) else { return -2 };
        let Some(bytes) = read(memory, &caller, ptr, len) else { return -2 };
        let call = &mut caller.data_mut().fast().call;
        let replaces_request_body = call.is_request_trigger() && call.generated_status.is_none();
        if replaces_request_body {
            if call.request_body.is_none() {
                return call.violate("the request body can be replaced only with include_body".to_string());
            }
            let limit = call.event().limits().max_body_bytes;
            if bytes.len() > limit {
                return call.violate(format!("the replacement body is over {limit} bytes"));
            }
        } else if call.event() == EventType::ViewerResponse {
            return call.violate("viewer-response functions cannot replace the body".to_string());
        }
        call.body = Some(bytes);
        0
    })?;
    linker.func_wrap("verge", "fail", |mut caller: Caller<'_, T>, ptr: u32, len: u32| {
        let Some(memory) = memory_of(&mut caller) else { return };
        let message = read(memory, &caller, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned());
        caller.data_mut().fast().call.error = message;
    })?;
    Ok(())
}
