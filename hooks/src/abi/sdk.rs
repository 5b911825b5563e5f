//! The JSON SDK ABI: the host writes the Lambda@Edge event into guest memory from `verge_alloc`, calls
//! `verge_handle(ptr, len) -> (out_ptr << 32) | out_len` (bit 31 of `out_len` marks an error message),
//! copies the result out and releases it with `verge_free`. Warm instances are reused between calls.

use std::time::Instant;

use verge_abi::json::ERROR_BIT;

use crate::call::Call;
use crate::engine::{Entry, Function, Warm, OUTPUT_CAP};
use crate::error::HookError;
use crate::event;

use super::Invoked;

pub(super) async fn run(function: &Function, mut call: Box<Call>, request_id: &[u8], started: Instant) -> Invoked {
    let input = event::encode_call(&call);
    let mut warm = function.take_warm_at(started).await?;
    let result = call_guest(function, &mut warm, &input).await;
    function.log_stderr(warm.store.data_mut(), request_id);
    let output = result?;
    function.put_back(warm);
    event::apply_output(&mut call, &output?)?;
    Ok(call)
}

/// One call through the SDK ABI. `Ok(Err(_))` is an error the guest reported itself.
async fn call_guest(
    function: &Function,
    warm: &mut Warm,
    event: &[u8],
) -> Result<Result<Vec<u8>, HookError>, HookError> {
    let fail = |warm: &Warm, e: wasmtime::Error| function.classify(e, &warm.store);
    let len = u32::try_from(event.len()).map_err(|_| HookError::validation("event too large"))?;
    let Entry::Json { alloc, handle, free } = &warm.entry else {
        return Err(HookError::execution("not a JSON-ABI instance"));
    };
    let ptr = match alloc.call_async(&mut warm.store, len).await {
        Ok(p) => p,
        Err(e) => return Err(fail(warm, e)),
    };
    if let Err(e) = warm.memory.write(&mut warm.store, ptr as usize, event) {
        return Err(HookError::execution(format!("verge_alloc returned an unusable buffer: {e}")));
    }
    let packed = match handle.call_async(&mut warm.store, (ptr, len)).await {
        Ok(p) => p,
        Err(e) => return Err(fail(warm, e)),
    };
    let (out_ptr, raw_len) = ((packed >> 32) as u32, (packed & 0xffff_ffff) as u32);
    let is_error = raw_len & ERROR_BIT != 0;
    let out_len = raw_len & !ERROR_BIT;
    if out_len as usize > OUTPUT_CAP {
        return Err(HookError::validation(format!("the function result is {out_len} bytes, over {OUTPUT_CAP}")));
    }
    let output = warm
        .memory
        .data(&warm.store)
        .get(out_ptr as usize..out_ptr as usize + out_len as usize)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| HookError::execution("the function returned an out-of-bounds result"))?;
    if let Err(e) = free.call_async(&mut warm.store, (out_ptr, out_len)).await {
        return Err(fail(warm, e));
    }
    Ok(if is_error {
        Err(HookError::execution(format!("the function returned an error: {}", String::from_utf8_lossy(&output))))
    } else {
        Ok(output)
    })
}
