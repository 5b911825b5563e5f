//! The fast ABI's host calls (module `verge`, numbers in `verge-abi`): the guest reads and changes the
//! request/response through them. Each call is checked by `validate` as it is made and recorded in the
//! `Call`. Lazy: a hook that sets five headers costs five host calls, not an event encode, a JSON parse
//! and a JSON serialise on each side.

use std::sync::Arc;

use http::HeaderValue;
use verge_abi::fast::{field, ABSENT, BAD_POINTER, MAX_HEADER_CHANGES, MODULE, RESPONSE};
use wasmtime::{Caller, Linker, Memory};

use crate::call::{Call, HeaderOp, Side};
use crate::header_block::HeaderBlock;
use crate::intern::{Interned, Name};
use crate::validate::{self, is_disallowed, Change};

/// The per-store state the host functions work on.
pub struct FastState {
    pub memory: Option<Memory>,
    /// Boxed so a call moves as a pointer (in and out of the store, through the proxy's futures).
    pub call: Box<Call>,
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
            return BAD_POINTER;
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

fn side(which: u32) -> Side {
    if which == RESPONSE {
        Side::Response
    } else {
        Side::Request
    }
}

/// A header change from the guest: its value (`None`: not a valid value) unless it is a removal.
enum Op {
    Set(Option<HeaderValue>),
    Add(Option<HeaderValue>),
    Remove,
}

/// A header change from the guest: checked by the shared validator, then recorded (the interned name
/// moves into the change: no second copy).
fn change(call: &mut Call, which: u32, name: Option<Name>, op: Op) -> i32 {
    let Some(Name { name, rules }) = name else { return call.violate("invalid header name".to_string()) };
    let side = side(which);
    let (change, value) = match op {
        Op::Set(value) => (Change::Modify, Some(value)),
        Op::Add(value) => (Change::Add, Some(value)),
        Op::Remove => (Change::Delete, None),
    };
    if value.as_ref().is_some_and(Option::is_none) {
        return call.violate("invalid header value".to_string());
    }
    // The name's rules came with it from the intern table: no name compares here.
    if let Err(reason) = validate::header_change_by_rules(call, side, name.as_str(), rules, change) {
        return call.violate(reason);
    }
    if call.changes() >= MAX_HEADER_CHANGES {
        return call.violate(format!("the function made more than {MAX_HEADER_CHANGES} header changes"));
    }
    let kind = match (change, value.flatten()) {
        (Change::Modify, Some(value)) => HeaderOp::Set(name, value),
        (Change::Add, Some(value)) => HeaderOp::Add(name, value),
        _ => HeaderOp::Remove(name),
    };
    call.apply(side, kind);
    0
}

fn block_arg(caller: &mut Caller<'_, impl FastHost>, ptr: u32, len: u32) -> Option<Result<Arc<HeaderBlock>, String>> {
    let memory = memory_of(caller)?;
    let (bytes, host) = memory.data_and_store_mut(caller);
    Some(host.fast().interned.block(bytes.get(ptr as usize..(ptr as usize).checked_add(len as usize)?)?))
}

/// `verge.header_set_block`: a `Set` of each field, checked and recorded as one change. The union of the
/// names' rules is checked once; only when it forbids something is each name checked, for the reason.
fn set_block(call: &mut Call, which: u32, block: Result<Arc<HeaderBlock>, String>) -> i32 {
    let block = match block {
        Ok(block) => block,
        Err(reason) => return call.violate(reason),
    };
    let side = side(which);
    if let Err(reason) = validate::header_change_by_rules(call, side, "", block.rules(), Change::Modify) {
        let first = block.names_with_rules().find_map(|(name, rules)| {
            validate::header_change_by_rules(call, side, name.as_str(), rules, Change::Modify).err()
        });
        return call.violate(first.unwrap_or(reason));
    }
    if call.changes() + block.fields().len() > MAX_HEADER_CHANGES {
        return call.violate(format!("the function made more than {MAX_HEADER_CHANGES} header changes"));
    }
    if !block.fields().is_empty() {
        call.apply(side, HeaderOp::SetBlock(block));
    }
    0
}

/// `verge.set` on an origin field (origin-request), checked as it is made.
fn set_origin(call: &mut Call, field: u32, text: String) -> i32 {
    let checked = match field {
        field::ORIGIN_DOMAIN_NAME => validate::origin_domain_name(call, &text).map(|()| None),
        field::ORIGIN_PORT => {
            validate::origin_port(call, text.parse::<u64>().unwrap_or(0)).map(|port| Some(port.to_string()))
        }
        _ => validate::origin_path(call, &text).map(|()| None),
    };
    let Some(origin) = call.origin.as_mut() else { return call.violate("no origin to change".to_string()) };
    match checked {
        Ok(Some(port)) => origin.port = port.parse().unwrap_or(origin.port),
        Ok(None) if field == field::ORIGIN_DOMAIN_NAME => origin.domain_name = text,
        Ok(None) => origin.path = text,
        Err(reason) => return call.violate(reason),
    }
    call.origin_changed = true;
    0
}

/// The bytes of a readable field, or `None` when it is absent.
fn get_field(call: &Call, field: u32) -> Option<Vec<u8>> {
    Some(match field {
        field::URI => call.uri.as_bytes().to_vec(),
        field::QUERYSTRING => call.querystring.as_bytes().to_vec(),
        field::METHOD => call.method.as_bytes().to_vec(),
        field::CLIENT_IP => call.client_ip.as_bytes().to_vec(),
        field::DISTRIBUTION_DOMAIN_NAME | field::DISTRIBUTION_ID => {
            let index = (field - field::DISTRIBUTION_DOMAIN_NAME) as usize;
            call.distribution.as_ref().map(|d| d[index].as_bytes().to_vec()).unwrap_or_default()
        }
        field::EVENT_TYPE => call.event().as_str().as_bytes().to_vec(),
        field::REQUEST_ID => call.request_id.as_bytes().to_vec(),
        field::STATUS => call.response_status.map(|s| s.to_string()).unwrap_or_default().into_bytes(),
        field::ORIGIN_DOMAIN_NAME => call.origin.as_ref()?.domain_name.as_bytes().to_vec(),
        field::ORIGIN_PORT => call.origin.as_ref()?.port.to_string().into_bytes(),
        field::ORIGIN_PATH => call.origin.as_ref()?.path.as_bytes().to_vec(),
        field::BODY_TRUNCATED if call.request_body.is_some() => call.request_body_truncated.to_string().into_bytes(),
        _ => return None,
    })
}

/// Adds the `verge` host functions to a linker. Field numbers and codes: `verge_abi::fast`.
pub fn add_to_linker<T: FastHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "get", |mut caller: Caller<'_, T>, field: u32, ptr: u32, cap: u32| -> i32 {
        let Some(memory) = memory_of(&mut caller) else { return BAD_POINTER };
        match get_field(&caller.data_mut().fast().call, field) {
            Some(value) => write(memory, &mut caller, &value, ptr, cap),
            None => ABSENT,
        }
    })?;
    linker.func_wrap(MODULE, "set", |mut caller: Caller<'_, T>, field: u32, ptr: u32, len: u32| -> i32 {
        let Some(memory) = memory_of(&mut caller) else { return BAD_POINTER };
        let Some(bytes) = read(memory, &caller, ptr, len) else { return BAD_POINTER };
        let call = &mut caller.data_mut().fast().call;
        call.before_rewrite();
        let Ok(text) = String::from_utf8(bytes) else { return call.violate("uri must be UTF-8".to_string()) };
        if (field::ORIGIN_DOMAIN_NAME..=field::ORIGIN_PATH).contains(&field) {
            return set_origin(call, field, text);
        }
        let (uri, querystring) = match field {
            field::URI => (text, call.querystring.clone()),
            field::QUERYSTRING => (call.uri.clone(), text),
            _ => return ABSENT,
        };
        if let Err(reason) = validate::request_target(call, &uri, &querystring) {
            return call.violate(reason);
        }
        call.uri = uri;
        call.querystring = querystring;
        call.uri_changed = true;
        0
    })?;
    // The index-th value of a header, or -1 when absent (disallowed headers are always absent).
    linker.func_wrap(
        MODULE,
        "header_get",
        |mut caller: Caller<'_, T>, which: u32, name_ptr: u32, name_len: u32, index: u32, ptr: u32, cap: u32| -> i32 {
            let Some(Name { name, rules }) = name_arg(&mut caller, name_ptr, name_len) else { return ABSENT };
            if rules.disallowed {
                return ABSENT;
            }
            let Some(memory) = memory_of(&mut caller) else { return BAD_POINTER };
            let call = &mut caller.data_mut().fast().call;
            let value = call.map(side(which)).get_all(&name).iter().nth(index as usize).map(|v| v.as_bytes().to_vec());
            match value {
                Some(v) => write(memory, &mut caller, &v, ptr, cap),
                None => ABSENT,
            }
        },
    )?;
    // Lower-case names present, NUL-separated.
    linker.func_wrap(MODULE, "header_names", |mut caller: Caller<'_, T>, which: u32, ptr: u32, cap: u32| -> i32 {
        let Some(memory) = memory_of(&mut caller) else { return BAD_POINTER };
        let call = &mut caller.data_mut().fast().call;
        let mut names = Vec::new();
        for name in call.map(side(which)).keys() {
            if !is_disallowed(name.as_str()) {
                names.extend_from_slice(name.as_str().as_bytes());
                names.push(0);
            }
        }
        write(memory, &mut caller, &names, ptr, cap)
    })?;
    linker.func_wrap(
        MODULE,
        "header_set",
        |mut caller: Caller<'_, T>, which: u32, name_ptr: u32, name_len: u32, value_ptr: u32, value_len: u32| -> i32 {
            let name = name_arg(&mut caller, name_ptr, name_len);
            let value = value_arg(&mut caller, value_ptr, value_len);
            change(&mut caller.data_mut().fast().call, which, name, Op::Set(value))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "header_add",
        |mut caller: Caller<'_, T>, which: u32, name_ptr: u32, name_len: u32, value_ptr: u32, value_len: u32| -> i32 {
            let name = name_arg(&mut caller, name_ptr, name_len);
            let value = value_arg(&mut caller, value_ptr, value_len);
            change(&mut caller.data_mut().fast().call, which, name, Op::Add(value))
        },
    )?;
    // `name: value` lines, each set as by `header_set` (header_block.rs).
    linker.func_wrap(
        MODULE,
        "header_set_block",
        |mut caller: Caller<'_, T>, which: u32, ptr: u32, len: u32| -> i32 {
            let Some(block) = block_arg(&mut caller, ptr, len) else { return BAD_POINTER };
            set_block(&mut caller.data_mut().fast().call, which, block)
        },
    )?;
    // A block registered once per instance (its number back, or -1), then set by that number: no bytes
    // read or compared per call (header_block.rs).
    linker.func_wrap(MODULE, "header_block_register", |mut caller: Caller<'_, T>, ptr: u32, len: u32| -> i32 {
        let Some(memory) = memory_of(&mut caller) else { return BAD_POINTER };
        let (bytes, host) = memory.data_and_store_mut(&mut caller);
        let Some(raw) = (ptr as usize).checked_add(len as usize).and_then(|end| bytes.get(ptr as usize..end)) else {
            return BAD_POINTER;
        };
        host.fast().interned.register_block(raw).map_or(ABSENT, |number| number as i32)
    })?;
    linker.func_wrap(
        MODULE,
        "header_set_registered_block",
        |mut caller: Caller<'_, T>, which: u32, number: u32| -> i32 {
            let FastState { call, interned, .. } = caller.data_mut().fast();
            let block = interned
                .registered_block(number)
                .cloned()
                .ok_or_else(|| format!("no header block is registered as {number}"));
            set_block(call, which, block)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "header_remove",
        |mut caller: Caller<'_, T>, which: u32, name_ptr: u32, name_len: u32| -> i32 {
            let name = name_arg(&mut caller, name_ptr, name_len);
            change(&mut caller.data_mut().fast().call, which, name, Op::Remove)
        },
    )?;
    // Request triggers: answer with this status (then set response headers and body).
    // origin-response: change the status.
    linker.func_wrap(MODULE, "respond", |mut caller: Caller<'_, T>, status: u32| -> i32 {
        let call = &mut caller.data_mut().fast().call;
        call.before_rewrite();
        if call.is_request_trigger() {
            if !(200..=599).contains(&status) {
                return call.violate(format!("status {status} is outside 200-599"));
            }
            call.generated_status = Some(status as u16);
            call.response_headers.clear();
            call.response_ops.clear();
            call.body = None;
            return 0;
        }
        match validate::status(call, status) {
            Ok(status) => {
                call.response_status = Some(status);
                0
            }
            Err(reason) => call.violate(reason),
        }
    })?;
    // IncludeBody: the viewer's body as exposed (raw bytes, cut at the trigger's limit), or -1.
    linker.func_wrap(MODULE, "body_get", |mut caller: Caller<'_, T>, ptr: u32, cap: u32| -> i32 {
        let Some(memory) = memory_of(&mut caller) else { return BAD_POINTER };
        let Some(body) = caller.data_mut().fast().call.request_body.clone() else { return ABSENT };
        write(memory, &mut caller, &body, ptr, cap)
    })?;
    linker.func_wrap(MODULE, "body_set", |mut caller: Caller<'_, T>, ptr: u32, len: u32| -> i32 {
        let Some(memory) = memory_of(&mut caller) else { return BAD_POINTER };
        let Some(bytes) = read(memory, &caller, ptr, len) else { return BAD_POINTER };
        let call = &mut caller.data_mut().fast().call;
        call.before_rewrite();
        if let Err(reason) = validate::body(call, bytes.len()) {
            return call.violate(reason);
        }
        call.body = Some(bytes);
        0
    })?;
    linker.func_wrap(MODULE, "fail", |mut caller: Caller<'_, T>, ptr: u32, len: u32| {
        let Some(memory) = memory_of(&mut caller) else { return };
        let message = read(memory, &caller, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned());
        caller.data_mut().fast().call.error = message;
    })?;
    Ok(())
}
