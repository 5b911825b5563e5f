//! verge's JSON guest ABI (`handler!`) and WASI command ABI (`command!`): the host writes the event into memory from `verge_alloc`, calls
//! `verge_handle(ptr, len) -> (out_ptr << 32) | out_len` (bit 31 of `out_len` marks an error message),
//! copies the result out and releases it with `verge_free`. The instance stays warm between calls.

use crate::{Event, Outcome};

pub fn __alloc(len: u32) -> u32 {
    let mut buf = Vec::<u8>::with_capacity(len as usize);
    let ptr = buf.as_mut_ptr();
    core::mem::forget(buf);
    ptr as usize as u32
}

pub fn __free(ptr: u32, len: u32) {
    if ptr != 0 {
        // Safety: (ptr, len) was produced by `pack` or `__alloc` and is released exactly once by the host.
        unsafe { drop(Vec::from_raw_parts(ptr as usize as *mut u8, 0, len as usize)) }
    }
}

fn pack(out: Vec<u8>, error: bool) -> u64 {
    let mut out = out.into_boxed_slice();
    let len = out.len() as u64 | if error { u64::from(verge_abi::json::ERROR_BIT) } else { 0 };
    let ptr = out.as_mut_ptr() as usize as u64;
    core::mem::forget(out);
    (ptr << 32) | len
}

fn run(input: &[u8], handle: fn(Event) -> Result<Outcome, String>) -> Result<Vec<u8>, String> {
    let event = Event::from_json(input)?;
    let outcome = handle(event)?;
    outcome.to_json()
}

pub fn __handle(ptr: u32, len: u32, handle: fn(Event) -> Result<Outcome, String>) -> u64 {
    // Safety: the host wrote `len` bytes at `ptr`, a buffer from `__alloc(len)` that we now own.
    let input = unsafe { Vec::from_raw_parts(ptr as usize as *mut u8, len as usize, len as usize) };
    match run(&input, handle) {
        Ok(out) => pack(out, false),
        Err(message) => pack(message.into_bytes(), true),
    }
}

pub fn __run_command(handle: fn(Event) -> Result<Outcome, String>) {
    use std::io::{Read, Write};
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("cannot read the event: {e}");
        std::process::exit(1);
    }
    match run(&input, handle) {
        Ok(out) => {
            let mut stdout = std::io::stdout();
            if stdout.write_all(&out).and_then(|_| stdout.flush()).is_err() {
                std::process::exit(1);
            }
        }
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(1);
        }
    }
}
