//! The fast ABI's host calls with arbitrary arguments: a guest reads the fuzz input (as its viewer body)
//! and runs it as a script of host calls (`get`, `set`, `header_get`, `header_names`, `header_set`,
//! `header_add`, `header_remove`, `header_set_block`, `header_block_register`, `header_set_registered_block`,
//! `respond`, `body_get`, `body_set`, `fail`) with whatever pointers,
//! lengths, fields and values it holds, on every trigger. The host never panics, whatever it is asked,
//! and a call that finishes passed the validator every ABI shares.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use verge_config::model::EventType;
use verge_hooks::{event, Abi, Call, Function, HookEngine, Limits};

/// 25-byte records from offset 32768: an operation byte, then six little-endian u32 arguments, each kept
/// under 128 KiB (half of them inside the guest's 64 KiB memory).
const GUEST: &str = r#"(module
  (import "verge" "get" (func $get (param i32 i32 i32) (result i32)))
  (import "verge" "set" (func $set (param i32 i32 i32) (result i32)))
  (import "verge" "header_get" (func $hget (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "verge" "header_names" (func $hnames (param i32 i32 i32) (result i32)))
  (import "verge" "header_set" (func $hset (param i32 i32 i32 i32 i32) (result i32)))
  (import "verge" "header_add" (func $hadd (param i32 i32 i32 i32 i32) (result i32)))
  (import "verge" "header_remove" (func $hrem (param i32 i32 i32) (result i32)))
  (import "verge" "respond" (func $respond (param i32) (result i32)))
  (import "verge" "body_get" (func $bget (param i32 i32) (result i32)))
  (import "verge" "body_set" (func $bset (param i32 i32) (result i32)))
  (import "verge" "fail" (func $fail (param i32 i32)))
  (import "verge" "header_set_block" (func $hblock (param i32 i32 i32) (result i32)))
  (import "verge" "header_block_register" (func $hreg (param i32 i32) (result i32)))
  (import "verge" "header_set_registered_block" (func $hsetreg (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $a (param $p i32) (param $i i32) (result i32)
    (i32.and (i32.load offset=1 (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2)))) (i32.const 0x1ffff)))
  (func (export "verge_fast_handle") (param $event i32) (result i32)
    (local $p i32) (local $end i32) (local $n i32)
    (local.set $n (call $bget (i32.const 32768) (i32.const 32768)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.const 0))))
    (local.set $p (i32.const 32768))
    (local.set $end (i32.add (i32.const 32768) (local.get $n)))
    (block $done
      (loop $next
        (br_if $done (i32.gt_u (i32.add (local.get $p) (i32.const 25)) (local.get $end)))
        (block $cont
          (block $c13 (block $c12 (block $c11 (block $c10 (block $c9 (block $c8 (block $c7 (block $c6 (block $c5 (block $c4 (block $c3 (block $c2 (block $c1 (block $c0
            (br_table $c0 $c1 $c2 $c3 $c4 $c5 $c6 $c7 $c8 $c9 $c10 $c11 $c12 $c13
              (i32.rem_u (i32.load8_u (local.get $p)) (i32.const 14))))
            (drop (call $get (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1)) (call $a (local.get $p) (i32.const 2))))
            (br $cont))
            (drop (call $set (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1)) (call $a (local.get $p) (i32.const 2))))
            (br $cont))
            (drop (call $hget (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1)) (call $a (local.get $p) (i32.const 2))
              (call $a (local.get $p) (i32.const 3)) (call $a (local.get $p) (i32.const 4)) (call $a (local.get $p) (i32.const 5))))
            (br $cont))
            (drop (call $hnames (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1)) (call $a (local.get $p) (i32.const 2))))
            (br $cont))
            (drop (call $hset (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1)) (call $a (local.get $p) (i32.const 2))
              (call $a (local.get $p) (i32.const 3)) (call $a (local.get $p) (i32.const 4))))
            (br $cont))
            (drop (call $hadd (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1)) (call $a (local.get $p) (i32.const 2))
              (call $a (local.get $p) (i32.const 3)) (call $a (local.get $p) (i32.const 4))))
            (br $cont))
            (drop (call $hrem (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1)) (call $a (local.get $p) (i32.const 2))))
            (br $cont))
            (drop (call $respond (call $a (local.get $p) (i32.const 0))))
            (br $cont))
            (drop (call $bget (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))))
            (br $cont))
            (drop (call $bset (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))))
            (br $cont))
          (call $fail (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1)))
          (br $cont))
          (drop (call $hblock (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1)) (call $a (local.get $p) (i32.const 2))))
          (br $cont))
          (drop (call $hreg (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))))
          (br $cont))
          (drop (call $hsetreg (call $a (local.get $p) (i32.const 0)) (i32.and (call $a (local.get $p) (i32.const 1)) (i32.const 63)))))
        (local.set $p (i32.add (local.get $p) (i32.const 25)))
        (br $next)))
    (i32.const 0)))"#;

const EVENT: &str = r#"{"Records":[{"cf":{"config":{"distributionDomainName":"d.verge.test","distributionId":"E1","eventType":"viewer-request","requestId":"r1"},"request":{"clientIp":"127.0.0.1","method":"POST","uri":"/a","querystring":"x=1","headers":{"host":[{"key":"Host","value":"d.verge.test"}],"x-a":[{"key":"X-A","value":"1"}]}},"response":{"status":"200","statusDescription":"OK","headers":{"content-type":[{"key":"Content-Type","value":"text/plain"}],"content-length":[{"key":"Content-Length","value":"5"}]}}}}]}"#;

struct Host {
    runtime: tokio::runtime::Runtime,
    function: Function,
    _engine: HookEngine,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let engine = HookEngine::new(None).expect("engine");
        let limits =
            Limits { timeout: Duration::from_secs(5), memory_bytes: 16 << 20, env: Vec::new(), per_request: false };
        let function = engine
            .load("arn:aws:lambda:us-east-1:123456789012:function:fuzz:1", GUEST.as_bytes(), 1 << 20, limits)
            .expect("the guest loads");
        assert_eq!(function.abi, Abi::Fast);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Host { runtime, function, _engine: engine }
    })
}

fn call(trigger: EventType, body: &[u8]) -> Box<Call> {
    let (config, request, response) = event::decode(EVENT.as_bytes()).expect("the sample event decodes");
    let response =
        matches!(trigger, EventType::OriginResponse | EventType::ViewerResponse).then_some(response).flatten();
    let mut call = event::call_from_event(trigger, &config, &request, response.as_ref());
    call.request_body = Some(bytes::Bytes::copy_from_slice(body));
    call
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, script)) = data.split_first() else { return };
    let triggers =
        [EventType::ViewerRequest, EventType::OriginRequest, EventType::OriginResponse, EventType::ViewerResponse];
    let trigger = triggers[which as usize % triggers.len()];
    let host = host();
    if let Ok(done) = host.runtime.block_on(host.function.invoke(call(trigger, script), "fuzz")) {
        if let Some(status) = done.generated_status {
            assert!((200..=599).contains(&status), "generated status {status}");
        }
        let (_, json) = event::result_json(&done);
        serde_json::to_vec(&json).expect("a result prints");
    }
});
