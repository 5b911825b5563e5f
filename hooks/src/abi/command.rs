//! The WASI command ABI: any language that targets WASI works. A fresh instance per call runs `_start`
//! with the Lambda@Edge event on stdin and writes the result JSON to stdout; exit status 0 means success.

use verge_abi::command::ENTRY;
use wasmtime::TypedFunc;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::I32Exit;

use crate::call::Call;
use crate::engine::{Function, OUTPUT_CAP};
use crate::error::HookError;
use crate::event;

pub(super) async fn run(function: &Function, mut call: Box<Call>, request_id: &[u8]) -> Result<Box<Call>, HookError> {
    let input = event::encode_call(&call);
    let stdout = MemoryOutputPipe::new(OUTPUT_CAP);
    let mut store = function.new_store(Some(input), Some(stdout.clone()));
    let result = async {
        let instance = function.pre.instantiate_async(&mut store).await?;
        let start: TypedFunc<(), ()> = instance.get_typed_func(&mut store, ENTRY)?;
        start.call_async(&mut store, ()).await
    }
    .await;
    function.log_stderr(store.data_mut(), request_id);
    let exit = match result {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => *code,
            None => return Err(function.classify(e, &store)),
        },
    };
    if exit != 0 {
        return Err(HookError::execution(format!("the function exited with status {exit}")));
    }
    drop(store);
    let output = stdout.contents();
    if output.len() >= OUTPUT_CAP {
        return Err(HookError::validation(format!("the function wrote more than {OUTPUT_CAP} bytes to stdout")));
    }
    event::apply_output(&mut call, &output)?;
    Ok(call)
}
